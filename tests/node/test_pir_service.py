"""The PIR service between nodes in one process (their messages JSON-encoded and held to the
data plane's limit): bucket mode answers any batch against a 20,000-row table with awkward
IDs and mixed label types, and a wide label, equal to a plain lookup; its stated reply bound
refuses before any work; updates read labels with the published table's types (every type,
empty cells, NULLs, numeric-looking text), and the same file published or upserted reads
back the same."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from inprocess_plane import Plane

from rainbridge.cli.pir import _read_rows
from rainbridge.errors import DataError
from rainbridge.node.dataplane import MAX_CONTROL_BYTES
from rainbridge.node.service import NodeService
from rainbridge.protocols.pir import wire

REASONS = ["404", "007", "fraud", "1e3", "true", "overdue, court order", 'says "no"', "逾期"]


def awkward_ids(n: int, rng: random.Random) -> list[str]:
    shapes = [
        lambda i: f"{i:08d}",  # leading zeros: "00000007" is not 7
        lambda i: f"A,{i}",
        lambda i: f'Q"{i}"',
        lambda i: f"张{i}",
        lambda i: f"x {i}",
        lambda i: f"{i}".rjust(200, "L"),
        lambda i: f"{i}e5",
    ]
    return [shapes[rng.randrange(len(shapes))](i) for i in range(n)]


def write_table(path: Path, n: int, seed: int = 11) -> dict[str, dict[str, Any]]:
    """A provider's table: its CSV file and, by ID, the labels a plain reading gives."""
    rng = random.Random(seed)
    truth: dict[str, dict[str, Any]] = {}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "level", "reason", "score", "listed_on"])
        for i, ident in enumerate(awkward_ids(n, rng)):
            level = None if i % 7 == 3 else rng.randrange(-5, 10**12)
            reason = None if i % 5 == 1 else ("x" if i == 0 else rng.choice(REASONS))
            score = None if i % 11 == 2 else rng.randrange(-1000, 1000) / 8
            day = None if i % 13 == 4 else dt.date(2020, 1, 1) + dt.timedelta(rng.randrange(2000))
            w.writerow(
                [
                    ident,
                    "" if level is None else level,
                    "" if reason is None else reason,
                    "" if score is None else score,
                    "" if day is None else day.isoformat(),
                ]
            )
            truth[ident] = {"level": level, "reason": reason, "score": score, "listed_on": day}
    return truth


def lookup(truth: dict[str, dict[str, Any]], ident: str) -> tuple[bool, Any]:
    return (ident in truth, truth.get(ident))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plane, NodeService, NodeService]:
    base = tmp_path_factory.mktemp("pir-nodes")
    plane = Plane()
    bureau, bank = plane.node(base, "bureau"), plane.node(base, "bank")
    return plane, bureau, bank


def serve(
    bureau: NodeService,
    base: Path,
    name: str,
    path: Path,
    labels: list[str],
    **publish: Any,
) -> dict[str, Any]:
    bureau.owners.add_dataset(name, str(path), "customer_id")
    out = bureau.pir.publish_pir(name=name, dataset=name, labels=labels, **publish)
    bureau.owners.add_grant(
        dataset=name,
        peer="bank",
        columns=["*"],
        components=["pir"],
        receivers=["bank"],
    )
    return out


def ask(bank: NodeService, service: str, ids: list[str], mode: str) -> list[dict[str, Any]]:
    out = run(bank.pir.pir_query("bureau", service, ids, mode))
    return list(out["results"])


def test_bucket_mode_answers_every_batch_like_a_plain_lookup(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    plane, bureau, bank = pair
    truth = write_table(tmp_path / "bl.csv", 20_000)
    pub = serve(
        bureau, tmp_path, "bl", tmp_path / "bl.csv", ["level", "reason", "score", "listed_on"],
        rate_per_s=1000.0, burst=1000,
    )  # fmt: skip
    assert pub["rows"] == 20_000 and pub["max_reply_bytes"] == wire.MAX_REPLY_BYTES
    rng = random.Random(5)
    present = list(truth)
    for batch in (1, 16, 64, 256, 4096):
        asked = [
            rng.choice(present) if rng.random() < 0.7 else f"absent-{rng.randrange(10**6)}"
            for _ in range(batch)
        ]
        plane.largest = 0
        got = ask(bank, "bl", asked, "bucket")
        assert [g["id"] for g in got] == asked
        for g in got:
            found, label = lookup(truth, g["id"])
            assert g["found"] == found, g["id"]
            assert g["label"] == label, g["id"]
        assert plane.largest <= MAX_CONTROL_BYTES
    # the private mode agrees (its replica copied in pages)
    asked = [*present[:50], "00000001", "1", "nobody"]
    private = ask(bank, "bl", asked, "private")
    assert [(g["found"], g["label"]) for g in private] == [lookup(truth, x) for x in asked]


def test_a_wide_label_is_answered_in_bucket_mode(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = pair
    path = tmp_path / "wide.csv"
    rows = {f"w{i}": ("y" * 65_531 if i == 7 else f"note {i}") for i in range(40)}
    path.write_text("customer_id,note\n" + "".join(f"{k},{v}\n" for k, v in rows.items()))
    serve(bureau, tmp_path, "wide", path, ["note"])  # default k = 256: one bucket of 40 rows
    for ident in ("w7", "w8", "w99"):
        (g,) = ask(bank, "wide", [ident], "bucket")
        assert g["found"] == (ident in rows)
        assert g["label"] == ({"note": rows[ident]} if ident in rows else None)


def test_an_answer_over_the_stated_bound_is_refused_before_any_work(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = pair
    truth = write_table(tmp_path / "small.csv", 3000, seed=3)
    pub = serve(
        bureau, tmp_path, "bounded", tmp_path / "small.csv", ["reason"],
        k=32, max_reply_bytes=1 << 16,
    )  # fmt: skip
    assert pub["max_reply_bytes"] == 1 << 16
    ids = list(truth)
    assert ask(bank, "bounded", ids[:1], "bucket")[0]["found"]
    since = bureau.storage.events(limit=100_000)[-1]["seq"]
    with pytest.raises(wire.ReplyTooLargeError, match="max_reply_bytes of 65,536"):
        ask(bank, "bounded", ids[:500], "bucket")
    kinds = [e["kind"] for e in bureau.storage.events(since=since)]
    assert "pir_refused" in kinds and "pir_answered" not in kinds
    # the grant counted only the answered query
    (grant,) = [g for g in bureau.owners.grants("bounded")]
    assert grant.calls_used == 1
    with pytest.raises(Exception, match="max_reply_bytes"):
        bureau.pir.publish_pir(name="b2", dataset="bounded", labels=["reason"], max_reply_bytes=10)


def labels_by_id(bank: NodeService, service: str, ids: list[str]) -> dict[str, Any]:
    got = ask(bank, service, ids, "bucket")
    return {g["id"]: g["label"] for g in got}


def test_an_update_reads_labels_with_the_published_types(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = pair
    path = tmp_path / "t.csv"
    path.write_text("customer_id,a,c\nX0,1,fraud\nX2,2,\nX3,3,007\n")
    serve(bureau, tmp_path, "typed", path, ["a", "c"])
    before = labels_by_id(bank, "typed", ["X0", "X2", "X3"])
    assert before == {
        "X0": {"a": 1, "c": "fraud"},
        "X2": {"a": 2, "c": None},  # an empty cell is NULL, for text too
        "X3": {"a": 3, "c": "007"},
    }
    # an update whose third column is all empty: the column keeps the table's type
    up = tmp_path / "up.csv"
    up.write_text("customer_id,a,c\nX1,5,\n")
    bureau.pir.update_pir("typed", _read_rows(up, "customer_id", None), [])
    # an update whose text looks like a number: it stays text in a text column
    up.write_text("customer_id,a,c\nX2,6,404\nX4,007,007\n")
    bureau.pir.update_pir("typed", _read_rows(up, "customer_id", None), [])
    after = labels_by_id(bank, "typed", ["X0", "X1", "X2", "X3", "X4"])
    assert after == {
        "X0": {"a": 1, "c": "fraud"},
        "X1": {"a": 5, "c": None},
        "X2": {"a": 6, "c": "404"},
        "X3": {"a": 3, "c": "007"},
        "X4": {"a": 7, "c": "007"},
    }
    # a value that is not of its column's type is refused, naming the column; nothing changes
    up.write_text("customer_id,a,c\nX0,many,ok\n")
    with pytest.raises(DataError, match="label 'a' is int64"):
        bureau.pir.update_pir("typed", _read_rows(up, "customer_id", None), [])
    with pytest.raises(DataError, match="both upserted and deleted"):
        bureau.pir.update_pir("typed", [{"customer_id": "X0", "a": 1, "c": "x"}], ["X0"])
    with pytest.raises(DataError, match="empty ID"):
        bureau.pir.update_pir("typed", [{"customer_id": "", "a": 1, "c": "x"}], [])
    assert labels_by_id(bank, "typed", ["X0"]) == {"X0": {"a": 1, "c": "fraud"}}


def test_the_same_file_published_or_upserted_reads_back_the_same(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = pair
    truth = write_table(tmp_path / "same.csv", 600, seed=9)
    labels = ["level", "reason", "score", "listed_on"]
    serve(bureau, tmp_path, "same", tmp_path / "same.csv", labels)
    ids = list(truth)
    published = labels_by_id(bank, "same", ids)
    assert published == {x: truth[x] for x in ids}
    out = bureau.pir.update_pir("same", _read_rows(tmp_path / "same.csv", "customer_id", None), [])
    assert out["version"] == 2 and out["removed_rows"] == 600
    assert labels_by_id(bank, "same", ids) == published
    private = ask(bank, "same", ids, "private")
    assert {g["id"]: g["label"] for g in private} == published


TYPES: dict[str, pa.DataType] = {
    "i8": pa.int8(),
    "i16": pa.int16(),
    "i32": pa.int32(),
    "i64": pa.int64(),
    "u8": pa.uint8(),
    "u16": pa.uint16(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "f32": pa.float32(),
    "f64": pa.float64(),
    "b": pa.bool_(),
    "d": pa.date32(),
    "ts": pa.timestamp("s"),
    "tms": pa.timestamp("ms"),
    "tus": pa.timestamp("us"),
    "s": pa.string(),
    "bin": pa.binary(),
    "n": pa.null(),
}
#: what a text, sent as an upserted label, reads back as in a column of each type
NUMERIC_TEXT = {
    "i8": ("007", 7), "i16": ("-404", -404), "i32": ("404", 404), "i64": ("007", 7),
    "u8": ("255", 255), "u16": ("007", 7), "u32": ("404", 404),
    "u64": ("18446744073709551615", 2**64 - 1),
    "f32": ("0.5", 0.5), "f64": ("1e3", 1000.0), "b": ("1", True),
    "d": ("2026-02-03", dt.date(2026, 2, 3)),
    "ts": ("2026-02-03 04:05:06", dt.datetime(2026, 2, 3, 4, 5, 6)),
    "tms": ("2026-02-03T04:05:06.123", dt.datetime(2026, 2, 3, 4, 5, 6, 123000)),
    "tus": ("2026-02-03 04:05:06.000007", dt.datetime(2026, 2, 3, 4, 5, 6, 7)),
    "s": ("007", "007"), "bin": ("404", b"404"),
}  # fmt: skip


def test_every_label_type_takes_empty_null_and_numeric_looking_text(
    pair: tuple[Plane, NodeService, NodeService], tmp_path: Path
) -> None:
    _, bureau, bank = pair
    first = {
        "i8": -1, "i16": 2, "i32": 3, "i64": 4, "u8": 5, "u16": 6, "u32": 7, "u64": 8,
        "f32": 1.5, "f64": 2.5, "b": False, "d": dt.date(2020, 1, 1),
        "ts": dt.datetime(2020, 1, 1), "tms": dt.datetime(2020, 1, 1),
        "tus": dt.datetime(2020, 1, 1), "s": "a longer text value", "bin": b"abcdefgh",
        "n": None,
    }  # fmt: skip
    table = pa.table(
        {"customer_id": pa.array(["P0"]), **{c: pa.array([first[c]], t) for c, t in TYPES.items()}}
    )
    pq.write_table(table, tmp_path / "types.parquet")
    serve(bureau, tmp_path, "types", tmp_path / "types.parquet", list(TYPES))
    assert labels_by_id(bank, "types", ["P0"])["P0"] == first
    rows = [
        {"customer_id": "E", **{c: "" for c in TYPES}},  # empty text: NULL for every type
        {"customer_id": "N", **{c: None for c in TYPES}},  # NULL
        {"customer_id": "T", **{c: NUMERIC_TEXT[c][0] for c in NUMERIC_TEXT}, "n": None},
        {"customer_id": "J", "i64": 404, "u8": 7, "f64": 3, "f32": 0.25, "b": True,
         "s": 404, **{c: None for c in TYPES if c not in ("i64", "u8", "f64", "f32", "b", "s")}},
    ]  # fmt: skip
    bureau.pir.update_pir("types", rows, [])
    got = labels_by_id(bank, "types", ["E", "N", "T", "J", "P0"])
    assert got["E"] == {c: None for c in TYPES}
    assert got["N"] == {c: None for c in TYPES}
    assert got["T"] == {**{c: v for c, (_, v) in NUMERIC_TEXT.items()}, "n": None}
    assert got["J"] == {
        **{c: None for c in TYPES}, "i64": 404, "u8": 7, "f64": 3.0, "f32": 0.25, "b": True,
        "s": "404",
    }  # fmt: skip
    assert got["P0"] == first
    for bad, match in [
        ({"u8": "256"}, "label 'u8' is uint8"),
        ({"i32": "4.5"}, "label 'i32' is int32"),
        ({"d": "yesterday"}, "label 'd' is date32"),
        ({"s": 1.5}, "label 's'"),
        ({"n": "anything"}, "published without any value"),
        ({"b": "maybe"}, "label 'b' is bool"),
    ]:
        row = {"customer_id": "Z", **{c: None for c in TYPES}, **bad}
        with pytest.raises(DataError, match=match):
            bureau.pir.update_pir("types", [row], [])
