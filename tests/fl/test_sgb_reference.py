"""SecureBoost grows the trees a plaintext implementation grows on the same bins: every
split a best split of the plaintext gains (owner, feature, threshold), every leaf a node no
split improves, every leaf weight equal to the fixed-point precision. Generated data (a
binary feature, missing values); nodes big enough that the feature party sums its
histograms by pairs of features and small enough that it sums them one at a time."""

from __future__ import annotations

import asyncio
import math

import numpy as np
from hypothesis import example, given, settings
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


def _gains(
    bins: Binned, rows: np.ndarray, g: np.ndarray, h: np.ndarray, p: SgbParams
) -> dict[tuple[int, int], float]:
    """(feature, bin) -> gain of every allowed split of the node's rows, in plain loops."""
    gs, hs = g[rows].sum(), h[rows].sum()
    out = {}
    for f in range(bins.bins.shape[1]):
        for b in range(len(bins.edges[f])):
            left = bins.bins[rows, f] <= b
            gl, hl = g[rows][left].sum(), h[rows][left].sum()
            gr, hr = gs - gl, hs - hl
            if min(hl, hr) < p.min_child_weight or hl <= 0 or hr <= 0:
                continue
            lam = p.reg_lambda
            out[f, b] = gl**2 / (hl + lam) + gr**2 / (hr + lam) - gs**2 / (hs + lam)
    return out


Split = tuple[int, int, int]  # (party: 0 label, 1 feature party; feature; bin)


def _check_against_plaintext(
    parts: list[Binned], y: np.ndarray, p: SgbParams, trees: list[dict[int, Split]]
) -> list[dict[int, float]]:
    """Grows the plaintext trees beside the protocol's ``trees`` (node -> split): every
    split the protocol made must be a best split of the plaintext gains (a tie, frequent in
    the first tree where the gradients take two values, may go either way: the plaintext
    follows the protocol's pick), every leaf a node no split improves. The leaf weights."""
    n = len(y)
    m = min(max(y.mean(), 1e-6), 1 - 1e-6)
    raw = np.full(n, math.log(m / (1 - m)))
    out = []
    for tree in trees:
        pr = 1 / (1 + np.exp(-np.clip(raw, -30, 30)))
        g, h = pr - y, np.maximum(pr * (1 - pr), 1e-16)
        pos = np.zeros(n, dtype=np.int64)
        weights: dict[int, float] = {}
        level = [0]
        for depth in range(p.max_depth + 1):
            nxt = []
            for k in level:
                rows = np.flatnonzero(pos == k)
                hs = h[rows].sum()
                gains: dict[Split, float] = {}
                if depth < p.max_depth and len(rows) >= 2 and hs >= 2 * p.min_child_weight:
                    for i, part in enumerate(parts):
                        gains |= {(i, f, b): v for (f, b), v in _gains(part, rows, g, h, p).items()}
                best = max(gains.values(), default=-math.inf)
                tol = 1e-9 * max(1.0, abs(best))
                if k in tree:
                    assert best > max(p.gamma, 1e-12) - tol
                    assert gains[tree[k]] >= best - tol, (k, tree[k], gains[tree[k]], best)
                    who, f, b = tree[k]
                    left = parts[who].bins[rows, f] <= b
                    pos[rows[left]], pos[rows[~left]] = 2 * k + 1, 2 * k + 2
                    nxt += [2 * k + 1, 2 * k + 2]
                else:
                    assert best <= max(p.gamma, 1e-12) + tol, (k, best)
                    weights[k] = -g[rows].sum() / (hs + p.reg_lambda) * p.learning_rate
            level = nxt
        w = np.zeros(2 ** (p.max_depth + 1))
        for k, v in weights.items():
            w[k] = v
        raw += w[pos]
        out.append(weights)
    return out


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(150, 400),
    label_features=st.integers(0, 2),
    features=st.integers(2, 5),
)
@example(seed=151399, rows=306, label_features=0, features=4)  # ties in the first tree
def test_the_trees_are_the_plaintext_trees(
    seed: int, rows: int, label_features: int, features: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, label_features + features))
    z = x @ rng.normal(size=x.shape[1]) + np.sin(3 * x[:, -1])
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(float)
    # the feature party's first feature is binary (two bins sent of five), its second has
    # missing values (their bin sent too)
    x[:, label_features] = x[:, label_features] > 0.3
    x[rng.random(rows) < 0.15, label_features + 1] = np.nan
    # 5 bins: nodes of 100 rows or more are summed by pairs (4 · 5²), smaller ones alone
    p = SgbParams(trees=3, max_depth=3, max_bin=4, key_bits=1024, seed=1)
    xl, xf = x[:, :label_features], x[:, label_features:]
    res = _protocol(xl, xf, y, p)
    parts = [bin_features(xl, p.max_bin), bin_features(xf, p.max_bin)]
    assert len(res[0].trees) == len(res[1].trees) == p.trees
    trees: list[dict[int, Split]] = []
    for label_tree, feat_tree in zip(res[0].trees, res[1].trees, strict=True):
        assert set(feat_tree.splits) == {k for k, w in label_tree.owner.items() if w == "feat"}
        tree = {}
        for k, who in label_tree.owner.items():
            i, mine = (0, label_tree) if who == "label" else (1, feat_tree)
            f, thr = mine.splits[k]
            edges = parts[i].edges[f].tolist()
            assert thr in edges  # a threshold is one of the owner's own bin edges
            tree[k] = (i, f, edges.index(thr))
        trees.append(tree)
    weights = _check_against_plaintext(parts, y, p, trees)
    for label_tree, want in zip(res[0].trees, weights, strict=True):
        assert sorted(label_tree.weights) == sorted(want)
        for k, v in want.items():
            assert math.isclose(label_tree.weights[k], v, rel_tol=1e-9, abs_tol=1e-12)
