"""The lattice mode of the PIR service between nodes in one process (messages JSON-encoded and
held to the data plane's limit): answers equal private mode's and a plain lookup for present,
absent and repeated IDs; updates reach the client by hint rows; the server's view is the same
for any IDs (message count and sizes; query vectors' entries uniform); forged, mis-sized and
spent tickets and vectors are refused with typed errors, and nothing is counted for them."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inprocess_plane import Plane

from rainbridge.node.dataplane import MAX_CONTROL_BYTES
from rainbridge.node.service import NodeService
from rainbridge.protocols.pir import lattice_wire, wire

ROWS = 300


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plane, NodeService, NodeService]:
    base = tmp_path_factory.mktemp("pir-lattice")
    plane = Plane()
    bureau, bank = plane.node(base, "bureau"), plane.node(base, "bank")
    plane.node(base, "stranger")
    return plane, bureau, bank


def publish(bureau: NodeService, folder: Path, name: str, n: int = ROWS, **kw: Any) -> dict:
    """A table of ``n`` IDs with two labels; returns the truth by ID."""
    rng = random.Random(name)
    truth: dict[str, dict[str, Any]] = {}
    lines = ["customer_id,level,reason"]
    for _ in range(n):
        ident = f"{rng.randrange(10**17, 10**18)}"
        level, reason = rng.randrange(-5, 10**6), rng.choice(["fraud", "overdue", "逾期", "x,y"])
        truth[ident] = {"level": level, "reason": reason}
        lines.append(f'{ident},{level},"{reason}"')
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    bureau.owners.add_dataset(name, str(path), "customer_id")
    kw.setdefault("rate_per_s", 1000.0)
    kw.setdefault("burst", 1000)
    bureau.pir.publish_pir(
        name=name,
        dataset=name,
        labels=["level", "reason"],
        modes=["private", "lattice"],
        **kw,
    )
    bureau.owners.add_grant(
        dataset=name, peer="bank", columns=["*"], components=["pir"], receivers=["bank"]
    )
    return truth


def ask(bank: NodeService, service: str, ids: list[str], mode: str) -> list[dict[str, Any]]:
    return list(run(bank.pir.pir_query("bureau", service, ids, mode))["results"])


def check(truth: dict[str, dict[str, Any]], ids: list[str], got: list[dict[str, Any]]) -> None:
    assert [g["id"] for g in got] == ids
    for g in got:
        want = truth.get(g["id"])
        assert g["found"] == (want is not None), g
        assert g["label"] == want


def test_lattice_answers_like_private_mode_and_a_plain_lookup(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    plane, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "bl")
    present = list(truth)
    ids = [present[0], "not-a-customer", present[-1], present[0], "", present[7], "x" * 300]
    plane.largest = 0
    lattice = ask(bank, "bl", ids, "lattice")
    check(truth, ids, lattice)
    assert lattice == ask(bank, "bl", ids, "private")
    assert plane.largest <= MAX_CONTROL_BYTES
    rng = random.Random(3)
    many = [rng.choice(present) if rng.random() < 0.5 else f"a{i}" for i in range(40)]
    check(truth, many, ask(bank, "bl", many, "lattice"))
    # the bureau's records: one metered query per request, the IDs nowhere
    ledger = json.dumps([e for e in bureau.storage.events(limit=100_000)])
    assert present[0] not in ledger and present[7] not in ledger
    answered = [e for e in bureau.storage.events(limit=100_000) if e["kind"] == "pir_answered"]
    assert [e["detail"]["ids"] for e in answered if e["detail"]["mode"] == "lattice"] == [7, 40]


def test_updates_reach_the_client_by_hint_rows(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "upd")
    present = list(truth)
    first = run(bank.pir.pir_sync_hint("bureau", "upd"))
    assert first["kind"] == "full" and first["hint_bytes"] == first["bytes"]
    out = bureau.pir.update_pir(
        "upd",
        [
            {"customer_id": present[1], "level": 9, "reason": "appeal"},
            {"customer_id": "0000042", "level": 1, "reason": "fraud"},
        ],
        [present[2]],
    )
    assert out["lattice"]["version"] == 2 and out["lattice"]["hint_bytes"] == first["hint_bytes"]
    listed = {x["name"]: x for x in bureau.pir.pir_services()}
    assert listed["upd"]["lattice"] == out["lattice"] and "lattice" not in listed.get("plain", {})
    truth[present[1]] = {"level": 9, "reason": "appeal"}
    truth["0000042"] = {"level": 1, "reason": "fraud"}
    del truth[present[2]]
    ids = [present[1], "0000042", present[2], present[3]]
    # the query finds its hint behind the service's version and catches up by rows first
    check(truth, ids, ask(bank, "upd", ids, "lattice"))
    synced = [e for e in bank.storage.events(limit=100_000) if e["kind"] == "pir_hint_synced"]
    assert [e["detail"]["kind"] for e in synced][-2:] == ["full", "rows"]
    assert synced[-1]["detail"]["bytes"] < first["bytes"]
    # the client's hint is kept on disk: a fresh client node object reads it back
    again = run(bank.pir.pir_sync_hint("bureau", "upd"))
    assert again["kind"] == "rows" and again["bytes"] == 0


def record(bureau: NodeService) -> list[dict[str, Any]]:
    """Every message the bureau receives from now on."""
    seen: list[dict[str, Any]] = []
    inner = bureau.router.dispatch

    async def spy(peer: str, msg: Any) -> Any:
        seen.append(json.loads(json.dumps(msg)))
        return await inner(peer, msg)

    bureau.router.dispatch = spy  # type: ignore[method-assign]
    return seen


def test_the_server_sees_the_same_for_any_ids(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = nodes
    # enough rows for a few dozen columns: the vectors' entries to test
    truth = publish(bureau, tmp_path, "view", n=3000)
    present = list(truth)
    run(bank.pir.pir_sync_hint("bureau", "view"))
    m = bureau.pir.server._lattice["view"][1].layout.cols
    assert m >= 30
    seen = record(bureau)
    try:
        views = []
        entries = []
        for ids in (present[:3], ["a", "b", "c"], [present[5], "zz", present[5]]):
            seen.clear()
            ask(bank, "view", ids, "lattice")
            views.append([(m["type"], {k: len(json.dumps(v)) for k, v in m.items()}) for m in seen])
            vectors = [m for m in seen if m["type"] == "pir_lattice"]
            raw = b"".join(base64.b64decode(m["vectors"]) for m in vectors)
            entries.append(np.frombuffer(raw, "<u4"))
            assert len(entries[-1]) == 6 * m
        # the element, ticket and vector messages: same count, same field sizes
        assert views[0] == views[1] == views[2]
        # the top 4 bits of the entries, present IDs' and absent IDs' alike: uniform
        # (chi-square, 15 degrees of freedom, p = 0.001 at 37.7)
        for top in (np.concatenate(entries) >> 28, entries[0] >> 28, entries[1] >> 28):
            counts = np.bincount(top, minlength=16)
            expect = len(top) / 16
            assert ((counts - expect) ** 2 / expect).sum() < 37.7
    finally:
        del bureau.router.dispatch


def _ticket(bureau: NodeService, bank_msg: dict[str, Any]) -> dict[str, Any]:
    reply = run(bureau.router.dispatch("bank", bank_msg))
    assert reply["ok"], reply
    return dict(reply["lattice"]["ticket"])


def test_forged_and_mis_sized_messages_are_refused(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, _ = nodes
    truth = publish(bureau, tmp_path, "forge")
    db = bureau.pir.server._lattice["forge"][1]
    m, rows = db.layout.cols, db.layout.rows
    _, query = wire.make_query("forge", ["1", "2"], "lattice")
    ticket = _ticket(bureau, query)
    assert ticket["vectors"] == 4

    def send(peer: str = "bank", **over: Any) -> dict[str, Any]:
        msg = {"type": "pir_lattice", "service": "forge", "ticket": ticket, "lo": 0,
               "vectors": base64.b64encode(bytes(8 * m)).decode(), **over}  # fmt: skip
        return dict(run(bureau.router.dispatch(peer, msg)))

    def refused(reply: dict[str, Any], refusal: str | None, match: str) -> None:
        assert reply["ok"] is False, reply
        assert reply.get("refusal") == refusal, reply
        assert match in reply["reason"], reply

    for size in (4 * m - 4, 4 * m + 4, 3, 0):
        refused(send(vectors=base64.b64encode(bytes(size)).decode()), None, "u32")
    refused(send(vectors="not base64!"), None, "base64")
    refused(send(lo=1), None, f"{m} u32 each")
    refused(send(ticket={**ticket, "vectors": 400}), "ticket", "not one this service issued")
    refused(send(ticket={**ticket, "mac": "00" * 32}), "ticket", "not one this service issued")
    refused(send(ticket="x"), "ticket", "name its ticket")
    refused(send(ticket={**ticket, "version": "1"}), "ticket", "malformed")
    refused(send(service="bl"), "ticket", "not one this service issued")
    # another node, granted nothing: refused before its ticket is even read
    refused(send(peer="stranger"), None, "no grant")
    # the ticket's 4 vectors: 2 + 2 answered, a fifth refused
    for _ in range(2):
        ok = send()
        assert ok["ok"] and len(base64.b64decode(ok["answers"])) == 2 * 4 * rows
    refused(send(), "ticket", "query again for more IDs")
    # an expired ticket
    old = lattice_wire.TICKET_SECONDS
    lattice_wire.TICKET_SECONDS = -5
    try:
        stale_ticket = _ticket(bureau, query)
    finally:
        lattice_wire.TICKET_SECONDS = old
    refused(send(ticket=stale_ticket), "ticket", "expired")
    # a ticket of an older version of the hint
    ticket = _ticket(bureau, query)
    bureau.pir.update_pir("forge", [], [next(iter(truth))])
    refused(send(), "stale_hint", "sync the hint")
    # queries the element check refuses are neither counted nor answered
    for bad in ("", "AAAA", base64.b64encode(bytes(33)).decode()):
        refused(dict(run(bureau.router.dispatch("bank", {**query, "elements": bad}))), None, "")
    # a mode the service does not serve
    bureau.pir.publish_pir(name="plain", dataset="forge", labels=["level"], modes=["private"])
    msg = {**query, "service": "plain"}
    refused(dict(run(bureau.router.dispatch("bank", msg))), None, "not served in lattice mode")
    msg = {"type": "pir_hint", "service": "plain", "have": None, "offset": 0}
    refused(dict(run(bureau.router.dispatch("bank", msg))), None, "not served in lattice mode")


def test_a_hint_copy_that_the_service_changes_midway_starts_over(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "mid")
    monkeypatch.setattr(lattice_wire, "PAGE_BYTES", 4 * lattice_wire.LWE_N * 16)  # 16 rows/page
    inner = bureau.router.dispatch
    pages = 0

    async def spy(peer: str, msg: Any) -> Any:
        nonlocal pages
        if msg.get("type") == "pir_hint":
            pages += 1
            if pages == 2:
                bureau.pir.update_pir("mid", [], [next(iter(truth))])
        return await inner(peer, msg)

    monkeypatch.setattr(bureau.router, "dispatch", spy)
    out = run(bank.pir.pir_sync_hint("bureau", "mid"))
    db = bureau.pir.server._lattice["mid"][1]
    assert out["version"] == db.version and out["kind"] == "full"
    hint = bank.pir.client._hint("bureau", "mid")
    assert hint is not None and np.array_equal(hint.values, np.asarray(db.hint))


def test_large_batches_go_in_chunks_and_large_vectors_in_slices(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rainbridge.node import pir_client

    plane, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "big")
    present = list(truth)
    run(bank.pir.pir_sync_hint("bureau", "big"))
    m = bureau.pir.server._lattice["big"][1].layout.cols
    ids = [*present[:6], "gone-1", present[100], "gone-2", present[6]]
    # 3 IDs' vectors at a time at the client; one ticket for all 10
    monkeypatch.setattr(pir_client, "QUERY_BYTES", 3 * 2 * 4 * m)
    check(truth, ids, ask(bank, "big", ids, "lattice"))
    # a vector larger than a message: sent in slices whose answers add up
    step = max(1, m // 3)
    monkeypatch.setattr(lattice_wire, "PAGE_BYTES", 4 * step)
    plane.messages = 0
    check(truth, ids[:2], ask(bank, "big", ids[:2], "lattice"))
    slices = -(-m // step)
    assert slices >= 2
    assert plane.messages == 2 * (1 + 4 * slices)  # the query, then 4 vectors in slices


def test_a_restarted_server_serves_its_saved_layout_and_voids_old_tickets(
    tmp_path: Path,
) -> None:
    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    truth = publish(bureau, tmp_path, "kept")
    present = list(truth)
    ids = [present[0], "absent", present[9]]
    check(truth, ids, ask(bank, "kept", ids, "lattice"))
    bureau.pir.update_pir("kept", [], [present[9]])
    del truth[present[9]]
    _, query = wire.make_query("kept", ["1"], "lattice")
    ticket = _ticket(bureau, query)
    # the same node directory opened again: the layout, hint and versions read back
    again = plane.node(tmp_path, "bureau")
    check(truth, ids, ask(bank, "kept", ids, "lattice"))
    synced = [e["detail"]["kind"] for e in bank.storage.events(limit=1000)
              if e["kind"] == "pir_hint_synced"]  # fmt: skip
    assert synced == ["full", "rows"]  # caught up by rows across the restart
    db = again.pir.server._lattice["kept"][1]
    msg = {"type": "pir_lattice", "service": "kept", "ticket": ticket, "lo": 0,
           "vectors": base64.b64encode(bytes(4 * db.layout.cols)).decode()}  # fmt: skip
    reply = run(again.router.dispatch("bank", msg))
    assert reply["ok"] is False and reply["refusal"] == "ticket"


def test_lattice_answers_are_proven_under_the_pinned_key(
    nodes: tuple[Plane, NodeService, NodeService],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rainbridge.crypto import voprf
    from rainbridge.errors import ProofError
    from rainbridge.protocols.pir.table import PirTable

    _, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "pinned")
    first = next(iter(truth))
    check(truth, [first], ask(bank, "pinned", [first], "lattice"))
    # an evaluation under another key, proven under that key: refused, no vector sent
    other = voprf.random_key()

    def under_another_key(table: PirTable, elements: bytes) -> dict[str, str]:
        ev = voprf.evaluate(other, elements)
        return {"evaluated": wire.b64(ev.elements), "proof": wire.b64(ev.proof)}

    monkeypatch.setattr(lattice_wire, "wire_evaluate", under_another_key)
    with pytest.raises(ProofError):
        ask(bank, "pinned", [first], "lattice")
    monkeypatch.undo()
    # republished: a new key, refused until an explicit sync pins it (the hint comes along)
    bureau.pir.publish_pir(
        name="pinned", dataset="pinned", labels=["level", "reason"],
        modes=["private", "lattice"], rate_per_s=1000.0, burst=1000,
    )  # fmt: skip
    with pytest.raises(wire.KeyChangedError, match="sync it"):
        ask(bank, "pinned", [first], "lattice")
    run(bank.pir.pir_sync_hint("bureau", "pinned"))
    check(truth, [first, "absent"], ask(bank, "pinned", [first, "absent"], "lattice"))


def test_the_hint_budget_is_the_publishers_choice(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    from rainbridge.errors import ConfigError

    _, bureau, bank = nodes
    truth = publish(bureau, tmp_path, "small", max_hint_bytes=1 << 20)
    (svc,) = [s for s in bureau.pir.pir_services() if s["name"] == "small"]
    assert svc["max_hint_bytes"] == 1 << 20
    assert 0 < svc["lattice"]["hint_bytes"] <= 1 << 20
    ids = [*list(truth)[:3], "absent"]
    check(truth, ids, ask(bank, "small", ids, "lattice"))
    for bad in (1 << 19, (1 << 30) + 1):
        with pytest.raises(ConfigError, match="max_hint_bytes"):
            publish(bureau, tmp_path, "bad", max_hint_bytes=bad)


def test_a_layout_the_parameters_cannot_serve_is_refused_before_sealing(
    nodes: tuple[Plane, NodeService, NodeService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rainbridge.errors import DataError
    from rainbridge.protocols.pir.table import PirTable

    _, bureau, _ = nodes
    path = tmp_path / "wide.csv"
    path.write_text("customer_id,note\n" + "".join(f"c{i},{'n' * 300}\n" for i in range(5)))
    bureau.owners.add_dataset("wide", str(path), "customer_id")

    def never(*a: Any, **k: Any) -> None:
        raise AssertionError("sealed before the layout was checked")

    monkeypatch.setattr(PirTable, "build", never)
    with pytest.raises(DataError, match="no room for one"):  # 1 MiB: 256 bytes a column
        bureau.pir.publish_pir(name="wide", dataset="wide", labels=["note"],
                               modes=["lattice"], max_hint_bytes=1 << 20)  # fmt: skip
    assert not (bureau.pir.server.root / "wide").exists()
