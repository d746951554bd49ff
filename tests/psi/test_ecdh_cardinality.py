"""Cardinality-only ECDH-PSI: every party learns the size and nobody the members, for two
and three parties; the leader's own set comes back in an order it cannot link to its rows."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi import EcdhPsiParams, PsiResult, run_role
from rainbridge.protocols.psi import ecdh as ecdh_mod
from rainbridge.protocols.psi.items import distinct_ids


def run(sets: dict[str, list[str]], params: EcdhPsiParams) -> dict[str, PsiResult]:
    async def main() -> dict[str, PsiResult]:
        mesh = LocalChannel.mesh("s", sorted(sets))
        out = await asyncio.gather(
            *(run_role(p, mesh[p], pa.array(v, pa.string()), params) for p, v in sets.items())
        )
        return dict(zip(sets, out, strict=True))

    return asyncio.run(main())


ids = st.text(alphabet="abcdef", min_size=0, max_size=5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ids, max_size=30),
    st.lists(ids, max_size=30),
    st.lists(ids, max_size=30),
    st.booleans(),
    st.integers(min_value=1, max_value=7),
)
def test_only_the_size_is_learnt(
    a: list[str], b: list[str], c: list[str], three: bool, batch: int
) -> None:
    sets = {"a": a, "b": b, "c": c} if three else {"a": a, "b": b}
    truth = set.intersection(*(set(v) for v in sets.values()))
    params = EcdhPsiParams(cardinality_only=True, batch_size=batch)
    for r in run(sets, params).values():
        assert r.size == len(truth)
        assert r.indices is None


@pytest.mark.parametrize("cardinality_only", [False, True])
def test_the_leader_cannot_link_its_own_values(
    cardinality_only: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = [f"id{i}" for i in range(1000)]
    other = [f"id{i}" for i in range(0, 1000, 2)]
    seen: list[np.ndarray] = []
    real = ecdh_mod.match

    def spy(mine: Any, theirs: Any) -> Any:
        ii, jj = real(mine, theirs)
        seen.append(np.sort(ii))
        return ii, jj

    monkeypatch.setattr(ecdh_mod, "match", spy)
    params = EcdhPsiParams(cardinality_only=cardinality_only, batch_size=128)
    res = run({"a": leader, "b": other}, params)
    assert res["a"].size == res["b"].size == 500
    uniq = distinct_ids(pa.array(leader, pa.large_string())).values.to_pylist()
    own = np.array([i for i, x in enumerate(uniq) if int(x[2:]) % 2 == 0])
    # without the shuffle, the positions the leader finds common are its own common rows
    assert np.array_equal(seen[0], own) is (not cardinality_only)
