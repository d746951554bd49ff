"""Review cases of the lattice mode: what a forged peer message or a failed layout update
must give (a typed error, never a raw exception or a silently stale answer)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import DataError
from rainbridge.protocols.pir import lattice_wire as lw
from rainbridge.protocols.pir.lattice import LatticeDb


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _db(rows: int = 40, payload: int = 9, slots: int = 20) -> LatticeDb:
    rng = np.random.default_rng(7)
    tags = rng.integers(1, 256, (rows, 16), dtype=np.uint8)
    pays = rng.integers(0, 256, (rows, payload), dtype=np.uint8)
    return LatticeDb.build(tags, pays, max_hint_bytes=4 * lw.LWE_N * (16 + payload) * slots)


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(1, 3), words=st.integers(0, 3))
def test_ragged_hint_values_are_refused(extra: int, words: int) -> None:
    db = _db()
    page = lw.hint_page(db, {}, None)
    page["values"] = _b64(bytes(4 * words + extra))
    with pytest.raises(DataError):
        lw.HintSync("svc", None, "peer").take(page)


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(1, 3))
def test_ragged_changed_rows_are_refused(extra: int) -> None:
    db = _db()
    before = lw.Hint(db.layout, db.version, None, db.hint.copy())
    db.update(
        np.full((1, 16), 9, np.uint8), np.zeros((1, 9), np.uint8), np.zeros((0, 16), np.uint8)
    )
    page = lw.hint_page(db, {"have": {"layout_id": db.layout.layout_id, "version": 1}}, None)
    assert page["kind"] == "rows"
    rows = base64.b64decode(page["rows"])
    page["rows"] = _b64(rows + bytes(extra))
    with pytest.raises(DataError):
        lw.HintSync("svc", before, "peer").take(page)


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(1, 3), count=st.integers(1, 3))
def test_ragged_answers_are_refused(extra: int, count: int) -> None:
    lay = _db().layout
    raw = bytes(4 * count * lay.rows + extra)
    with pytest.raises(DataError):
        lw.read_answers({"answers": _b64(raw)}, count, lay, "the answer")


def test_a_hint_copy_restarts_when_the_layout_changes_midway() -> None:
    """A service published again between two pages of a whole hint: a new layout, at the
    same version (1). The copy starts over rather than mixing the two hints."""
    first, again = _db(slots=12), _db(slots=12)
    assert first.version == again.version and first.layout.layout_id != again.layout.layout_id
    assert first.layout.rows > lw.PAGE_BYTES // (4 * lw.LWE_N)  # two pages at least
    sync = lw.HintSync("svc", None, "peer")
    req = sync.request()
    served = first
    while req is not None:
        req = sync.take(lw.hint_page(served, req, None))
        served = again  # republished after the first page
    assert sync.hint is not None and sync.hint.layout == again.layout
    assert np.array_equal(sync.hint.values, again.hint)


def test_a_page_claiming_more_changed_rows_than_the_hint_has_is_refused() -> None:
    """Changed rows are distinct rows of the hint: a page whose total exceeds them (a forged
    server paging one row at a time for ever) is refused at once, not followed."""
    db = _db()
    before = lw.Hint(db.layout, db.version, None, db.hint.copy())
    db.update(
        np.full((1, 16), 9, np.uint8), np.zeros((1, 9), np.uint8), np.zeros((0, 16), np.uint8)
    )
    page = lw.hint_page(db, {"have": {"layout_id": db.layout.layout_id, "version": 1}}, None)
    assert page["kind"] == "rows"
    sync = lw.HintSync("svc", before, "peer")
    values = np.asarray(db.hint[:1], "<u4").tobytes()
    for offset in range(db.layout.rows + 2):
        forged = {
            **page,
            "total": 10**9,
            "offset": offset,
            "values": _b64(values),
            "rows": _b64(np.zeros(1, "<u4").tobytes()),
            "next": offset + 1,
        }
        try:
            sync.take(forged)
        except DataError:
            return
    pytest.fail("the client kept following pages past the hint's rows")


def test_a_ticket_spent_as_it_expires_gets_no_fresh_allowance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server prunes expired tickets' counts when it spends: a ticket checked just before
    its expiry and spent just after must not find its count gone (a second allowance)."""
    tickets = lw.Tickets()
    t = tickets.issue("svc", "peer", 2, "L", 1)
    tickets.spend(t["mac"], 2 * 10, 2, 10, t["expires"])  # all of it
    late = t["expires"] + 1.0
    monkeypatch.setattr(lw.time, "time", lambda: late)
    with pytest.raises(lw.TicketError):
        tickets.spend(t["mac"], 10, 2, 10, t["expires"])
