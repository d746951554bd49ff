"""RR22 PSI against a plain set intersection, over LocalChannel: random sets (hypothesis),
duplicates, unbalanced sizes, one-sided results, the spill path and malformed peers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.errors import ParameterMismatchError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi import IdBatches, PsiResult, Rr22PsiParams, run_rr22
from rainbridge.protocols.psi.rr22 import bucket_count


def run_pair(
    a: Any, b: Any, params: Rr22PsiParams | dict[str, Rr22PsiParams] | None = None
) -> dict[str, PsiResult]:
    async def main() -> dict[str, PsiResult]:
        mesh = LocalChannel.mesh("s", ["a", "b"])

        def p(name: str) -> Rr22PsiParams | None:
            return params.get(name) if isinstance(params, dict) else params

        def arr(x: Any) -> Any:
            return pa.array(x, type=pa.string()) if isinstance(x, list) else x

        ra, rb = await asyncio.gather(
            run_rr22("a", mesh["a"], arr(a), p("a")), run_rr22("b", mesh["b"], arr(b), p("b"))
        )
        return {"a": ra, "b": rb}

    return asyncio.run(main())


def check(a: list[str], b: list[str], res: dict[str, PsiResult], receivers: str = "ab") -> None:
    truth = set(a) & set(b)
    for name, ids in (("a", a), ("b", b)):
        r = res[name]
        assert r.size == len(truth)
        if name in receivers:
            assert r.indices is not None
            assert r.indices.tolist() == [i for i, x in enumerate(ids) if x in truth]
        else:
            assert r.indices is None


ids = st.text(min_size=0, max_size=10)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ids, max_size=40), st.lists(ids, max_size=40), st.lists(ids, max_size=15))
def test_matches_plain_intersection(a: list[str], b: list[str], shared: list[str]) -> None:
    a, b = a + shared, shared + b
    check(a, b, run_pair(a, b))


def test_heavy_duplication_and_one_sided_result() -> None:
    a = ["x"] * 50 + ["y", "z"] * 20 + [f"a{i}" for i in range(100)]
    b = ["y"] * 30 + [f"a{i}" for i in range(0, 200, 3)] + ["q"]
    params = Rr22PsiParams(receivers=("b",))
    res = run_pair(a, b, params)
    check(a, b, res, receivers="b")


def test_unbalanced_sizes_both_ways() -> None:
    big = [f"id{i}" for i in range(1_000_000)]
    small = ["id5", "id999999", "nope", "id5", "id123456", "x", "y", "id0", "z", "id77"]
    check(small, big, run_pair(small, big))  # the small set's owner encodes the OKVS
    check(big, small, run_pair(big, small, Rr22PsiParams(receivers=("b", "a"))))


def test_empty_sets() -> None:
    check([], ["a"], run_pair([], ["a"]))
    check(["a"], [], run_pair(["a"], []))


def test_spill_path_with_a_small_bound(tmp_path: Any) -> None:
    n = 200_000
    a = [f"c{i}" for i in range(n)]
    b = [f"c{i}" for i in range(n // 2, n + n // 2)]
    limit = 16  # MiB: room for about 42,000 items per bucket
    assert bucket_count(n, limit) >= 4

    def batches(ids: list[str]) -> IdBatches:
        arr = pa.array(ids, type=pa.large_string())
        return IdBatches(len(ids), (arr.slice(lo, 10_000) for lo in range(0, len(ids), 10_000)))

    params = Rr22PsiParams(memory_limit_mb=limit, spill_dir=str(tmp_path))
    res = run_pair(batches(a), batches(b), params)
    check(a, b, res)
    assert res["a"].stats["buckets"] >= 4
    assert os.listdir(tmp_path) == []  # bucket files are removed


def test_three_parties_are_refused() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["a", "b", "c"])
        await run_rr22("a", mesh["a"], pa.array(["x"]))

    with pytest.raises(ParameterMismatchError, match="exactly two"):
        asyncio.run(main())


def test_parameter_mismatch_is_named() -> None:
    with pytest.raises(ParameterMismatchError, match="receivers"):
        run_pair(["a"], ["a"], {"a": Rr22PsiParams(receivers=("a",)), "b": Rr22PsiParams()})


def test_truncated_or_forged_messages_are_refused() -> None:
    with pytest.raises(ValueError, match="tree message"):
        r, _ = _core.Rr22Receiver.start(b"s" * 32, bytes(32))
        s = _core.Rr22Sender(b"s" * 32, bytes(16), 2)
        m1 = s.on_setup(_)
        m3 = s.on_matrix(r.on_base(m1))
        r.on_trees(m3[:-16])
    s = _core.Rr22Sender(b"s" * 32, bytes(16), 2)
    with pytest.raises(ValueError):
        s.on_setup(b"\x00" * 32)  # the identity point
    with pytest.raises(ValueError, match="before"):
        s.on_store(b"\x00" * 100)


def test_a_peer_sending_bad_values_is_a_protocol_violation() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["a", "b"])
        a = pa.array(["x", "y"])

        async def liar() -> None:
            ch = mesh["b"]["a"]
            hello = await ch.recv_json("rr22/hello")
            await ch.send_json("rr22/hello", {**hello, "seed": "00" * 16})
            await ch.recv_json("rr22/0/size")
            await ch.send_json("rr22/0/size", 3)
            s = _core.Rr22Sender(b"\x00" * 32, bytes(48), 2)
            await ch.send("rr22/0/base", s.on_setup(await ch.recv("rr22/0/setup")))
            await ch.send("rr22/0/trees", s.on_matrix(await ch.recv("rr22/0/matrix")))
            await ch.recv("rr22/0/store")
            await ch.send("rr22/0/values", b"\x01" * 7)  # not 3 values

        await asyncio.gather(run_rr22("a", mesh["a"], a), liar())

    with pytest.raises(ProtocolViolationError, match="PRF values"):
        asyncio.run(main())


def test_prf_values_are_distinct_per_session() -> None:
    # The same IDs give unrelated digests under different session seeds.
    arr = pa.array(["x", "y"], type=pa.large_string())
    from rainbridge.protocols.psi.items import as_items

    it = as_items(arr)
    d1 = _core.rr22_digests(b"1" * 32, it.data, it.offsets)
    d2 = _core.rr22_digests(b"2" * 32, it.data, it.offsets)
    assert len(d1) == 32 and d1 != d2
    assert np.frombuffer(d1, dtype="V16")[0] != np.frombuffer(d1, dtype="V16")[1]


def test_an_oversized_bucket_size_is_a_protocol_violation() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["a", "b"])

        async def liar() -> None:
            ch = mesh["b"]["a"]
            hello = await ch.recv_json("rr22/hello")
            await ch.send_json("rr22/hello", {**hello, "seed": "00" * 16})
            await ch.recv_json("rr22/0/size")
            await ch.send_json("rr22/0/size", 1 << 31)  # past the core's 32-bit indices

        await asyncio.gather(run_rr22("a", mesh["a"], pa.array(["x", "y"])), liar())

    with pytest.raises(ProtocolViolationError, match="bucket size"):
        asyncio.run(main())


def test_sender_steps_out_of_order_or_mis_sized_are_refused() -> None:
    s = _core.Rr22Sender(b"s" * 32, bytes(16), 2)
    with pytest.raises(ValueError, match="before"):
        s.prepare()
    with pytest.raises(ValueError, match="before"):
        s.on_store_shuffled(b"\x00" * 100, 8)
    r, m0 = _core.Rr22Receiver.start(b"s" * 32, bytes(32))
    m3 = s.on_matrix(r.on_base(s.on_setup(m0)))
    s.prepare()
    m4 = r.on_trees(m3)
    for width in (0, 17):
        with pytest.raises(ValueError, match="cut to"):
            s.on_store_shuffled(m4, width)
    values, order = s.on_store_shuffled(m4, 9)
    assert len(values) == 9 and np.frombuffer(order, "<u4").tolist() == [0]
