"""Evaluation metrics against scikit-learn and direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from rainbridge.protocols.fl.metrics import (
    auc,
    binary_report,
    confusion,
    ks,
    multiclass,
    regression,
    roc_curve,
    stability_index,
)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(10, 300), st.booleans())
def test_binary_metrics_match_scikit_learn(seed: int, n: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + y
    if ties:
        s = np.round(s, 1)
    assert auc(s, y) == pytest.approx(skm.roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(s, y)
    want_fpr, want_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, want_fpr) and np.allclose(tpr, want_tpr)
    assert ks(s, y) == pytest.approx(np.max(np.abs(want_tpr - want_fpr)))
    c = confusion(s, y, 0.5)
    tn, fp, fn, tp = skm.confusion_matrix(y, s >= 0.5, labels=[0, 1]).ravel()
    assert c == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def test_lift_and_gain() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    s = np.arange(10, 0, -1, dtype=float)
    lift = binary_report(s, y)["lift"]
    assert lift[0]["rate"] == 1.0 and lift[0]["lift"] == pytest.approx(5.0)
    assert lift[1]["gain"] == 1.0 and lift[-1]["gain"] == 1.0


def test_multiclass_and_regression_match_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(3), 200)
    y = rng.integers(0, 3, 200).astype(float)
    m = multiclass(proba, y)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, proba.argmax(1)))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, proba.argmax(1), average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]))
    pred, truth = rng.normal(size=100), rng.normal(size=100)
    r = regression(pred, truth)
    assert r["mse"] == pytest.approx(skm.mean_squared_error(truth, pred))
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert r["r2"] == pytest.approx(skm.r2_score(truth, pred))


def test_stability_index_is_zero_for_the_same_population_and_grows_with_drift() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=20_000)
    same = rng.normal(size=20_000)
    assert stability_index(base, same) < 0.01
    assert stability_index(base, rng.normal(0.5, 1, 20_000)) > 0.1


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_ks_like_auc_is_undefined_with_one_class(labels: list[int]) -> None:
    y = np.asarray(labels, dtype=float)
    s = np.linspace(0, 1, len(y))
    assert np.isnan(ks(s, y)) and np.isnan(auc(s, y))
