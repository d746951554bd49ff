"""ECDH-PSI against a plain set intersection, for 2 and 3 (and 4) parties, over LocalChannel."""

from __future__ import annotations

import asyncio
import random

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.errors import ParameterMismatchError, PeerDisconnectedError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi import EcdhPsiParams, PsiResult, run_role


def run_psi(
    sets: dict[str, list[str]], params: EcdhPsiParams | dict[str, EcdhPsiParams]
) -> dict[str, PsiResult]:
    async def main() -> dict[str, PsiResult]:
        mesh = LocalChannel.mesh("test-session", sorted(sets))
        coros = [
            run_role(
                p,
                mesh[p],
                pa.array(ids, type=pa.string()),
                params[p] if isinstance(params, dict) else params,
            )
            for p, ids in sets.items()
        ]
        out = await asyncio.gather(*coros)
        return dict(zip(sets, out, strict=True))

    return asyncio.run(main())


def check(sets: dict[str, list[str]], results: dict[str, PsiResult], receivers: list[str]) -> None:
    truth = set.intersection(*(set(v) for v in sets.values()))
    for p, r in results.items():
        assert r.size == len(truth)
        if p in receivers:
            assert r.indices is not None
            want = [i for i, x in enumerate(sets[p]) if x in truth]
            assert r.indices.tolist() == want
        else:
            assert r.indices is None


ids = st.text(min_size=0, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ids, max_size=30),
    st.lists(ids, max_size=30),
    st.lists(ids, max_size=10),
    st.sampled_from(["curve25519", "ristretto255"]),
    st.integers(min_value=1, max_value=8),
)
def test_two_party_equals_set_intersection(
    a: list[str], b: list[str], common: list[str], curve: str, batch: int
) -> None:
    sets = {"alice": a + common, "bob": common + b + common[:2]}
    res = run_psi(sets, EcdhPsiParams(curve=curve, batch_size=batch))
    check(sets, res, ["alice", "bob"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ids, max_size=20),
    st.lists(ids, max_size=20),
    st.lists(ids, max_size=20),
    st.lists(ids, max_size=8),
    st.sampled_from([None, ("carol",), ("bob", "alice")]),
)
def test_three_party_equals_set_intersection(
    a: list[str], b: list[str], c: list[str], common: list[str], receivers: tuple[str, ...] | None
) -> None:
    sets = {"alice": a + common, "bob": common + b, "carol": c + common + common}
    res = run_psi(sets, EcdhPsiParams(receivers=receivers, batch_size=3))
    check(sets, res, list(receivers or sets))


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_and_empty_sets(n: int) -> None:
    sets = {"alice": [f"x{i}" for i in range(n)], "bob": ["x0"]}
    check(sets, run_psi(sets, EcdhPsiParams()), ["alice", "bob"])
    sets = {"alice": [], "bob": []}
    check(sets, run_psi(sets, EcdhPsiParams()), ["alice", "bob"])


def test_unicode_long_ids_and_duplicates() -> None:
    long_id = "身" * 85 + "x"  # 256 UTF-8 bytes
    assert len(long_id.encode()) == 256
    rnd = random.Random(7)
    pool = [f"客户-{i}-ü" for i in range(300)] + [long_id, "", " ", "a\x00b"]
    a = rnd.sample(pool, 200) * 2
    b = rnd.sample(pool, 150)
    c = rnd.sample(pool, 250)
    check(
        {"alice": a, "bob": b}, run_psi({"alice": a, "bob": b}, EcdhPsiParams()), ["alice", "bob"]
    )
    sets = {"alice": a, "bob": b, "carol": c, "dave": c[:100] + b}
    check(sets, run_psi(sets, EcdhPsiParams(batch_size=64)), list(sets))


def test_larger_sets_truncated() -> None:
    a = [f"id{i:07d}" for i in range(0, 20000)]
    b = [f"id{i:07d}" for i in range(10000, 40000)]
    res = run_psi({"alice": a, "bob": b}, EcdhPsiParams(batch_size=4096))
    assert res["alice"].size == 10000
    # 40 + log2(20000) + log2(30000) = 40 + 15 + 15 bits -> 9 bytes of each masked value
    assert res["alice"].stats["truncation_bytes"] == 9
    assert res["bob"].indices is not None and len(res["bob"].indices) == 10000


def test_parameter_mismatch_refused_on_both_sides() -> None:
    sets = {"alice": ["a", "b"], "bob": ["b"]}
    params = {
        "alice": EcdhPsiParams(curve="curve25519"),
        "bob": EcdhPsiParams(curve="ristretto255"),
    }
    with pytest.raises(ParameterMismatchError, match="curve"):
        run_psi(sets, params)


def test_unknown_receiver_refused() -> None:
    with pytest.raises(ParameterMismatchError, match="receivers"):
        run_psi({"alice": ["a"], "bob": ["a"]}, EcdhPsiParams(receivers=("mallory",)))


def test_peer_vanishing_mid_protocol_is_a_typed_error() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["alice", "bob"])

        async def quitter() -> None:
            await mesh["bob"]["alice"].close()

        ids = pa.array([f"x{i}" for i in range(100)])
        with pytest.raises(PeerDisconnectedError):
            await asyncio.gather(run_role("alice", mesh["alice"], ids, EcdhPsiParams()), quitter())

    asyncio.run(main())


def test_forged_batch_is_refused() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["alice", "bob"])
        ch = mesh["bob"]["alice"]

        async def forger() -> None:
            cfg = {
                "protocol": "ecdh-psi",
                "version": 1,
                "curve": "curve25519",
                "parties": ["alice", "bob"],
                "receivers": ["alice", "bob"],
                "leader": "alice",
                "truncate": True,
                "batch_size": 65536,
                "cardinality_only": False,
            }
            await ch.send_json("psi/hello", {"config": cfg, "n": 2})
            await ch.recv_json("psi/plan")
            await ch.send("psi/up", b"\x00" * 7)  # shorter than a header

        ids = pa.array(["a", "b", "c"])
        with pytest.raises(ProtocolViolationError):
            await asyncio.gather(run_role("alice", mesh["alice"], ids, EcdhPsiParams()), forger())

    asyncio.run(main())
