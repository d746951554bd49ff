"""RR22 PSI with a payload: the receiver gets the other party's columns aligned to its
common rows, against a plain join (hypothesis); the record codec round-trips every type;
bad layouts, duplicate payload IDs and tampered records are refused."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.errors import DataError, ParameterMismatchError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi import PsiResult, Rr22PsiParams, run_rr22
from rainbridge.protocols.psi.records import RecordLayout

PARAMS = Rr22PsiParams(receivers=("a",), payload_from="b", payload_columns=("score", "name"))


def run(
    a: list[str],
    b: list[str],
    table: pa.Table | None,
    params: Rr22PsiParams = PARAMS,
    tamper: Any = None,
) -> dict[str, PsiResult]:
    async def main() -> dict[str, PsiResult]:
        mesh = LocalChannel.mesh("s", ["a", "b"])
        if tamper is not None:
            tamper(mesh["b"]["a"])
        ra, rb = await asyncio.gather(
            run_rr22("a", mesh["a"], pa.array(a, pa.string()), params),
            run_rr22("b", mesh["b"], pa.array(b, pa.string()), params, payload=table),
        )
        return {"a": ra, "b": rb}

    return asyncio.run(main())


def payload_of(b: list[str]) -> pa.Table:
    return pa.table(
        {
            "score": pa.array([i * 1.5 if i % 7 else None for i in range(len(b))], pa.float64()),
            "name": pa.array([f"n-{x}" if i % 5 else None for i, x in enumerate(b)], pa.string()),
            "other": pa.array(range(len(b))),
        }
    )


def expect(a: list[str], b: list[str], table: pa.Table, res: dict[str, PsiResult]) -> None:
    where = {x: i for i, x in enumerate(b)}
    rows = [i for i, x in enumerate(a) if x in where]
    got = res["a"]
    assert got.indices is not None and got.indices.tolist() == rows
    assert got.payload is not None
    assert got.payload.column_names == ["score", "name"]
    want = table.select(["score", "name"]).take(pa.array([where[a[i]] for i in rows], pa.int64()))
    assert got.payload.to_pylist() == want.to_pylist()
    assert res["b"].indices is None and res["b"].payload is None
    assert res["b"].size == got.size == len(set(a) & set(b))


ids = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ids, max_size=40), st.lists(ids, max_size=40, unique=True))
def test_payload_matches_a_plain_join(a: list[str], b: list[str]) -> None:
    a = a + b[: len(b) // 2] + b[:2]  # the receiver may hold an ID twice
    table = payload_of(b)
    expect(a, b, table, run(a, b, table))


def test_payload_at_scale_and_over_buckets() -> None:
    n = 200_000
    b = [f"id{i}" for i in range(n)]
    a = [f"id{i}" for i in range(0, 2 * n, 2)]
    table = payload_of(b)
    params = Rr22PsiParams(
        receivers=("a",),
        payload_from="b",
        payload_columns=("score", "name"),
        memory_limit_mb=16,
        batch_size=50_000,
    )
    res = run(a, b, table, params)
    assert res["a"].stats["buckets"] >= 4
    expect(a, b, table, res)


def test_duplicate_payload_ids_are_refused() -> None:
    b = ["x", "y", "x"]
    with pytest.raises(DataError, match="must be unique"):
        run(["x"], b, payload_of(b))


def test_payload_must_go_to_the_other_party_alone() -> None:
    for params in (
        Rr22PsiParams(payload_from="b", payload_columns=("score",)),  # both receive
        Rr22PsiParams(receivers=("b",), payload_from="b", payload_columns=("score",)),
        Rr22PsiParams(receivers=("a",), payload_from="c", payload_columns=("score",)),
        Rr22PsiParams(receivers=("a",), payload_from="b"),
        Rr22PsiParams(receivers=("a",), payload_columns=("score",)),
    ):
        with pytest.raises(ParameterMismatchError):
            run(["x"], ["x"], payload_of(["x"]), params)


def test_missing_payload_column_is_a_data_error() -> None:
    b = ["x", "y"]
    with pytest.raises(DataError, match="no column 'name'"):
        run(["x"], b, payload_of(b).select(["score"]))


def test_records_of_the_wrong_length_are_refused() -> None:
    def tamper(ch: Any) -> None:
        send = ch.send

        async def short(tag: str, payload: Any) -> None:
            if tag.endswith("/records"):
                payload = bytes(payload)[:-1]
            await send(tag, payload)

        ch.send = short

    b = ["x", "y"]
    with pytest.raises(ProtocolViolationError, match="payload records"):
        run(["x"], b, payload_of(b), tamper=tamper)


def test_a_forged_layout_is_refused() -> None:
    def tamper(ch: Any) -> None:
        send_json = ch.send_json

        async def forged(tag: str, obj: Any) -> None:
            if tag == "rr22/layout":
                obj = [{"name": "score", "kind": "double", "size": 3}, obj[1]]
            await send_json(tag, obj)

        ch.send_json = forged

    b = ["x", "y"]
    with pytest.raises(ProtocolViolationError, match="invalid payload layout"):
        run(["x"], b, payload_of(b), tamper=tamper)


def test_record_codec_round_trips_every_kind() -> None:
    table = pa.table(
        {
            "i8": pa.array([1, None, -128], pa.int8()),
            "u64": pa.array([2**64 - 1, 0, None], pa.uint64()),
            "f32": pa.array([1.5, None, -0.0], pa.float32()),
            "f64": [float("inf"), 2.0, None],
            "b": [True, None, False],
            "d": [datetime.date(2020, 1, 1), None, datetime.date(1899, 12, 31)],
            "ts": pa.array([1, None, -5], pa.timestamp("ns")),
            "s": ["héllo wörld", None, ""],
            "bin": [b"\x00\x01\x00", b"", None],
            "nothing": [None, None, None],
        }
    )
    layout = RecordLayout.of(table)
    records = layout.encode(table)
    assert records.shape == (3, layout.width)
    assert layout.decode(records).equals(table)
    again = RecordLayout.from_json(layout.to_json(), layout.names, "p")
    assert again == layout
    empty = table.slice(0, 0)
    assert RecordLayout.of(empty).decode(RecordLayout.of(empty).encode(empty)).num_rows == 0


def test_record_codec_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(DataError, match="type list"):
        RecordLayout.of(pa.table({"l": pa.array([[1, 2]])}))
    with pytest.raises(DataError, match="at most"):
        RecordLayout.of(pa.table({"s": ["x" * 70_000]}))
    layout = RecordLayout.of(pa.table({"s": ["abc"]}))
    damaged = layout.encode(pa.table({"s": ["abc"]}))
    damaged[0, 1] = 200  # the length field now exceeds the column's width
    with pytest.raises(DataError, match="damaged"):
        layout.decode(damaged)
    bad = np.array(damaged)
    bad[0, 0] = 7
    with pytest.raises(DataError, match="damaged"):
        layout.decode(bad)
