"""The multi-lender count without nodes: the ring build and the blinded query give, for
every ID, how many lenders' windows hold it (hypothesis against a plain count); no two sets
ever meet under one key product before the end; the lenders' view of a query is random."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.protocols import mlq

LENDERS = ["l1", "l2", "l3", "l4"]


def build(sets: dict[str, list[str]], keys: dict[str, bytes]) -> mlq.Multiset:
    done = []
    for owner, ids in sets.items():
        values = mlq.mask_ids(keys[owner], pa.array(ids, pa.string()))
        for hop in mlq.ring(LENDERS, owner):
            values = mlq.remask(keys[hop], values)
        done.append(values)
    return mlq.Multiset.merge(done)


def count(ident: str, asker: str, keys: dict[str, bytes], m: mlq.Multiset) -> int:
    q = mlq.start_query(ident)
    v = q.element
    for lender in mlq.ring(LENDERS, asker):
        v = mlq.remask(keys[lender], v)
    v = mlq.remask(keys[asker], v)
    return m.count(mlq.finish_query(q, v))


ids = st.text(alphabet="abcd", min_size=1, max_size=3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ids, max_size=25), min_size=4, max_size=4), st.lists(ids, max_size=6))
def test_counts_equal_a_plain_count(sets_list: list[list[str]], asked: list[str]) -> None:
    sets = dict(zip(LENDERS, sets_list, strict=True))
    keys = {lender: mlq.new_key() for lender in LENDERS}
    m = build(sets, keys)
    for ident in asked + [x for s in sets_list for x in s][:5]:
        want = sum(ident in set(s) for s in sets_list)
        assert count(ident, "l2", keys, m) == want
    assert sum(k * v for k, v in m.histogram().items()) == sum(len(set(s)) for s in sets_list)


def test_no_two_sets_share_a_key_product_before_the_end() -> None:
    for t in range(1, len(LENDERS)):
        products = set()
        for owner in LENDERS:
            chain = [owner, *mlq.ring(LENDERS, owner)][:t]
            products.add(frozenset(chain))
        assert len(products) == len(LENDERS)  # every set under its own product at hop t


def test_a_query_looks_random_to_the_lenders() -> None:
    a, b = mlq.start_query("110101199001011234"), mlq.start_query("110101199001011234")
    assert a.element != b.element and len(a.element) == len(b.element) == 32


def test_window_keeps_the_last_days() -> None:
    ids = pa.array(["a", "b", "c", "d"])
    dates = pa.array([dt.date(2026, 11, 1), dt.date(2026, 11, 20), dt.date(2026, 11, 30),
                      dt.date(2026, 12, 2)])  # fmt: skip
    got = mlq.window_ids(ids, dates, np.datetime64("2026-12-01"), 30)
    assert got.to_pylist() == ["b", "c"]
    strings = pa.array(["2026-11-01", "2026-11-20", "2026-11-30", "2026-12-02"])
    got = mlq.window_ids(ids, strings, np.datetime64("2026-12-01"), 30)
    assert got.to_pylist() == ["b", "c"]
