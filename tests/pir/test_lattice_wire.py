"""The lattice mode's messages, without nodes: tickets (forged, foreign, expired, spent),
the vectors' size checks and their split into messages (whole vectors, or slices of one whose
answers add up), hint pages copied and caught up (against a plain reference), and a malformed
page refused."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import DataError
from rainbridge.protocols.pir import lattice_wire as lw
from rainbridge.protocols.pir.lattice import LatticeLayout

N = lw.LWE_N


def layout(rows: int, cols: int, layout_id: str = "L1") -> LatticeLayout:
    return LatticeLayout(
        layout_id=layout_id,
        seed=bytes(16),
        hash_key=bytes(range(16)),
        rows=rows,
        cols=cols,
        slot_bytes=rows,
        slots_per_col=1,
    )


@dataclass
class FakeDb:
    """A stand-in server table: a byte matrix answered by plain (wrapping) arithmetic, a hint
    of random rows, and the rows changed per version."""

    layout: LatticeLayout
    db: np.ndarray
    hint: np.ndarray
    version: int = 1
    changed: dict[int, np.ndarray] = field(default_factory=dict)

    def answer(self, queries: np.ndarray) -> np.ndarray:
        d = self.db.astype(np.int64) - 128
        return (queries.astype(np.uint64) @ d.T.astype(np.uint64)).astype(np.uint32)

    def hint_rows_since(self, version: int) -> np.ndarray | None:
        if version == self.version:
            return np.zeros(0, np.uint32)
        parts = [self.changed.get(v) for v in range(version + 1, self.version + 1)]
        if any(p is None for p in parts):
            return None
        return np.unique(np.concatenate([p for p in parts if p is not None]))

    def change(self, rows: list[int], rng: np.random.Generator) -> None:
        self.hint[rows] = rng.integers(0, 1 << 32, (len(rows), N), dtype=np.uint64)
        self.version += 1
        self.changed[self.version] = np.array(rows, np.uint32)


def fake(rows: int, cols: int, seed: int = 1) -> FakeDb:
    rng = np.random.default_rng(seed)
    return FakeDb(
        layout(rows, cols),
        rng.integers(0, 256, (rows, cols), dtype=np.uint8),
        rng.integers(0, 1 << 32, (rows, N), dtype=np.uint64).astype(np.uint32),
    )


# -- tickets -----------------------------------------------------------------------------------


def test_tickets_bind_service_peer_and_count_entries() -> None:
    t = lw.Tickets()
    ticket = t.issue("svc", "bank", 4, "L1", 3)
    assert t.check(ticket, "svc", "bank")["vectors"] == 4
    for service, peer in (("other", "bank"), ("svc", "other")):
        with pytest.raises(lw.TicketError, match="not one this service issued"):
            t.check(ticket, service, peer)
    for k, v in (("vectors", 5), ("version", 4), ("layout_id", "L2"), ("expires", 1 << 40),
                 ("nonce", "00")):  # fmt: skip
        with pytest.raises(lw.TicketError, match="not one this service issued"):
            t.check({**ticket, k: v}, "svc", "bank")
    for bad in (None, "x", {**ticket, "vectors": True}, {**ticket, "mac": 3}):
        with pytest.raises(lw.TicketError):
            t.check(bad, "svc", "bank")
    # another server (or this one after a restart) has another key
    with pytest.raises(lw.TicketError, match="not one this service issued"):
        lw.Tickets().check(ticket, "svc", "bank")
    # 4 vectors of 10 entries: 40 entries, however split; the refusal counts nothing
    t.spend(ticket["mac"], 25, 4, 10, ticket["expires"])
    with pytest.raises(lw.TicketError, match="query again"):
        t.spend(ticket["mac"], 16, 4, 10, ticket["expires"])
    t.spend(ticket["mac"], 15, 4, 10, ticket["expires"])
    with pytest.raises(lw.TicketError):
        t.spend(ticket["mac"], 1, 4, 10, ticket["expires"])


def test_an_expired_ticket_is_refused_and_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    t = lw.Tickets()
    monkeypatch.setattr(lw, "TICKET_SECONDS", -1)
    ticket = t.issue("svc", "bank", 2, "L1", 1)
    with pytest.raises(lw.TicketError, match="expired"):
        t.check(ticket, "svc", "bank")
    t.spend(ticket["mac"], 1, 2, 10, ticket["expires"])
    t.spend("another", 1, 2, 10, int(time.time()) + 60)
    assert list(t.spent) == ["another"]  # the expired one's count is dropped


# -- vectors ------------------------------------------------------------------------------------


def test_vectors_of_the_wrong_size_are_refused() -> None:
    lay = layout(8, 10)

    def msg(raw: bytes, lo: Any = 0) -> dict[str, Any]:
        return {"vectors": base64.b64encode(raw).decode(), "lo": lo}

    vec, entries = lw.read_vectors(msg(bytes(80)), lay)
    assert vec.shape == (2, 10) and entries == 20
    for raw in (b"", bytes(3), bytes(36), bytes(44)):
        with pytest.raises(DataError, match="u32"):
            lw.read_vectors(msg(raw), lay)
    with pytest.raises(DataError, match="10 u32 each"):
        lw.read_vectors(msg(bytes(40), lo=1), lay)  # a slice, where whole vectors fit
    with pytest.raises(DataError, match="integer"):
        lw.read_vectors(msg(bytes(40), lo="0"), lay)
    with pytest.raises(DataError, match="base64"):
        lw.read_vectors({"vectors": "@@", "lo": 0}, lay)


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 5),
    m=st.integers(1, 70),
    page=st.sampled_from([16, 40, 64, 1 << 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_vector_messages_answer_like_one_product(c: int, m: int, page: int, seed: int) -> None:
    """Split into messages (whole vectors, or slices when one is larger than a page), each
    read back by the server's check and answered, the answers add up to ``D·q``."""
    rng = np.random.default_rng(seed)
    db = fake(24, m, seed)
    q = rng.integers(0, 1 << 32, (c, m), dtype=np.uint64).astype(np.uint32)
    old = lw.PAGE_BYTES
    lw.PAGE_BYTES = page
    try:
        msgs = lw.vector_messages("svc", {"t": 1}, q, db.layout)
        got = np.zeros((c, 24), np.uint32)
        entries = 0
        for msg, first, count in msgs:
            vec, n = lw.read_vectors(msg, db.layout)
            entries += n
            reply = {"answers": base64.b64encode(db.answer(vec).astype("<u4").tobytes()).decode()}
            got[first : first + count] += lw.read_answers(reply, count, db.layout, "t")
            assert len(base64.b64decode(msg["vectors"])) <= max(page, 4)
    finally:
        lw.PAGE_BYTES = old
    assert entries == c * m
    assert np.array_equal(got, db.answer(q))


# -- hint pages ---------------------------------------------------------------------------------


def copy(db: FakeDb, hint: lw.Hint | None) -> lw.HintSync:
    sync = lw.HintSync("svc", hint, "bureau")
    req: dict[str, Any] | None = sync.request()
    while req is not None:
        reply = lw.hint_page(db, req, [])  # type: ignore[arg-type]
        req = sync.take(reply)
    return sync


def test_a_hint_is_copied_then_caught_up_by_its_changed_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lw, "PAGE_BYTES", 4 * N * 3)  # 3 rows a page
    rng = np.random.default_rng(5)
    db = fake(20, 4)
    sync = copy(db, None)
    assert sync.hint is not None and np.array_equal(sync.hint.values, db.hint)
    assert sync.messages == 7 and sync.bytes == db.hint.nbytes
    db.change([2, 7], rng)
    db.change([7, 9, 0, 5], rng)
    sync = copy(db, sync.hint)
    assert sync.hint is not None and sync.hint.version == 3
    assert np.array_equal(sync.hint.values, db.hint)
    assert sync.bytes == 5 * (4 * N + 4)  # 5 distinct rows and their indices
    # too old for the rows kept: the whole hint again
    db.change([1], rng)
    db.changed.clear()
    db.change([2], rng)
    sync = copy(db, sync.hint)
    assert sync.hint is not None and sync.bytes == db.hint.nbytes
    assert np.array_equal(sync.hint.values, db.hint)
    # another layout: the whole hint
    other = fake(20, 4, seed=9)
    other.layout = layout(20, 4, "L2")
    sync = copy(other, sync.hint)
    assert sync.hint is not None and sync.hint.layout.layout_id == "L2"
    assert np.array_equal(sync.hint.values, other.hint)


def test_malformed_hint_pages_are_refused() -> None:
    db = fake(20, 3)
    page = lw.hint_page(db, {"offset": 0}, [])  # type: ignore[arg-type]
    over: dict[str, Any]
    match: str | None
    for over, match in (
        ({"offset": 1}, "out of order"),
        ({"values": base64.b64encode(bytes(4 * N + 4)).decode()}, "1024 u32 each"),
        ({"total": 3}, "do not add up|a hint of 3 rows"),
        ({"kind": "odd"}, "malformed page"),
        ({"version": "2"}, "malformed page"),
        ({"layout": {"rows": 4}}, None),
        ({"kind": "rows", "rows": ""}, "does not hold"),
    ):
        with pytest.raises(DataError, match=match):
            lw.HintSync("svc", None, "bureau").take({**page, **over})
    for offset in (-1, "0", 99):
        with pytest.raises(DataError, match="offset"):
            lw.hint_page(db, {"offset": offset}, [])  # type: ignore[arg-type]
    # changed rows that point outside the hint
    hint = lw.Hint(db.layout, 1, [], db.hint.copy())
    rows = {**page, "kind": "rows", "total": 1, "next": None,
            "values": base64.b64encode(bytes(4 * N)).decode(),
            "rows": base64.b64encode(np.array([20], "<u4").tobytes()).decode()}  # fmt: skip
    with pytest.raises(DataError, match="do not match"):
        lw.HintSync("svc", hint, "bureau").take(rows)


# -- payloads -----------------------------------------------------------------------------------


def test_payloads_open_like_a_replicas_rows() -> None:
    import pyarrow as pa

    from rainbridge.crypto import voprf
    from rainbridge.protocols.pir.table import PirTable

    ids = ["a", "b", "c"]
    labels = pa.table({"x": pa.array([1, 2, 3]), "y": pa.array(["p", "q", None])})
    table = PirTable.build(pa.array(ids), labels, k=1)
    outputs = voprf.evaluate_direct(table.key, [b"b", b"z", b"a", b"b"])  # a mode-1 table
    by_tag = {bytes(t): i for i, t in enumerate(table.rows.tags)}
    payloads = lw.payloads_of(table.rows)
    got: list[bytes | None] = []
    for o in outputs:
        at = by_tag.get(o[:16])
        got.append(None if at is None else payloads[at].tobytes())
    answers = lw.open_payloads(table.layout.to_json(), outputs, ["b", "z", "a", "b"], got, "t")
    assert [(a.id, a.found, a.label) for a in answers] == [
        ("b", True, {"x": 2, "y": "q"}),
        ("z", False, None),
        ("a", True, {"x": 1, "y": "p"}),
        ("b", True, {"x": 2, "y": "q"}),
    ]
    with pytest.raises(DataError, match="bytes, not"):
        lw.open_payloads(table.layout.to_json(), outputs[:1], ["b"], [b"short"], "t")
