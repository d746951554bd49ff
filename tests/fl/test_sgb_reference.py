"""SecureBoost grows the trees a plaintext implementation grows on the same bins: every
split (owner, feature, threshold) the same and every leaf weight equal to the fixed-point
precision, on generated data, with nodes big enough that the feature party sums its
histograms by pairs of features and small enough that it sums them one at a time."""

from __future__ import annotations

import asyncio
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.secureboost import SgbParams, SgbResult, train_feature, train_label
from rainbridge.protocols.fl.trees import Binned, bin_features


def _protocol(xl: np.ndarray, xf: np.ndarray, y: np.ndarray, p: SgbParams) -> list[SgbResult]:
    mesh = LocalChannel.mesh("sgb-reference", ["label", "feat"])

    async def main() -> list[SgbResult]:
        return list(
            await asyncio.gather(
                train_label({"feat": mesh["label"]["feat"]}, xl, y, p, me="label"),
                train_feature(mesh["feat"]["label"], xf, me="feat", max_bin=p.max_bin),
            )
        )

    return asyncio.run(main())


def _best(
    bins: Binned, rows: np.ndarray, g: np.ndarray, h: np.ndarray, p: SgbParams
) -> tuple[float, int, int]:
    """The first (feature, bin) of the highest gain, bin by bin in plain loops."""
    gs, hs = g[rows].sum(), h[rows].sum()
    best = (-math.inf, -1, -1)
    for f in range(bins.bins.shape[1]):
        col = bins.bins[rows, f]
        gh = np.zeros((bins.n_bins, 2))
        np.add.at(gh, col, np.stack([g[rows], h[rows]], axis=1))
        for b in range(len(bins.edges[f])):
            gl, hl = gh[: b + 1, 0].sum(), gh[: b + 1, 1].sum()
            gr, hr = gs - gl, hs - hl
            if min(hl, hr) < p.min_child_weight or hl <= 0 or hr <= 0:
                continue
            lam = p.reg_lambda
            gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - gs**2 / (hs + lam)
            if gain > best[0]:
                best = (gain, f, b)
    return best


def _reference(
    parts: list[Binned], y: np.ndarray, p: SgbParams
) -> list[tuple[dict[int, tuple[int, int, int]], dict[int, float]]]:
    """Per tree: node -> (party, feature, bin) and leaf -> weight (binary objective)."""
    n = len(y)
    m = min(max(y.mean(), 1e-6), 1 - 1e-6)
    raw = np.full(n, math.log(m / (1 - m)))
    out = []
    for _ in range(p.trees):
        pr = 1 / (1 + np.exp(-np.clip(raw, -30, 30)))
        g, h = pr - y, np.maximum(pr * (1 - pr), 1e-16)
        pos = np.zeros(n, dtype=np.int64)
        splits: dict[int, tuple[int, int, int]] = {}
        weights: dict[int, float] = {}
        level = [0]
        for depth in range(p.max_depth + 1):
            nxt = []
            for k in level:
                rows = np.flatnonzero(pos == k)
                hs = h[rows].sum()
                leaf = True
                if depth < p.max_depth and len(rows) >= 2 and hs >= 2 * p.min_child_weight:
                    best, who = (-math.inf, -1, -1), -1
                    for i, part in enumerate(parts):
                        cand = _best(part, rows, g, h, p)
                        if cand[0] > best[0]:
                            best, who = cand, i
                    if best[0] > max(p.gamma, 1e-12):
                        _, f, b = best
                        splits[k] = (who, f, b)
                        left = parts[who].bins[rows, f] <= b
                        pos[rows[left]], pos[rows[~left]] = 2 * k + 1, 2 * k + 2
                        nxt += [2 * k + 1, 2 * k + 2]
                        leaf = False
                if leaf:
                    weights[k] = -g[rows].sum() / (hs + p.reg_lambda) * p.learning_rate
            level = nxt
        w = np.zeros(2 ** (p.max_depth + 1))
        for k, v in weights.items():
            w[k] = v
        raw += w[pos]
        out.append((splits, weights))
    return out


@settings(max_examples=4, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(150, 400),
    label_features=st.integers(0, 2),
    features=st.integers(2, 5),
)
def test_the_trees_are_the_plaintext_trees(
    seed: int, rows: int, label_features: int, features: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, label_features + features))
    z = x @ rng.normal(size=x.shape[1]) + np.sin(3 * x[:, -1])
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(float)
    # 5 bins: nodes of 100 rows or more are summed by pairs (4 · 5²), smaller ones alone
    p = SgbParams(trees=3, max_depth=3, max_bin=4, key_bits=1024, seed=1)
    xl, xf = x[:, :label_features], x[:, label_features:]
    res = _protocol(xl, xf, y, p)
    parts = [bin_features(xl, p.max_bin), bin_features(xf, p.max_bin)]
    ref = _reference(parts, y, p)
    assert len(res[0].trees) == len(res[1].trees) == len(ref)
    for label_tree, feat_tree, (splits, weights) in zip(
        res[0].trees, res[1].trees, ref, strict=True
    ):
        assert label_tree.owner == {k: ("label", "feat")[w] for k, (w, _, _) in splits.items()}
        for k, (who, f, b) in splits.items():
            mine = (label_tree if who == 0 else feat_tree).splits[k]
            assert mine == (f, float(parts[who].edges[f][b]))
        assert sorted(label_tree.weights) == sorted(weights)
        for k, v in weights.items():
            assert math.isclose(label_tree.weights[k], v, rel_tol=1e-9, abs_tol=1e-12)
