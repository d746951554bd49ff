"""SecureBoost against the plaintext reference on awkward feature parties: constant and
all-missing columns, a single feature, few bins, and trees deep enough for nodes of one or
two rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sgb_reference import Split, _check_against_plaintext, _protocol

from rainbridge._core import OuSecretKey
from rainbridge.errors import ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.secureboost import SgbParams, train_feature, unpack_rows
from rainbridge.protocols.fl.trees import bin_features


def _run(x: np.ndarray, label_features: int, y: np.ndarray, p: SgbParams) -> None:
    xl, xf = x[:, :label_features], x[:, label_features:]
    res = _protocol(xl, xf, y, p)
    parts = [bin_features(xl, p.max_bin), bin_features(xf, p.max_bin)]
    trees: list[dict[int, Split]] = []
    for label_tree, feat_tree in zip(res[0].trees, res[1].trees, strict=True):
        tree = {}
        for k, who in label_tree.owner.items():
            i, mine = (0, label_tree) if who == "label" else (1, feat_tree)
            f, thr = mine.splits[k]
            tree[k] = (i, f, parts[i].edges[f].tolist().index(thr))
        trees.append(tree)
    weights = _check_against_plaintext(parts, y, p, trees)
    for label_tree, want in zip(res[0].trees, weights, strict=True):
        assert sorted(label_tree.weights) == sorted(want)
        for k, v in want.items():
            assert label_tree.weights[k] == pytest.approx(v, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shape", ["constant", "all_missing", "single", "tiny_nodes"])
def test_awkward_feature_parties_grow_the_plaintext_trees(shape: str) -> None:
    rng = np.random.default_rng(7)
    rows = 60 if shape == "tiny_nodes" else 120
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] + x[:, 2] + 0.3 * rng.normal(size=rows) > 0).astype(float)
    p = SgbParams(trees=2, max_depth=3, max_bin=4, key_bits=1024, seed=1, min_child_weight=0)
    if shape == "constant":
        x[:, 2] = 1.5
        x[rng.random(rows) < 0.3, 3] = np.nan
    elif shape == "all_missing":
        x[:, 2] = np.nan
    elif shape == "single":
        x = x[:, :3]
    else:
        x[:, 3] = np.round(x[:, 3])  # a handful of values: fewer bins than max_bin
        p = SgbParams(trees=2, max_depth=6, max_bin=8, key_bits=1024, seed=1, min_child_weight=0)
    _run(x, 2, y, p)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 70), st.integers(1, 255))
def test_bitmaps_with_padding_bits_set_are_refused(n: int, pad: int) -> None:
    spare = -n % 8
    data = bytearray(np.packbits(np.ones(n, dtype=bool)).tobytes())
    if spare == 0:
        return  # no padding bits to set
    data[-1] |= pad & ((1 << spare) - 1) or 1
    with pytest.raises(ProtocolViolationError, match="padding"):
        unpack_rows(bytes(data), n, "x")


def test_a_feature_party_refuses_a_row_list_of_partial_entries() -> None:
    mesh = LocalChannel.mesh("sgb-review-rows", ["label", "feat"])
    x = np.random.default_rng(0).normal(size=(30, 3))

    async def forger() -> None:
        ch = mesh["label"]["feat"]
        await ch.send("sgb/pk", OuSecretKey.generate(1024).public_key().to_bytes())
        await ch.send_json("sgb/setup", {"rows": 30, "max_depth": 3})
        await ch.recv_json("sgb/features")
        await ch.send_json("sgb/next", {"kind": "tree"})
        await ch.send("sgb/rows", np.arange(30, dtype="<i4").tobytes()[:-1])  # not 4-byte rows

    async def main() -> None:
        task = asyncio.create_task(forger())
        try:
            await train_feature(mesh["feat"]["label"], x, me="feat")
        finally:
            task.cancel()

    with pytest.raises(ProtocolViolationError, match="rows"):
        asyncio.run(main())
