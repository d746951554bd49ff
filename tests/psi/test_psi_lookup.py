"""The core's PSI hash tables (grouping digests, matching values) against plain Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.protocols.psi.intersect import match
from rainbridge.protocols.psi.rr22 import _RECORD, _distinct

digest = st.binary(min_size=16, max_size=16)


@settings(max_examples=80, deadline=None)
@given(st.lists(digest, max_size=12), st.lists(st.integers(0, 11), max_size=60))
def test_distinct_groups_digests_exactly(pool: list[bytes], picks: list[int]) -> None:
    rows = [pool[p % len(pool)] for p in picks] if pool else []
    rec = np.empty(len(rows), dtype=_RECORD)
    rec["digest"] = np.frombuffer(b"".join(rows), dtype="V16") if rows else rec["digest"]
    rec["row"] = np.arange(len(rows))
    uniq, group = _distinct(rec)
    values = [uniq[16 * k : 16 * k + 16] for k in range(len(uniq) // 16)]
    assert values == list(dict.fromkeys(rows))  # first occurrence order, each once
    assert [values[g] for g in group] == rows
    # one bucket in memory: the digests alone, the row numbers implicit
    plain_uniq, plain_group = _distinct(np.ascontiguousarray(rec["digest"]))
    assert plain_uniq == uniq and plain_group.tolist() == group.tolist()


def test_distinct_of_digests_sharing_half_their_bytes() -> None:
    # equal second halves (the slot), different first halves: never merged
    half = bytes(range(8))
    rows = [bytes([i]) * 8 + half for i in range(5)] * 3
    uniq, group = _core.Rr22Receiver.distinct(b"".join(rows))
    assert len(uniq) == 5 * 16
    assert np.frombuffer(group, "<i8").tolist() == [0, 1, 2, 3, 4] * 3


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.binary(min_size=12, max_size=12), max_size=40),
    st.lists(st.integers(0, 80), max_size=60),
    st.integers(8, 12),
)
def test_match_is_the_plain_join(probe: list[bytes], picks: list[int], width: int) -> None:
    # table rows: copies of probe rows (repeats allowed), rows sharing only their first
    # 8 bytes with a probe row, and fresh ones
    table: list[bytes] = []
    for p in picks:
        if probe and p < 40:
            table.append(probe[p % len(probe)][:width])
        elif probe and p < 60:
            r = probe[p % len(probe)][:width]
            table.append(r[:-1] + bytes([r[-1] ^ 1]))
        else:
            table.append(bytes([p]) * width)
    pm = np.frombuffer(b"".join(probe), dtype=np.uint8).reshape(-1, 12)
    tm = np.frombuffer(b"".join(table), dtype=np.uint8).reshape(-1, width)
    ii, jj = match(np.ascontiguousarray(pm[:, :width]), tm)
    assert ii.tolist() == sorted(ii.tolist())
    want = sorted(
        (i, j) for i, x in enumerate(probe) for j, y in enumerate(table) if x[:width] == y
    )
    assert sorted(zip(ii.tolist(), jj.tolist(), strict=True)) == want
    # the strided form the RR22 receiver uses: 12-byte rows, the first `width` compared
    i2, j2 = _core.Rr22Receiver.match_rows(b"".join(probe), 12, tm, width)
    assert np.frombuffer(i2, "<i8").tolist() == ii.tolist()
    assert np.frombuffer(j2, "<i8").tolist() == jj.tolist()


def test_match_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError):
        match(np.zeros((2, 7), np.uint8), np.zeros((2, 7), np.uint8))
    with pytest.raises(ValueError):
        _core.Rr22Receiver.match_rows(bytes(17), 16, bytes(16), 16)
    with pytest.raises(ValueError):
        _core.Rr22Receiver.match_rows(bytes(16), 8, bytes(16), 16)
    with pytest.raises(ValueError):
        _core.Rr22Receiver.distinct(bytes(15))
    assert [len(x) for x in match(np.zeros((0, 9), np.uint8), np.zeros((3, 9), np.uint8))] == [
        0,
        0,
    ]


def test_a_table_repeating_far_beyond_chance_is_a_protocol_violation() -> None:
    # a forged set of masked values, one value 5000 times: refused at once, never quadratic
    table = np.full((5000, 12), 7, dtype=np.uint8)
    with pytest.raises(ProtocolViolationError, match="repeat"):
        match(np.full((1, 12), 7, dtype=np.uint8), table)
    ii, jj = match(np.full((1, 12), 7, dtype=np.uint8), table[:3])
    assert ii.tolist() == [0, 0, 0] and jj.tolist() == [0, 1, 2]
