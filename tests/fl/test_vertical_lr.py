"""Vertical logistic regression against scikit-learn on the joined plaintext: breast-cancer
data split vertically (first 10 features at the label party, the other 20 at the other)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mpc"))
from mpc_helpers import run2

from rainbridge.errors import ConfigError
from rainbridge.protocols.fl.metrics import auc, ks
from rainbridge.protocols.fl.vertical_lr import LrParams, train
from rainbridge.protocols.mpc import Mpc


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    return (xtr - mu) / sd, (xte - mu) / sd, ytr.astype(float), yte.astype(float)


@pytest.mark.parametrize(
    ("sigmoid", "setup", "slack", "seed"),
    [
        ("piecewise", "dealer", 0.01, 1),  # the default: within the 0.01
        ("piecewise", "dealer", 0.01, 2),
        ("piecewise", "ot", 0.01, 1),  # the same without a dealer
        ("taylor", "dealer", 0.02, 1),  # FATE's approximation: no MPC, about 0.01 lower here
    ],
)
def test_vertical_lr_matches_scikit_learn_on_breast_cancer(
    sigmoid: str, setup: str, slack: float, seed: int
) -> None:
    xtr, xte, ytr, yte = _data()
    params = LrParams(
        epochs=30, batch_size=64, learning_rate=0.1, l2=0.01, sigmoid=sigmoid,  # type: ignore[arg-type]
        seed=seed,
    )  # fmt: skip

    async def prog(m: Mpc) -> object:
        # party 1 holds the label and the first 10 features, party 0 the other 20
        mine = xtr[:, :10] if m.party == 1 else xtr[:, 10:]
        return await train(
            m, mine, ytr if m.party == 1 else None, label_party=1,
            their_features=20 if m.party == 1 else 10, params=params, scores_to_label=True,
        )  # fmt: skip

    feat, lab, _ = run2(prog, setup=setup)
    assert lab.intercept is not None and feat.intercept is None
    z = xte[:, :10] @ lab.weights + xte[:, 10:] @ feat.weights + lab.intercept
    ours = roc_auc_score(yte, z)
    ref = LogisticRegression(C=1.0 / (0.01 * len(ytr)), max_iter=5000).fit(xtr, ytr)
    theirs = roc_auc_score(yte, ref.decision_function(xte))
    assert ours >= theirs - slack, (ours, theirs)
    # the label party's training scores (for evaluation) match the model's
    z_train = xtr[:, :10] @ lab.weights + xtr[:, 10:] @ feat.weights + lab.intercept
    assert np.allclose(lab.train_scores, 1 / (1 + np.exp(-z_train)), atol=1e-9)
    assert feat.train_scores is None


def test_auc_and_ks_match_a_direct_computation() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500).astype(float)
    s = rng.normal(size=500) + y
    s[:50] = s[50:100]  # ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    grid = np.sort(s)
    want = max(
        abs(
            np.searchsorted(pos, t, "right") / len(pos)
            - np.searchsorted(neg, t, "right") / len(neg)
        )
        for t in grid
    )
    assert ks(s, y) == pytest.approx(want)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError):
        LrParams(epochs=0)
    with pytest.raises(ConfigError):
        LrParams(sigmoid="exact")  # type: ignore[arg-type]


@pytest.mark.parametrize("setup", ["dealer", "ot"])
def test_the_piecewise_residual_is_the_exact_clamp(setup: str) -> None:
    from rainbridge.protocols.fl.lr_shares import MAX_PARTIAL_SCORE, residual_share
    from rainbridge.protocols.mpc.ring import decode, encode

    ulp = 2.0**-16
    m = MAX_PARTIAL_SCORE
    # party 0's score, party 1's, a third party's (as random shares at both): every sum's
    # clamp, up to three scores at the bound the narrow comparison must hold
    z0 = np.array([-1000.0, -14.0, -ulp, 0.0, ulp, 0.5, 1 - ulp, 1.0, 1 + ulp, 3.25, 1000.0,
                   m, -m, m, -m, m, -m, 0.25])  # fmt: skip
    z1 = np.zeros(len(z0))
    z1[11:] = [m, -m, -m, m, m, -m, -m + ulp]
    z2 = np.zeros(len(z0))
    z2[15:] = [m, -m, m]
    s = z0 + z1 + z2 + 0.5  # residual_share adds the 1/2 of σ(z) ≈ clamp(z + 1/2, 0, 1)
    y = np.array([0.0, 1.0] * 9)
    r = np.random.default_rng(3).integers(0, 2**64, len(z0), dtype=np.uint64)
    third = [r, encode(z2, 16) - r]

    async def prog(mpc: Mpc) -> object:
        mine = z0 if mpc.party == 0 else z1
        lab = y if mpc.party == 0 else None
        return await residual_share(mpc, mine, third[mpc.party], lab, "piecewise", 3)

    e0, e1, _ = run2(prog, setup=setup)
    got = decode(np.asarray(e0) + np.asarray(e1), 16)
    assert np.array_equal(got, np.clip(s, 0.0, 1.0) - y)


def test_the_comparisons_hold_every_sum_of_bounded_scores() -> None:
    from rainbridge.protocols.fl.lr_shares import MAX_PARTIAL_SCORE, score_bits

    for parties, frac in [(2, 16), (3, 16), (31, 16), (32, 16), (2, 0), (2, 20), (5, 24)]:
        bits = score_bits(parties, frac)
        worst = (parties * MAX_PARTIAL_SCORE + 1.5) * 2**frac + parties
        assert worst < 2 ** (bits - 1)  # every sum fits, signed
        assert worst >= 2 ** (bits - 2) - 1  # and one bit fewer would not hold them all
    assert score_bits(2, 16) == score_bits(3, 16) == 29
    assert score_bits(2, 60) == 64  # the whole ring at most


@pytest.mark.parametrize("setup", ["dealer", "ot"])
@pytest.mark.parametrize("bound", [(1.0, 2), (1.0, 5), (513.0, 2)])
def test_the_narrow_gradient_is_exact_for_any_split_of_the_residual(
    setup: str, bound: tuple[float, int]
) -> None:
    # the residual's low bits choose, a carry puts back what their sum overflowed: Xᵀe of
    # every party p, exactly, for residuals at ±E and shares anywhere in the ring (the
    # carry's edges: a share of 0 or of 2^64 - 1, sums just over and under 2^K)
    from rainbridge.protocols.fl.lr_shares import (
        feature_bits,
        pair_gradient,
        residual_bits,
        residual_offset,
    )

    frac = 16
    rng = np.random.default_rng(int(bound[0]) + bound[1])
    big = residual_offset(*bound[:1], frac, bound[1]) - bound[1]  # |e| ≤ e_bound·2^frac
    k = residual_bits(bound[0], frac, bound[1])
    b = 300
    e = rng.integers(-big, big, b, endpoint=True)
    e[:6] = [big, -big, 0, 1, -1, big - 1]
    s0 = rng.integers(0, 2**64, b, dtype=np.uint64)
    s0[:12] = [0, 2**64 - 1, 0, 2**64 - 1, 2**63, 1, 2**k - 1, 2**k, 2**k + 1, 5, 2**k - 5, 7]
    s1 = e.astype(np.int64).view(np.uint64) - s0
    lim = 2 ** (feature_bits(frac) - 1)
    x = {0: rng.integers(-lim, lim, (b, 3)), 1: rng.integers(-lim, lim, (b, 2))}
    x[0][0, 0], x[1][1, 1] = -lim, lim - 1

    async def prog(mpc: Mpc) -> object:
        me = mpc.party
        share = s0 if me == 0 else s1
        xi = x[me].astype(np.int64).view(np.uint64)
        return await pair_gradient(mpc, xi, share, (0, 1), {0: 3, 1: 2}, bound, narrow=True)

    g0, g1, _ = run2(prog, setup=setup)
    for p, g in ((0, g0), (1, g1)):
        exact = x[p].T.astype(object) @ e.astype(object)  # Python integers: no wrap
        assert all(abs(v) < 2**63 for v in exact)
        want = np.array(exact, dtype=np.int64).astype(np.float64) / 2.0 ** (2 * frac) / b
        assert np.array_equal(np.asarray(g), want), p
