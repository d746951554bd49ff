"""The PIR service's verifiable OPRF: a replica client and a bucket client against a real
table get proofs and verify them; a forged evaluation (another key, a changed element, a
dropped or damaged proof) is refused and loses nothing; a table of mode 0 (saved before the
verifiable OPRF) still answers, marked unverifiable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.crypto import oprf, voprf
from rainbridge.errors import DataError, InvalidElementError, ProofError
from rainbridge.protocols.pir import replica_sync, wire
from rainbridge.protocols.pir.client import PinnedKey, Replica
from rainbridge.protocols.pir.table import PirTable


def table_of(keys: list[str], *, oprf_mode: int = voprf.MODE_VOPRF, k: int = 4) -> PirTable:
    labels = pa.table({"score": pa.array([len(x) * 1.5 for x in keys], pa.float64())})
    return PirTable.build(pa.array(keys, pa.string()), labels, k=k, oprf_mode=oprf_mode)


def copy(table: PirTable) -> Replica:
    req: dict[str, Any] = {"have": None, "snapshot": None}
    replica: Replica | None = None
    while True:
        replica, nxt = replica_sync.apply_sync(
            replica, replica_sync.sync_page(table, req), "server"
        )
        if nxt is None:
            assert replica is not None
            return replica
        req = {"have": None, "snapshot": nxt}


def found(answers: list[Any]) -> dict[str, Any]:
    return {a.id: a.label for a in answers if a.found}


def snapshot(replica: Replica) -> tuple[Any, ...]:
    r = replica.rows
    return (replica.key_id, replica.version, replica.public_key, r.tags.tobytes(),
            r.sealed.tobytes(), r.versions.tobytes())  # fmt: skip


KEYS = [f"id{i}" for i in range(40)]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.text(alphabet="abxyz", min_size=1, max_size=5), min_size=1, max_size=30,
             unique=True),
    st.lists(st.text(alphabet="abxyz", min_size=1, max_size=5), min_size=1, max_size=6),
)  # fmt: skip
def test_both_clients_verify_and_equal_a_plain_lookup(keys: list[str], asked: list[str]) -> None:
    table = table_of(keys)
    want = {x: {"score": len(x) * 1.5} for x in asked if x in keys}
    replica = copy(table)
    assert replica.pinned == PinnedKey.from_header(table.describe(), "t")
    assert replica.pinned.verifiable

    def server(msg: dict[str, Any]) -> dict[str, Any]:
        reply = wire.answer(table, msg)
        if "evaluated" in reply:
            assert len(wire.unb64(reply["proof"], "t")) == voprf.PROOF_SIZE
        return reply

    assert found(wire.run_query(server, "svc", asked, "private", replica)) == want
    pin = PinnedKey.from_header(table.describe(), "t")
    got = wire.run_query(server, "svc", asked, "bucket", None, table.bucket_bits, pinned=pin)
    assert found(got) == want


def test_evaluate_and_finalize_are_the_service_steps() -> None:
    table = table_of(KEYS)
    q = voprf.blind([b"id3", b"nobody"])
    reply = {**wire.evaluate(table, q.elements), "key_id": table.key_id, "oprf_mode": 1}
    assert set(reply) == {"evaluated", "proof", "key_id", "oprf_mode"}
    outs = wire.finalize(table.describe(), q, reply)
    assert outs == voprf.evaluate_direct(table.key, [b"id3", b"nobody"])
    old = table_of(KEYS, oprf_mode=oprf.MODE_OPRF)
    q0 = oprf.blind([b"id3"])
    assert set(wire.evaluate(old, q0.elements)) == {"evaluated"}


def forgeries(table: PirTable, msg: dict[str, Any]) -> list[tuple[dict[str, Any], type]]:
    """Answers a dishonest server could send for ``msg``, each with the error it must get."""
    good = wire.answer_query(table, msg)
    elements = wire.unb64(msg["elements"], "t")
    other = PirTable.build(pa.array(KEYS, pa.string()), pa.table({"score": [1.0] * len(KEYS)}))
    under_other = {**good, **wire.evaluate(other, elements)}  # another key, its own valid proof
    evaluated = bytearray(wire.unb64(good["evaluated"], "t"))
    evaluated[:32] = voprf.public_key(voprf.random_key())  # one element changed
    proof = bytearray(wire.unb64(good["proof"], "t"))
    proof[5] ^= 0x10
    dropped = {k: v for k, v in good.items() if k != "proof"}
    return [
        (under_other, ProofError),
        ({**good, "evaluated": wire.b64(bytes(evaluated))}, ProofError),
        ({**good, "proof": wire.b64(bytes(proof))}, ProofError),
        ({**good, "proof": wire.b64(b"")}, ProofError),
        (dropped, ProofError),
        ({**good, "evaluated": wire.b64(bytes(evaluated[:32]))}, InvalidElementError),
        # the other key, honestly named: the service was published again
        ({**under_other, **{k: other.describe()[k] for k in ("key_id", "public_key")}},
         wire.KeyChangedError),
        ({**good, "oprf_mode": 0}, wire.KeyChangedError),
    ]  # fmt: skip


def test_forged_private_answers_are_refused_and_lose_nothing() -> None:
    table = table_of(KEYS)
    replica = copy(table)
    before = snapshot(replica)
    q, msg = wire.make_query("svc", ["id1", "id2", "nobody"], "private")
    for forged, err in forgeries(table, msg):
        with pytest.raises(err):
            wire.read_answer(q, forged, replica, "server")
        assert snapshot(replica) == before
    # the replica still answers an honest reply
    got = wire.read_answer(q, wire.answer_query(table, msg), replica, "server")
    assert found(got) == {"id1": {"score": 4.5}, "id2": {"score": 4.5}}


def test_forged_bucket_answers_are_refused() -> None:
    table = table_of(KEYS)
    pin = PinnedKey.from_header(table.describe(), "t")
    q, msg = wire.make_query("svc", ["id1", "nobody"], "bucket", table.bucket_bits)
    for forged, err in forgeries(table, msg):
        with pytest.raises(err):
            wire.BucketAnswer(q, forged, "server", pin)
    assert wire.BucketAnswer(q, wire.answer_query(table, msg), "server", pin).next is None


def test_a_republished_service_needs_a_new_copy() -> None:
    table = table_of(KEYS)
    replica = copy(table)
    again = table_of(KEYS)  # a new key
    before = snapshot(replica)
    with pytest.raises(wire.KeyChangedError, match="sync it"):
        wire.run_query(lambda m: wire.answer(again, m), "svc", ["id1"], "private", replica)
    assert snapshot(replica) == before
    fresh = copy(again)  # an explicit copy pins the new key
    assert fresh.public_key == again.public_key != replica.public_key
    assert wire.run_query(lambda m: wire.answer(again, m), "svc", ["id1"], "private", fresh)[
        0
    ].found


def test_a_header_whose_key_does_not_match_its_id_is_refused() -> None:
    table = table_of(KEYS)
    header = table.describe()
    other = voprf.public_key(voprf.random_key()).hex()
    for bad in (
        {**header, "public_key": other},
        {**header, "public_key": "zz"},
        {**header, "public_key": None},
        {**header, "oprf_mode": 7},
    ):
        with pytest.raises(DataError):
            PinnedKey.from_header(bad, "t")
    page = replica_sync.sync_page(table, {"have": None, "snapshot": None})
    with pytest.raises(DataError):
        replica_sync.apply_sync(None, {**page, "public_key": other}, "server")


def test_a_mode_0_table_still_answers(tmp_path: Path) -> None:
    old = table_of(KEYS, oprf_mode=oprf.MODE_OPRF)
    old.save(tmp_path / "svc")
    # a table saved without a mode (before the verifiable OPRF) loads as mode 0
    meta_path = tmp_path / "svc" / "table.json"
    meta = json.loads(meta_path.read_text())
    for k in ("oprf_mode", "verifiable", "public_key", "pk_sha256"):
        meta.pop(k, None)
    meta_path.write_text(json.dumps(meta))
    loaded = PirTable.load(tmp_path / "svc")
    assert loaded.oprf_mode == oprf.MODE_OPRF and loaded.key_id == old.key_id
    info = loaded.describe()
    assert info["verifiable"] is False and "public_key" not in info
    replica = copy(loaded)
    assert not replica.pinned.verifiable

    def server(m: dict[str, Any]) -> dict[str, Any]:
        return wire.answer(loaded, m)

    assert found(wire.run_query(server, "svc", ["id7", "x"], "private", replica)) == {
        "id7": {"score": 4.5}
    }
    pin = PinnedKey.from_header(info, "t")
    got = wire.run_query(server, "svc", ["id7"], "bucket", None, loaded.bucket_bits, pinned=pin)
    assert found(got) == {"id7": {"score": 4.5}}
    # a replica saved before the verifiable OPRF (no mode in its metadata) reads as mode 0
    legacy = {k: v for k, v in replica.meta().items() if k not in ("oprf_mode", "public_key")}
    arrays = {k: v.tobytes() for k, v in replica.to_arrays().items()}
    assert Replica.from_parts(legacy, arrays, "t").pinned == replica.pinned


def test_a_query_in_another_mode_is_refused_before_any_work() -> None:
    new, old = table_of(KEYS), table_of(KEYS, oprf_mode=oprf.MODE_OPRF)
    _, msg1 = wire.make_query("svc", ["id1"], "private")
    _, msg0 = wire.make_query("svc", ["id1"], "private", oprf_mode=oprf.MODE_OPRF)
    legacy = {k: v for k, v in msg0.items() if k != "oprf_mode"}  # a client of before
    for table, msg in ((new, msg0), (new, legacy), (old, msg1)):
        with pytest.raises(DataError, match="OPRF in mode"):
            wire.answer_query(table, msg)
    assert "proof" not in wire.answer_query(old, legacy)


def test_the_header_pins_what_the_ledger_records() -> None:
    table = table_of(KEYS)
    info = table.describe()
    assert info["pk_sha256"].startswith(table.key_id)
    assert bytes.fromhex(info["public_key"]) == voprf.public_key(table.key)
    # the key does not change with an update
    table.update(pa.array(["new"]), pa.table({"score": [2.0]}), pa.array([], pa.string()))
    replica = copy(table)
    assert replica.pinned == PinnedKey.from_header(info, "t")
    assert found(wire.run_query(lambda m: wire.answer(table, m), "svc", ["new"], "private",
                                replica)) == {"new": {"score": 2.0}}  # fmt: skip
