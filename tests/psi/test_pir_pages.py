"""Keyword PIR answers of any size, without the node: generated tables, updates and batches
of 1 to 4,096 IDs, read in pages (made small here so that every answer spans many) in both
modes, against a plain dictionary; the table changing between two pages of an answer; a
replica catching up by deltas larger than one message; the reply bound refused up front."""

from __future__ import annotations

import json
import random
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.errors import DataError
from rainbridge.protocols.pir import replica_sync, wire
from rainbridge.protocols.pir.client import Replica
from rainbridge.protocols.pir.table import PirTable

LIMIT = 2 << 20  # the data plane's message limit


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "PAGE_BYTES", 2048)


def labels_of(rows: dict[str, tuple[int | None, str | None]]) -> pa.Table:
    vals = list(rows.values())
    return pa.table(
        {
            "n": pa.array([v[0] for v in vals], pa.int64()),
            "s": pa.array([v[1] for v in vals], pa.string()),
        }
    )


def expected(rows: dict[str, tuple[int | None, str | None]], x: str) -> dict[str, Any] | None:
    return None if x not in rows else {"n": rows[x][0], "s": rows[x][1]}


class Server:
    """Answers as the node does, each reply JSON-encoded and measured."""

    def __init__(self, table: PirTable, max_reply_bytes: int = wire.MAX_REPLY_BYTES) -> None:
        self.table = table
        self.max_reply_bytes = max_reply_bytes
        self.largest = 0
        self.pages = 0
        self.before_page: Any = None

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        msg = json.loads(json.dumps(msg))
        if "page" in msg:
            self.pages += 1
            if self.before_page is not None:
                self.before_page()
        reply = wire.answer(self.table, msg, peer="bank", max_reply_bytes=self.max_reply_bytes)
        size = len(json.dumps(reply))
        self.largest = max(self.largest, size)
        return json.loads(json.dumps(reply))

    def sync(self, replica: Replica | None) -> Replica:
        have = {"key_id": replica.key_id, "version": replica.version} if replica else None
        req: dict[str, Any] = {"have": have, "snapshot": None}
        while True:
            reply = json.loads(json.dumps(replica_sync.sync_page(self.table, req)))
            self.largest = max(self.largest, len(json.dumps(reply)))
            replica, nxt = replica_sync.apply_sync(replica, reply, "server")
            if nxt is None:
                assert replica is not None
                return replica
            req = {"have": None, "snapshot": nxt}


ids = st.text(alphabet='0a," 7é', min_size=1, max_size=5)
label = st.tuples(
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.text(alphabet="0479x-", max_size=12)),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(ids, label, min_size=1, max_size=150),
    st.dictionaries(ids, label, max_size=40),
    st.lists(ids, max_size=20),
    st.integers(1, wire.MAX_BATCH),
    st.integers(1, 64),
    st.randoms(use_true_random=False),
)
def test_answers_in_pages_equal_a_plain_lookup(
    rows: dict[str, tuple[int | None, str | None]],
    upsert: dict[str, tuple[int | None, str | None]],
    delete: list[str],
    batch: int,
    k: int,
    rng: random.Random,
) -> None:
    table = PirTable.build(pa.array(list(rows), pa.string()), labels_of(rows), k=k)
    server = Server(table)
    replica = server.sync(None)
    pool = [*rows, *upsert, "never-there", "0", "007"]
    for step in range(2):
        asked = [rng.choice(pool) for _ in range(batch)]
        for mode in ("private", "bucket"):
            got = wire.run_query(server, "svc", asked, mode, replica, table.bucket_bits)
            assert [a.id for a in got] == asked
            for a in got:
                assert a.found == (a.id in rows), (mode, a.id)
                assert a.label == expected(rows, a.id), (mode, a.id)
        if step == 0:
            delete = [x for x in dict.fromkeys(delete) if x not in upsert]
            widest = max((len((v[1] or "").encode()) for v in rows.values()), default=0)
            if any(len((v[1] or "").encode()) > widest for v in upsert.values()):
                # a longer text than the table was sealed for: refused, nothing changes
                with pytest.raises(DataError, match="outgrew its width"):
                    table.update(
                        pa.array(list(upsert), pa.string()),
                        labels_of(upsert),
                        pa.array(delete, pa.string()),
                    )
                upsert = {x: v for x, v in upsert.items() if len((v[1] or "").encode()) <= widest}
            table.update(
                pa.array(list(upsert), pa.string()),
                labels_of(upsert),
                pa.array(delete, pa.string()),
            )
            for x in delete:
                rows.pop(x, None)
            rows.update(upsert)
            replica = server.sync(replica)
    assert server.largest < LIMIT


def test_a_table_changing_between_pages_gives_the_answer_of_one_version() -> None:
    rows = {f"id{i:04d}": (i, f"v{i}") for i in range(600)}
    table = PirTable.build(pa.array(list(rows), pa.string()), labels_of(rows), k=600)
    assert table.bucket_bits == 0  # one bucket: every answer is the whole table, in pages
    server = Server(table)
    changes = iter(range(3))

    def change() -> None:
        i = next(changes, None)
        if i is not None:  # the first three pages each find a new version
            new = {"id0001": (-i, "chg"), f"new{i}": (i, None)}
            table.update(pa.array(list(new), pa.string()), labels_of(new), pa.array(["id0002"]))
            rows.update(new)
            rows.pop("id0002", None)

    server.before_page = change
    asked = ["id0001", "id0002", "new0", "new2", "id0599"]
    got = {a.id: a for a in wire.run_query(server, "svc", asked, "bucket", None, 0)}
    assert server.pages > 3
    for x in asked:
        assert got[x].found == (x in rows) and got[x].label == expected(rows, x), x


def test_a_forged_or_incomplete_answer_is_refused() -> None:
    rows = {f"id{i}": (i, None) for i in range(300)}
    table = PirTable.build(pa.array(list(rows), pa.string()), labels_of(rows), k=300)
    server = Server(table)
    q, msg = wire.make_query("svc", ["id1"], "bucket", 0)
    first = server(msg)
    got = wire.BucketAnswer(q, first, "server")
    assert got.next is not None
    page = server({"type": "pir_query", "service": "svc", "page": got.next})
    with pytest.raises(DataError, match="out of order"):
        got.take({**page, "offset": page["offset"] + 1})
    with pytest.raises(DataError, match="not complete"):
        got.answers()
    forged = {**got.next, "ticket": {**got.next["ticket"], "buckets": [0, 0]}}
    with pytest.raises(DataError, match="ticket"):
        server({"type": "pir_query", "service": "svc", "page": forged})
    with pytest.raises(DataError, match="ticket"):  # another client's ticket
        wire.answer_page(table, {"service": "svc", "page": got.next}, peer="someone-else")


def test_an_answer_over_the_bound_is_refused_before_any_work() -> None:
    rows = {f"id{i}": (i, "x" * 30) for i in range(2000)}
    table = PirTable.build(pa.array(list(rows), pa.string()), labels_of(rows), k=16)
    per_bucket = len(rows) / (1 << table.bucket_bits)
    bound = int(8 * per_bucket * table.row_bytes)
    server = Server(table, max_reply_bytes=bound)
    assert wire.run_query(server, "svc", ["id1"], "bucket", None, table.bucket_bits)[0].found
    many = [f"id{i}" for i in range(400)]
    _, msg = wire.make_query("svc", many, "bucket", table.bucket_bits)
    with pytest.raises(wire.ReplyTooLargeError, match="max_reply_bytes") as err:
        wire.check_query(table, msg, max_reply_bytes=bound)
    assert f"{bound:,}" in str(err.value)
    with pytest.raises(wire.ReplyTooLargeError):
        server(msg)
    # buckets of another size (a republished table) are refused too, before any work
    with pytest.raises(wire.RebucketedError):
        server({**msg, "bucket_bits": table.bucket_bits + 1})


def test_a_replica_catches_up_by_a_delta_larger_than_a_message() -> None:
    rows = {f"id{i}": (i, f"s{i}") for i in range(400)}
    table = PirTable.build(pa.array(list(rows), pa.string()), labels_of(rows), k=8)
    server = Server(table)
    replica = server.sync(None)
    up = {f"id{i}": (-i, None) for i in range(0, 400, 2)} | {f"n{i}": (i, "n") for i in range(90)}
    table.update(pa.array(list(up), pa.string()), labels_of(up), pa.array(["id1", "id3"]))
    small = {"id5": (5, "bis")}
    table.update(pa.array(list(small), pa.string()), labels_of(small), pa.array([]))
    rows.update(up)
    rows.update(small)
    rows.pop("id1")
    rows.pop("id3")
    reply = replica_sync.sync_page(table, {"have": {"key_id": replica.key_id, "version": 1}})
    assert "delta_part" in reply  # the first delta alone is larger than a page
    replica = server.sync(replica)
    assert replica.version == 3 and len(replica.rows) == len(rows)
    asked = [*rows, "id1", "nobody"]
    for a in wire.run_query(server, "svc", asked, "private", replica):
        assert a.label == expected(rows, a.id)
