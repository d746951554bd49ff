"""The plain intersection of masked values against Python sets."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.protocols.psi.intersect import match, truncation_bytes


def test_truncation_follows_standard_bound() -> None:
    # 2^20 x 2^20: 21 + 21 + 40 = 82 bits -> 11 bytes
    assert truncation_bytes(1 << 20, 1 << 20) == 11
    assert truncation_bytes(0, 0) == 8
    assert truncation_bytes(10**8, 10**8) == 12  # 40 + 27 + 27 bits
    assert truncation_bytes(1 << 300, 1) == 32  # capped at the element size


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=10, max_size=10), unique=True, max_size=40),
    st.lists(st.binary(min_size=10, max_size=10), unique=True, max_size=40),
)
def test_match_equals_set_intersection(a: list[bytes], b: list[bytes]) -> None:
    pa_ = np.frombuffer(b"".join(a), dtype=np.uint8).reshape(-1, 10)
    pb = np.frombuffer(b"".join(b), dtype=np.uint8).reshape(-1, 10)
    ii, jj = match(pa_, pb)
    got = {(int(i), int(j)) for i, j in zip(ii, jj, strict=True)}
    want = {(i, b.index(x)) for i, x in enumerate(a) if x in b}
    assert got == want
    assert list(ii) == sorted(ii)


def test_match_confirms_full_width_on_key_collision() -> None:
    # Same first 8 bytes, different tails: never a match; several sharing a key: exact one.
    base = bytes(8)
    table = np.frombuffer(base + b"\x01\x02" + base + b"\x03\x04", dtype=np.uint8).reshape(2, 10)
    probe = np.frombuffer(base + b"\x03\x04" + base + b"\x09\x09", dtype=np.uint8).reshape(2, 10)
    ii, jj = match(probe, table)
    assert ii.tolist() == [0] and jj.tolist() == [1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ü", "", "long" * 20, "x"]) | st.text(max_size=5)))
def test_distinct_ids_groups_rows_exactly(values: list[str]) -> None:
    import pyarrow as pa

    from rainbridge.protocols.psi.items import _distinct_exact, distinct_ids

    ids = pa.array(values, type=pa.large_string())
    for d in (distinct_ids(ids), _distinct_exact(ids)):
        vals = d.values.to_pylist()
        assert sorted(vals) == sorted(set(values))
        for k, v in enumerate(vals):
            mask = np.zeros(len(vals), dtype=bool)
            mask[k] = True
            assert d.rows(mask).tolist() == [i for i, x in enumerate(values) if x == v]
