"""Model evaluation metrics, computed where the labels and the scores are (the label party):
binary (AUC, KS, ROC and KS curves, confusion matrix at a threshold, lift and gain by
decile), multi-class (accuracy, macro F1, log loss) and regression (MSE, MAE, R²), and the
population stability index between two samples of a score or feature."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def auc(scores: Array, y: Array) -> float:
    """Area under the ROC curve (ties averaged), by ranks."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0 + 1, counts)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: Array, y: Array) -> tuple[Array, Array, Array]:
    """(false positive rate, true positive rate, threshold) at every distinct score."""
    order = np.argsort(-scores, kind="mergesort")
    s, ys = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(ys == 1)[last]
    fp = np.cumsum(ys == 0)[last]
    p, n = max(1, int((y == 1).sum())), max(1, int((y == 0).sum()))
    return np.r_[0.0, fp / n], np.r_[0.0, tp / p], np.r_[np.inf, s[last]]


def ks(scores: Array, y: Array) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the classes' score CDFs (NaN,
    as AUC, when a class is absent: there is no second CDF)."""
    pos = int(np.sum(y == 1))
    if not len(y) or pos == 0 or pos == len(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(scores, y)
    return float(np.max(np.abs(tpr - fpr)))


def confusion(scores: Array, y: Array, threshold: float = 0.5) -> dict[str, int]:
    pred = scores >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def lift_table(scores: Array, y: Array, buckets: int = 10) -> list[dict[str, float]]:
    """Per bucket of rows by descending score: rows, positives, rate, lift, cumulative gain."""
    order = np.argsort(-scores, kind="mergesort")
    ys = y[order]
    base = float(ys.mean()) if len(ys) else float("nan")
    total_pos = max(1.0, float(ys.sum()))
    out, cum = [], 0.0
    for i, part in enumerate(np.array_split(ys, buckets)):
        pos = float(part.sum())
        cum += pos
        rate = pos / len(part) if len(part) else float("nan")
        out.append({
            "bucket": float(i + 1), "rows": float(len(part)), "positives": pos, "rate": rate,
            "lift": rate / base if base else float("nan"), "gain": cum / total_pos,
        })  # fmt: skip
    return out


def multiclass(proba: Array, y: Array) -> dict[str, float]:
    """Accuracy, macro F1 and log loss of class probabilities (rows × classes)."""
    pred = proba.argmax(axis=1)
    labels = y.astype(np.int64)
    f1s = []
    for k in range(proba.shape[1]):
        tp = np.sum((pred == k) & (labels == k))
        fp = np.sum((pred == k) & (labels != k))
        fn = np.sum((pred != k) & (labels == k))
        f1s.append(2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0)
    p = np.clip(proba[np.arange(len(labels)), labels], 1e-15, 1.0)
    return {
        "accuracy": float(np.mean(pred == labels)),
        "macro_f1": float(np.mean(f1s)),
        "log_loss": float(-np.mean(np.log(p))),
    }


def regression(pred: Array, y: Array) -> dict[str, float]:
    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "mse": float(np.mean(err**2)),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot else float("nan"),
    }


def stability_index(expected: Array, actual: Array, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (bins: the expected
    sample's deciles): Σ (a - e) · ln(a / e) over the bins' shares (0.0001 for empty)."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    inner = edges[1:-1]
    e = np.bincount(np.searchsorted(inner, expected, side="right"), minlength=len(edges) - 1)
    a = np.bincount(np.searchsorted(inner, actual, side="right"), minlength=len(edges) - 1)
    pe = np.maximum(e / max(1, len(expected)), 1e-4)
    pa = np.maximum(a / max(1, len(actual)), 1e-4)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def binary_report(scores: Array, y: Array, threshold: float = 0.5) -> dict[str, Any]:
    return {
        "auc": auc(scores, y),
        "ks": ks(scores, y),
        "confusion": confusion(scores, y, threshold),
        "lift": lift_table(scores, y),
    }
