"""SecureBoost against xgboost on the joined plaintext (breast-cancer data split vertically:
the first 10 features at the label party, the other 20 at a feature party), the other
objectives, three parties, early stopping, joint prediction and forged messages."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

from rainbridge.errors import ConfigError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.secureboost import (
    SgbParams,
    SgbResult,
    train_feature,
    train_label,
)
from rainbridge.protocols.fl.trees import (
    bin_features,
    combine_marks,
    leaf_marks,
    link,
    unpack_marks,
)

Split = list[tuple[str, np.ndarray]]


def _train(parts: Split, y: np.ndarray, p: SgbParams) -> list[SgbResult]:
    """parts[0] is the label party's features; the rest are feature parties."""
    names = [n for n, _ in parts]
    mesh = LocalChannel.mesh("sgb-test", names)
    label, lx = parts[0]

    async def main() -> list[SgbResult]:
        peers = {n: mesh[label][n] for n in names[1:]}
        jobs = [train_label(peers, lx, y, p, me=label)]
        jobs += [train_feature(mesh[n][label], x, me=n, max_bin=p.max_bin) for n, x in parts[1:]]
        return list(await asyncio.gather(*jobs))

    return asyncio.run(main())


def _predict(results: list[SgbResult], parts: Split, objective: str) -> np.ndarray:
    trees = results[0].trees
    n = len(parts[0][1])
    marks = [
        unpack_marks(leaf_marks(r.trees, x), n, trees)
        for r, (_, x) in zip(results, parts, strict=False)
    ]
    return link(combine_marks(trees, np.array(results[0].base), marks, n), objective)


def _cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return xtr, xte, ytr.astype(float), yte.astype(float)


def test_binary_matches_xgboost_on_breast_cancer() -> None:
    xtr, xte, ytr, yte = _cancer()
    hp = {"n_estimators": 10, "max_depth": 4, "learning_rate": 0.3, "max_bin": 32}
    p = SgbParams(trees=10, max_depth=4, learning_rate=0.3, max_bin=32, seed=1)
    res = _train([("bank", xtr[:, :10]), ("telco", xtr[:, 10:])], ytr, p)
    assert len(res[0].trees) == len(res[1].trees) == 10
    ours = roc_auc_score(
        yte, _predict(res, [("bank", xte[:, :10]), ("telco", xte[:, 10:])], "binary")
    )
    base = xgb.XGBClassifier(tree_method="hist", reg_lambda=1.0, min_child_weight=1.0, **hp)
    theirs = roc_auc_score(yte, base.fit(xtr, ytr).predict_proba(xte)[:, 1])
    assert ours >= theirs - 0.01, (ours, theirs)
    # the training scores the label party keeps agree with the joint prediction
    again = _predict(res, [("bank", xtr[:, :10]), ("telco", xtr[:, 10:])], "binary")
    assert np.allclose(again, res[0].train_scores)
    # the feature party's part holds thresholds for its own features only, no weights
    assert all(not t.weights for t in res[1].trees)
    assert {o for t in res[0].trees for o in t.owner.values()} <= {"bank", "telco"}
    assert any(t.splits for t in res[1].trees), "the telecom's features were never used"


def test_three_parties_and_a_label_party_without_features() -> None:
    xtr, xte, ytr, yte = _cancer()
    p = SgbParams(trees=5, max_depth=3, key_bits=1024, seed=2)
    parts = [("bank", xtr[:, :0]), ("telco", xtr[:, :15]), ("tax", xtr[:, 15:])]
    res = _train(parts, ytr, p)
    test_parts = [("bank", xte[:, :0]), ("telco", xte[:, :15]), ("tax", xte[:, 15:])]
    assert roc_auc_score(yte, _predict(res, test_parts, "binary")) > 0.95
    owners = {o for t in res[0].trees for o in t.owner.values()}
    assert owners <= {"telco", "tax"} and owners


def test_regression_and_multiclass_follow_xgboost() -> None:
    x, y = load_diabetes(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
    p = SgbParams(trees=20, max_depth=3, learning_rate=0.1, objective="regression", key_bits=1024)
    res = _train([("a", xtr[:, :4]), ("b", xtr[:, 4:])], ytr, p)
    ours = r2_score(yte, _predict(res, [("a", xte[:, :4]), ("b", xte[:, 4:])], "regression"))
    ref = xgb.XGBRegressor(n_estimators=20, max_depth=3, learning_rate=0.1, max_bin=32)
    theirs = r2_score(yte, ref.fit(xtr, ytr).predict(xte))
    assert ours > theirs - 0.05, (ours, theirs)

    x, y = load_wine(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    p = SgbParams(trees=5, max_depth=3, objective="multiclass", num_class=3, key_bits=1024)
    res = _train([("a", xtr[:, :6]), ("b", xtr[:, 6:])], ytr.astype(float), p)
    assert len(res[0].trees) == 15  # a tree per class per round
    proba = _predict(res, [("a", xte[:, :6]), ("b", xte[:, 6:])], "multiclass")
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == yte).mean() > 0.85


def test_early_stopping_keeps_the_best_round_at_every_party() -> None:
    xtr, _, ytr, _ = _cancer()
    p = SgbParams(
        trees=40, max_depth=3, learning_rate=1.0, validation_fraction=0.3,
        early_stopping_rounds=2, key_bits=1024, seed=3,
    )  # fmt: skip
    res = _train([("bank", xtr[:, :10]), ("telco", xtr[:, 10:])], ytr, p)
    label, feat = res
    assert label.rounds < 40 and len(label.trees) == len(feat.trees) == label.rounds
    assert int(np.argmin(label.history)) + 1 == label.rounds


def test_missing_values_go_right_and_binning_is_by_quantile() -> None:
    x = np.array([[1.0], [2.0], [np.nan], [3.0], [4.0]])
    b = bin_features(x, 4)
    assert b.n_bins == 5 and b.bins[2, 0] == 4  # the missing bin is the last
    assert list(b.bins[[0, 1, 3, 4], 0]) == sorted(b.bins[[0, 1, 3, 4], 0])
    xtr, _xte, ytr, _yte = _cancer()
    holes = xtr.copy()
    holes[::7, 12] = np.nan
    p = SgbParams(trees=5, max_depth=3, key_bits=1024, seed=4)
    res = _train([("bank", holes[:, :10]), ("telco", holes[:, 10:])], ytr, p)
    assert roc_auc_score(ytr, res[0].train_scores) > 0.97


def test_parameters_and_labels_are_checked() -> None:
    with pytest.raises(ConfigError):
        SgbParams(max_depth=0)
    with pytest.raises(ConfigError):
        SgbParams(objective="multiclass")
    with pytest.raises(ConfigError):
        SgbParams(early_stopping_rounds=3)
    x = np.zeros((4, 1))
    with pytest.raises(ConfigError, match="labels 0 and 1"):
        _train([("a", x), ("b", x)], np.array([0.0, 2.0, 1.0, 0.0]), SgbParams(key_bits=1024))


class _Forger:
    """Stands in for the label party: a valid key, then one forged step."""

    def __init__(self, forge: str) -> None:
        self.forge = forge

    async def run(self, ch: Any, n: int) -> None:
        from rainbridge._core import OuSecretKey

        pk = OuSecretKey.generate(1024).public_key()
        await ch.send("sgb/pk", pk.to_bytes())
        await ch.send_json("sgb/setup", {"rows": n, "max_depth": 3})
        await ch.recv_json("sgb/features")
        await ch.send_json("sgb/next", {"kind": "tree"})
        rows = np.arange(n, dtype="<i4")
        cts = pk.encrypt_packed(np.zeros((n, 2), dtype="<i8"), 2, 64)
        if self.forge == "ciphertext":
            cts = b"\xff" * 256 + cts[256:]  # not below n
        if self.forge == "rows":
            rows = rows + n
        await ch.send("sgb/rows", rows.tobytes())
        await ch.send("sgb/gh", cts)
        await ch.send_json("sgb/level", {"compute": [0]})
        await ch.recv("sgb/hist")
        await ch.send_json("sgb/splits", {"splits": [[0, 0, 200]]})  # a bin out of range


@pytest.mark.parametrize(
    ("forge", "match"),
    [("ciphertext", "invalid gradient"), ("rows", "rows out of range"), ("split", "split out")],
)
def test_a_feature_party_refuses_forged_steps(forge: str, match: str) -> None:
    mesh = LocalChannel.mesh("sgb-forge", ["label", "feat"])
    x = np.random.default_rng(0).normal(size=(30, 3))

    async def main() -> None:
        forger = asyncio.create_task(_Forger(forge).run(mesh["label"]["feat"], 30))
        try:
            await train_feature(mesh["feat"]["label"], x, me="feat")
        finally:
            forger.cancel()

    with pytest.raises(ProtocolViolationError, match=match):
        asyncio.run(main())


def test_leaf_marks_of_the_wrong_size_are_refused() -> None:
    xtr, _, ytr, _ = _cancer()
    res = _train(
        [("a", xtr[:40, :10]), ("b", xtr[:40, 10:])],
        ytr[:40],
        SgbParams(trees=2, max_depth=2, key_bits=1024),
    )
    with pytest.raises(ProtocolViolationError):
        unpack_marks(b"\x00" * 3, 40, res[0].trees)
    wrong = np.zeros((40, sum(len(t.leaves) for t in res[0].trees)), dtype=bool)
    with pytest.raises(ProtocolViolationError, match="one leaf"):
        combine_marks(res[0].trees, np.zeros(1), [wrong], 40)
