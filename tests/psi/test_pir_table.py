"""Keyword PIR without the node: the sealed table against a plain lookup (present and absent
IDs, batches, duplicates in a query), updates caught up by deltas, copies in pages, the
bucket mode, what the server sees, and malformed messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.crypto import oprf
from rainbridge.errors import DataError, InvalidElementError
from rainbridge.protocols.pir import replica_sync, wire
from rainbridge.protocols.pir.client import Replica
from rainbridge.protocols.pir.table import PirTable


def table_of(keys: list[str], k: int = 4) -> PirTable:
    labels = pa.table(
        {
            "score": pa.array([len(x) * 1.5 for x in keys], pa.float64()),
            "tag": pa.array([f"t-{x}" if len(x) % 3 else None for x in keys], pa.string()),
        }
    )
    return PirTable.build(pa.array(keys, pa.string()), labels, k=k)


def copy(table: PirTable, replica: Replica | None = None) -> Replica:
    have = {"key_id": replica.key_id, "version": replica.version} if replica else None
    req: dict[str, Any] = {"have": have, "snapshot": None}
    while True:
        replica, nxt = replica_sync.apply_sync(
            replica, replica_sync.sync_page(table, req), "server"
        )
        if nxt is None:
            assert replica is not None
            return replica
        req = {"have": None, "snapshot": nxt}


def query(table: PirTable, ids: list[str], mode: str, replica: Replica | None) -> list[Any]:
    q, msg = wire.make_query("svc", ids, mode, table.bucket_bits)
    return wire.read_answer(q, wire.answer_query(table, msg), replica, "server")


def expected(keys: list[str], x: str) -> dict[str, Any] | None:
    if x not in keys:
        return None
    return {"score": len(x) * 1.5, "tag": f"t-{x}" if len(x) % 3 else None}


ids = st.text(alphabet="abcxyz", min_size=1, max_size=6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ids, min_size=1, max_size=40, unique=True), st.lists(ids, min_size=1, max_size=8))
def test_answers_equal_a_plain_lookup(keys: list[str], asked: list[str]) -> None:
    table = table_of(keys)
    replica = copy(table)
    asked = asked + asked[:1] + keys[:2]  # repeats and members
    for mode, rep in (("private", replica), ("bucket", None)):
        answers = query(table, asked, mode, rep)
        assert [a.id for a in answers] == asked
        for a in answers:
            assert a.found == (a.id in keys)
            assert a.label == expected(keys, a.id)


def test_updates_reach_the_replica_by_deltas_and_copies_page() -> None:
    n = 40_000  # several pages at 1 MiB each
    keys = [f"id{i}" for i in range(n)]
    table = table_of(keys, k=256)
    replica = copy(table)
    assert len(replica.rows) == n and replica.version == 1
    labels = pa.table({"score": [99.0, 1.0], "tag": ["changed", None]})
    table.update(pa.array(["id5", "brand-new"]), labels, pa.array(["id7", "never-there"]))
    assert table.version == 2
    replica = copy(table, replica)  # by a delta, not a copy
    assert replica.version == 2 and len(replica.rows) == n
    got = {a.id: a for a in query(table, ["id5", "brand-new", "id7", "id8"], "private", replica)}
    assert got["id5"].label == {"score": 99.0, "tag": "changed"}
    assert got["brand-new"].label == {"score": 1.0, "tag": None}
    assert not got["id7"].found and got["id8"].found
    # the changed label is sealed under a new nonce: its old ciphertext is not reused
    stale = replica.rows.sealed[replica.rows.versions == 2]
    assert len(stale) == 2


def test_a_replica_too_far_behind_copies_again() -> None:
    table = table_of(["a", "b"])
    replica = copy(table)
    for i in range(70):  # more versions than the table keeps deltas for
        table.update(pa.array([f"n{i}"]), pa.table({"score": [1.0], "tag": ["x"]}), pa.array([]))
    reply = replica_sync.sync_page(table, {"have": {"key_id": replica.key_id, "version": 1}})
    assert "snapshot" in reply and "deltas" not in reply
    replica = copy(table, replica)
    assert len(replica.rows) == 72
    assert query(table, ["n69"], "private", replica)[0].found


def test_the_server_view_does_not_depend_on_the_id() -> None:
    table = table_of([f"id{i}" for i in range(100)])
    seen = []
    for ident in ("id1", "someone-else-entirely", "id1"):
        _, msg = wire.make_query("svc", [ident], "private")
        seen.append(msg)
    # the same fields and sizes whatever the ID, present or not
    assert len({tuple(sorted(m)) for m in seen}) == 1
    assert len({len(m["elements"]) for m in seen}) == 1
    elems = [wire.unb64(m["elements"], "t") for m in seen]
    # fresh blinds: the same ID twice gives unrelated elements
    assert elems[0] != elems[2]
    # each element is a valid group element (the server could not tell them apart by shape)
    for e in elems:
        oprf.evaluate(table.key, e)
    # and the bytes look uniform: over many queries of one ID, every byte position varies
    many = np.frombuffer(
        b"".join(wire.unb64(wire.make_query("svc", ["id1"], "private")[1]["elements"], "t")
                 for _ in range(64)),
        dtype=np.uint8,
    ).reshape(64, 32)  # fmt: skip
    assert all(len(set(many[:, j].tolist())) > 16 for j in range(31))


def test_duplicate_table_ids_and_bad_updates_are_refused() -> None:
    with pytest.raises(DataError, match="must be unique"):
        table_of(["a", "b", "a"])
    table = table_of(["a", "bb"])
    with pytest.raises(DataError, match="outgrew"):
        table.update(pa.array(["a"]), pa.table({"score": [1.0], "tag": ["x" * 50]}), pa.array([]))
    with pytest.raises(DataError, match="label rows"):
        table.update(pa.array(["a", "c"]), pa.table({"score": [1.0], "tag": ["x"]}), pa.array([]))


def test_malformed_queries_are_refused() -> None:
    table = table_of(["a", "b"])
    _, good = wire.make_query("svc", ["a"], "private")
    for bad, err in [
        ({**good, "mode": "everything"}, DataError),
        ({**good, "elements": "@@@"}, DataError),
        ({**good, "elements": wire.b64(b"\x01" * 31)}, DataError),
        ({**good, "elements": wire.b64(b"")}, DataError),
        ({**good, "elements": wire.b64(b"\xff" * 32)}, InvalidElementError),
        ({**good, "elements": wire.b64(b"\x00" * 32 * (wire.MAX_BATCH + 1))}, DataError),
        ({**good, "mode": "bucket"}, DataError),
        ({**good, "mode": "bucket", "buckets": [10**9]}, DataError),
    ]:
        with pytest.raises(err):
            wire.answer_query(table, bad)
    with pytest.raises(DataError, match="does not answer"):
        wire.answer_query(table, {**good, "mode": "bucket", "buckets": [0]}, modes=("private",))
    with pytest.raises(DataError, match="changed during the copy"):
        replica_sync.sync_page(table, {"snapshot": {"version": 99, "offset": 0}})


def test_a_forged_answer_is_refused_by_the_client() -> None:
    table = table_of(["a", "b"])
    replica = copy(table)
    q, msg = wire.make_query("svc", ["a", "b"], "private")
    reply = wire.answer_query(table, msg)
    short = {**reply, "evaluated": wire.b64(wire.unb64(reply["evaluated"], "t")[:32])}
    with pytest.raises(InvalidElementError):
        wire.read_answer(q, short, replica, "server")
    table.update(pa.array(["c"]), pa.table({"score": [1.0], "tag": ["x"]}), pa.array([]))
    with pytest.raises(DataError, match="sync it first"):
        wire.read_answer(q, wire.answer_query(table, msg), replica, "server")


def test_a_table_survives_save_and_load(tmp_path: Any) -> None:
    table = table_of(["a", "bb", "ccc"])
    table.save(tmp_path / "svc")
    again = PirTable.load(tmp_path / "svc")
    assert again.key_id == table.key_id and again.version == table.version
    assert query(again, ["bb"], "private", copy(table))[0].label == expected(["bb"], "bb")
    assert (tmp_path / "svc" / "oprf.key").stat().st_mode & 0o077 == 0
