"""LatticeDb / LatticeClient against a plain dict lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import DataError
from rainbridge.protocols.pir.lattice import (
    LWE_N,
    LatticeClient,
    LatticeDb,
    LatticeLayout,
    StaleHintError,
    failure_bound,
    plan_layout,
)

P = 12  # payload bytes


def budget(slots: int, payload: int = P) -> int:
    """The hint budget that gives ``slots`` slots per column."""
    return 4 * LWE_N * (16 + payload) * slots


def rows(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    tags = rng.integers(0, 256, (k, 16), dtype=np.uint8)
    tags[:, 0] |= 1  # never all zero
    return tags, rng.integers(0, 256, (k, P), dtype=np.uint8)


def ask(client: LatticeClient, db: LatticeDb, tags: np.ndarray) -> list[bytes | None]:
    q, state = client.queries(tags)
    assert q.shape == (2 * len(tags), db.layout.cols)
    return client.read(state, db.answer(q), tags)


def check(
    client: LatticeClient, db: LatticeDb, truth: dict[bytes, bytes], probe: np.ndarray
) -> None:
    got: list[bytes | None] = []
    for start in range(0, len(probe), 100):  # within the server's batch limit
        got += ask(client, db, probe[start : start + 100])
    assert got == [truth.get(t.tobytes()) for t in probe]


def fresh_client(db: LatticeDb) -> LatticeClient:
    layout = LatticeLayout.from_json(db.layout.to_json(), "layout")
    return LatticeClient(layout, db.hint.copy(), db.version)


@settings(max_examples=10, deadline=None)
@given(k=st.integers(1, 400), slots=st.integers(1, 8), data=st.data())
def test_lookup_matches_dict(k: int, slots: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    tags, pays = rows(rng, k)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(slots), seed=b"t")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    absent, _ = rows(rng, 3)
    # present, absent, and a tag repeated within one request
    probe = np.concatenate([tags[: min(k, 5)], absent, tags[:1]])
    check(fresh_client(db), db, truth, probe)
    # every row is in one of its two candidate columns
    assert db.layout.slots_per_col == slots


def test_columns_distinct_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    tags, _ = rows(rng, 2000)
    lay = plan_layout(2000, P, max_hint_bytes=budget(1), seed=b"x")
    c = lay.columns(tags)
    assert c.dtype == np.uint32 and c.shape == (2000, 2)
    assert (c[:, 0] != c[:, 1]).all() and (c < lay.cols).all()
    assert np.array_equal(
        c, plan_layout(2000, P, max_hint_bytes=budget(1), seed=b"x").columns(tags)
    )
    assert plan_layout(2000, P, max_hint_bytes=budget(1)).seed != lay.seed


def test_updates_and_catch_up_by_hint_rows() -> None:
    rng = np.random.default_rng(2)
    tags, pays = rows(rng, 600)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(20), seed=b"u")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    client = fresh_client(db)
    v0, lid = db.version, db.layout.layout_id
    # upsert one existing and one new row, delete one: few slots change
    new_t, new_p = rows(rng, 1)
    up_t = np.concatenate([tags[:1], new_t])
    up_p = np.concatenate([rng.integers(0, 256, (1, P), dtype=np.uint8), new_p])
    db.update(up_t, up_p, tags[5:6])
    assert db.version == v0 + 1 and db.layout.layout_id == lid
    for t, p in zip(up_t, up_p, strict=True):
        truth[t.tobytes()] = p.tobytes()
    del truth[tags[5].tobytes()]
    probe = np.concatenate([tags[:8], new_t])
    # the stale client is told, never given a wrong payload
    with pytest.raises(StaleHintError):
        ask(client, db, probe)
    changed = db.hint_rows_since(v0)
    assert changed is not None and 0 < len(changed) <= 3 * (16 + P)
    assert db.hint_rows_since(db.version) is not None
    assert len(db.hint_rows_since(db.version)) == 0  # type: ignore[arg-type]
    client.apply_hint_rows(changed, db.hint[changed], db.version)
    assert np.array_equal(client.hint, db.hint)
    check(client, db, truth, probe)
    # the patched hint is the hint of the new matrix
    again = LatticeDb.build(
        np.zeros((0, 16), np.uint8), np.zeros((0, P), np.uint8), max_hint_bytes=budget(20)
    )
    assert again.layout.cols >= 2
    from rainbridge import _core

    full = np.frombuffer(
        _core.lwe_hint(db._db, db.layout.rows, db.layout.cols, db.layout.seed), dtype="<u4"
    ).reshape(db.layout.rows, LWE_N)
    assert np.array_equal(full, db.hint)
    # deleting an absent tag is a no-op version
    db.update(np.zeros((0, 16), np.uint8), np.zeros((0, P), np.uint8), rows(rng, 1)[0])
    assert len(db.hint_rows_since(db.version - 1)) == 0  # type: ignore[arg-type]


def test_insertions_evict_and_relayout() -> None:
    rng = np.random.default_rng(3)
    tags, pays = rows(rng, 40)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(2), seed=b"e")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    client = fresh_client(db)
    lid, cols, v = db.layout.layout_id, db.layout.cols, db.version
    new_t, new_p = rows(rng, 40)  # doubles the rows: the table cannot hold them
    db.update(new_t, new_p, np.zeros((0, 16), np.uint8))
    truth.update({t.tobytes(): p.tobytes() for t, p in zip(new_t, new_p, strict=True)})
    assert db.layout.layout_id != lid and db.layout.cols > cols
    assert db.hint_rows_since(v) is None
    with pytest.raises(StaleHintError):
        client.read(client.queries(tags[:1])[1], np.zeros((2, db.layout.rows), np.uint32), tags[:1])
    client = fresh_client(db)
    check(client, db, truth, np.concatenate([tags, new_t]))


def test_small_insertions_use_cuckoo_moves() -> None:
    rng = np.random.default_rng(4)
    tags, pays = rows(rng, 300)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(4), seed=b"c")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    lid = db.layout.layout_id
    for _ in range(3):
        new_t, new_p = rows(rng, 5)
        db.update(new_t, new_p, np.zeros((0, 16), np.uint8))
        truth.update({t.tobytes(): p.tobytes() for t, p in zip(new_t, new_p, strict=True)})
    probe = np.array([np.frombuffer(t, np.uint8) for t in truth])
    check(fresh_client(db), db, truth, probe)
    assert db.layout.layout_id == lid or db.hint_rows_since(1) is None


def test_save_and_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tags, pays = rows(rng, 100)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(4), seed=b"s")
    db.update(tags[:2], pays[:2][:, ::-1].copy(), np.zeros((0, 16), np.uint8))
    db.save(tmp_path / "lat")
    back = LatticeDb.load(tmp_path / "lat")
    assert back.layout == db.layout and back.version == db.version
    assert np.array_equal(back.hint, db.hint)
    assert np.array_equal(back.hint_rows_since(1), db.hint_rows_since(1))  # type: ignore[arg-type]
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    truth[tags[0].tobytes()] = pays[0][::-1].tobytes()
    truth[tags[1].tobytes()] = pays[1][::-1].tobytes()
    check(fresh_client(back), back, truth, tags[:4])
    (tmp_path / "lat" / "matrix.npy").write_bytes(b"junk")
    with pytest.raises(DataError):
        LatticeDb.load(tmp_path / "lat")


def test_layout_refusals() -> None:
    good = plan_layout(1000, P, max_hint_bytes=budget(3), seed=b"r").to_json()
    LatticeLayout.from_json(good, "layout")
    bad = [
        "x",
        {**good, "seed": "00"},
        {**good, "hash_key": "zz" * 16},
        {**good, "rows": good["rows"] + 1},
        {**good, "cols": 1},
        {**good, "cols": (1 << 20) + 1},
        {**good, "slot_bytes": 16, "rows": 16 * good["slots_per_col"]},
        {**good, "cols": True},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "seed"},
    ]
    for obj in bad:
        with pytest.raises(DataError):
            LatticeLayout.from_json(obj, "layout")
    # too many columns for the parameters' security: the budget must grow
    with pytest.raises(DataError, match="2\\^20"):
        plan_layout(2_000_000, P, max_hint_bytes=budget(1))
    with pytest.raises(DataError):
        plan_layout(10, 100, max_hint_bytes=1000)
    # the correctness bound: l·2·exp(−(Δ/2)²/(2σ²128²m)) ≤ 2^-40 holds up to m = 2^20 at l = 4096
    assert failure_bound(4096, 1 << 20) < 2.0**-40


def test_bad_inputs_are_refused() -> None:
    rng = np.random.default_rng(6)
    tags, pays = rows(rng, 10)
    with pytest.raises(DataError):
        LatticeDb.build(np.concatenate([tags, tags[:1]]), np.concatenate([pays, pays[:1]]))
    zero = tags.copy()
    zero[3] = 0
    with pytest.raises(DataError):
        LatticeDb.build(zero, pays, max_hint_bytes=budget(2))
    with pytest.raises(DataError):
        LatticeDb.build(tags, pays[:5], max_hint_bytes=budget(2))
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(2), seed=b"b")
    before = (db._db.copy(), db.hint.copy(), db.version)
    with pytest.raises(DataError):
        db.update(tags[:1], np.zeros((1, P + 1), np.uint8), np.zeros((0, 16), np.uint8))
    with pytest.raises(DataError):
        db.update(tags[:1], pays[:1], tags[:1])
    assert np.array_equal(before[0], db._db) and np.array_equal(before[1], db.hint)
    assert before[2] == db.version
    with pytest.raises(DataError):
        db.answer(np.zeros((2, db.layout.cols + 1), np.uint32))
    with pytest.raises(DataError):
        db.answer(np.zeros((2, db.layout.cols), np.int64))
    client = fresh_client(db)
    q, state = client.queries(tags[:2])
    with pytest.raises(DataError):
        client.read(state, db.answer(q)[:3], tags[:2])
    with pytest.raises(DataError):
        client.read(state, db.answer(q), tags[1:3])
    with pytest.raises(DataError):
        client.read(object(), db.answer(q), tags[:2])
    with pytest.raises(DataError):
        client.queries(np.zeros((1, 16), np.uint8))
    with pytest.raises(DataError):
        client.apply_hint_rows(np.array([db.layout.rows]), np.zeros((1, LWE_N), np.uint32), 9)
    # a forged answer off the lattice (half a Δ) is detected, not read; a change by whole
    # multiples of Δ is not (it is a valid answer for other bytes): the tag and the sealed
    # label's opening catch that
    forged = db.answer(q).copy()
    forged[0, 3] += np.uint32(1 << 23)
    with pytest.raises(StaleHintError):
        client.read(state, forged, tags[:2])


def test_a_table_that_cannot_grow_is_left_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from rainbridge.protocols.pir import lattice

    rng = np.random.default_rng(7)
    tags, pays = rows(rng, 40)
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(2), seed=b"g")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    before, hint, version = db._db.copy(), db.hint.copy(), db.version
    monkeypatch.setattr(lattice, "MAX_COLS", db.layout.cols)  # no room to grow
    new_t, new_p = rows(rng, 60)
    with pytest.raises(DataError, match="2\\^20"):
        db.update(np.concatenate([tags[:1], new_t]), np.concatenate([pays[1:2], new_p]), tags[2:3])
    assert np.array_equal(db._db, before) and np.array_equal(db.hint, hint)
    assert db.version == version
    check(fresh_client(db), db, truth, tags)


@settings(max_examples=15, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=6
    ),
    slots=st.integers(1, 6),
    data=st.data(),
)
def test_update_sequences_match_dict(
    steps: list[tuple[int, int, int]], slots: int, data: st.DataObject
) -> None:
    """Random upserts (existing and new tags) and deletes; after each, a client that catches
    up (by hint rows, or the whole hint when told to) reads exactly the dict's contents."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    tags, pays = rows(rng, data.draw(st.integers(0, 60)))
    db = LatticeDb.build(tags, pays, max_hint_bytes=budget(slots), seed=b"h")
    truth = {t.tobytes(): p.tobytes() for t, p in zip(tags, pays, strict=True)}
    client = fresh_client(db)
    for n_old, n_new, n_del in steps:
        keys = list(truth)
        pick = rng.permutation(len(keys))
        old = [keys[i] for i in pick[:n_old]]
        gone = [keys[i] for i in pick[n_old : n_old + n_del]]
        new_t, _ = rows(rng, n_new)
        up_t = np.array(
            [np.frombuffer(k, np.uint8) for k in old] + list(new_t), dtype=np.uint8
        ).reshape(-1, 16)
        up_p = rng.integers(0, 256, (len(up_t), P), dtype=np.uint8)
        del_t = np.array([np.frombuffer(k, np.uint8) for k in gone], dtype=np.uint8).reshape(-1, 16)
        before = client.version
        db.update(up_t, up_p, del_t)
        for t, p in zip(up_t, up_p, strict=True):
            truth[t.tobytes()] = p.tobytes()
        for k in gone:
            del truth[k]
        changed = db.hint_rows_since(before)
        if changed is None or client.layout != db.layout:
            client = fresh_client(db)
        else:
            client.apply_hint_rows(changed, db.hint[changed], db.version)
        assert np.array_equal(client.hint, db.hint)
        probe = np.array(
            [np.frombuffer(k, np.uint8) for k in [*truth, *gone]] + list(rows(rng, 2)[0]),
            dtype=np.uint8,
        ).reshape(-1, 16)
        check(client, db, truth, probe)
