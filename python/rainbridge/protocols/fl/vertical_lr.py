"""Vertical logistic regression: the label and some features at one party, the other features
at another, rows aligned (after PSI). Each party keeps the weights of its own features.

Per mini-batch each party computes its partial score ``z_p = X_p · w_p`` (the label party's
includes the intercept). The residual ``e = σ(z_L + z_F) - y`` is secret-shared between the
two: with ``sigmoid="taylor"`` (σ(z) ≈ 1/2 + z/4, the approximation of FATE's hetero-LR)
each party's share is an affine function of its own partial score — no MPC at all; with
``"piecewise"`` the engine computes σ on shares (clamp(z + 1/2, 0, 1), SecureML's
three-piece function: two secure comparisons per row). The gradient of each party's
weights, ``X_pᵀ e / B``, is its local ``X_pᵀ e_p`` plus a product of two private matrices,
``X_pᵀ`` and the other party's share (:meth:`Mpc.cross_product`), revealed to that party
only. Early stopping: both parties stop when no weight moved by more than ``tol`` (relative)
in an epoch; they exchange one number per epoch to agree.

Security model: semi-honest; the MPC engine's setup (a dealer or OT extension). What each
party learns: the gradients of its own weights, batch by batch — d_p sums over B rows, never
a row's residual or label (the leakage FATE's hetero-LR also has); the batch order (drawn
from a seed the label party sends). With ``scores_to_label=True`` the label party also gets
the feature party's partial scores of the training rows, to evaluate the model (as FATE's
evaluation does); the feature party then learns nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError, ProtocolViolationError
from rainbridge.protocols.mpc.engine import Mpc, Secret
from rainbridge.protocols.mpc.ring import encode

#: |standardised feature| above this is clipped before encoding (keeps products in range)
MAX_ABS_FEATURE = 1000.0


@dataclass
class LrParams:
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 0.5
    l2: float = 0.0
    l1: float = 0.0
    tol: float = 1e-4
    sigmoid: Literal["taylor", "piecewise"] = "piecewise"
    #: the batch order's seed (None: fresh randomness; a seed makes a run repeatable)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("epochs, batch_size and learning_rate must be positive")
        if self.l1 < 0 or self.l2 < 0 or self.tol < 0:
            raise ConfigError("l1, l2 and tol must not be negative")
        if self.sigmoid not in ("taylor", "piecewise"):
            raise ConfigError("sigmoid is 'taylor' or 'piecewise'")


@dataclass
class LrResult:
    """This party's part of the model (weights of its own standardised features)."""

    weights: npt.NDArray[np.float64]
    intercept: float | None  # the label party's
    epochs_run: int
    history: list[float] = field(default_factory=list)  # largest relative weight change
    train_scores: npt.NDArray[np.float64] | None = None  # σ(z) at the label party


def _sigma(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


async def train(
    mpc: Mpc,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None,
    *,
    label_party: int,
    their_features: int,
    params: LrParams,
    scores_to_label: bool = False,
    progress: Callable[[float], None] | None = None,
) -> LrResult:
    """Run this party's role; ``x`` are its (standardised) features, ``y`` the 0/1 labels at
    the label party (None elsewhere)."""
    me = mpc.party
    is_label = me == label_party
    n = x.shape[0]
    if is_label and (y is None or y.shape != (n,)):
        raise ConfigError("the label party gives one 0/1 label per row")
    frac = mpc.frac
    # the label party's intercept is a feature of ones
    feats = np.hstack([x, np.ones((n, 1))]) if is_label else x
    feats = np.clip(feats, -MAX_ABS_FEATURE, MAX_ABS_FEATURE)
    x_int = encode(feats, frac)  # (n, d) ring
    d_me = feats.shape[1]
    d_other = their_features + (1 if not is_label else 0)
    w = np.zeros(d_me)
    # the label party draws the batch order's seed; the order says nothing about the data
    if is_label:
        seed = params.seed
        if seed is None:
            seed = int.from_bytes(np.random.default_rng().bytes(8), "little")
        await mpc.ch.send_json("lr/seed", {"seed": seed, "rows": n})
    else:
        got = await mpc.ch.recv_json("lr/seed")
        if not isinstance(got, dict) or got.get("rows") != n:
            raise ProtocolViolationError("the parties' row counts differ")
        seed = int(got["seed"])
    rng = np.random.default_rng(seed)
    history: list[float] = []
    epochs_run = 0
    for _epoch in range(params.epochs):
        before = w.copy()
        order = rng.permutation(n)
        for start in range(0, n, params.batch_size):
            idx = order[start : start + params.batch_size]
            grad = await _gradient(mpc, feats[idx], x_int[idx], w, y, idx, label_party, d_other,
                                   params)  # fmt: skip
            w -= params.learning_rate * grad
            reg = slice(None, -1) if is_label else slice(None)  # never the intercept
            if params.l2:
                w[reg] -= params.learning_rate * params.l2 * w[reg]
            if params.l1:
                shrink = params.learning_rate * params.l1
                w[reg] = np.sign(w[reg]) * np.maximum(np.abs(w[reg]) - shrink, 0.0)
        epochs_run += 1
        if progress is not None:
            progress(epochs_run / params.epochs)
        change = float(np.max(np.abs(w - before)) / max(1.0, float(np.max(np.abs(w)))))
        await mpc.ch.send_json("lr/change", {"change": change})
        theirs = await mpc.ch.recv_json("lr/change")
        if not isinstance(theirs, dict) or not isinstance(theirs.get("change"), int | float):
            raise ProtocolViolationError("malformed convergence message")
        worst = max(change, float(theirs["change"]))
        history.append(worst)
        if worst < params.tol:
            break
    scores = None
    z_me = feats @ w
    if scores_to_label:
        if is_label:
            other = np.empty(n, dtype=np.float64)
            got_bytes = await mpc.ch.recv_into("lr/scores", other.data.cast("B"))
            if got_bytes != other.nbytes:
                raise ProtocolViolationError("the other party's scores have the wrong size")
            scores = _sigma(z_me + other)
        else:
            await mpc.ch.send("lr/scores", np.ascontiguousarray(z_me).tobytes())
    return LrResult(
        weights=w[:-1] if is_label else w,
        intercept=float(w[-1]) if is_label else None,
        epochs_run=epochs_run,
        history=history,
        train_scores=scores,
    )


async def _gradient(
    mpc: Mpc,
    feats: npt.NDArray[np.float64],
    x_int: Any,
    w: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None,
    idx: npt.NDArray[np.int64],
    label_party: int,
    d_other: int,
    params: LrParams,
) -> npt.NDArray[np.float64]:
    """This party's gradient for the batch (its own weights), the other's for the other."""
    me = mpc.party
    b = len(idx)
    z = feats @ w
    frac = mpc.frac
    if params.sigmoid == "taylor":
        e = 0.25 * z
        if me == label_party:
            assert y is not None
            e = e + 0.5 - y[idx]
        e_share = encode(e, frac)
    else:
        z0 = await mpc.input(z if me == 0 else None, 0, (b,))
        z1 = await mpc.input(z if me == 1 else None, 1, (b,))
        s = mpc.add_public(mpc.add(z0, z1), 0.5)
        zero = mpc.mul_public_int(s, 0)
        clamped = await mpc.minimum(await mpc.maximum(s, zero), mpc.add_public(zero, 1.0))
        e_share = clamped.share.copy()
        if me == label_party:
            assert y is not None
            e_share -= encode(y[idx], frac)
    grad = np.zeros(feats.shape[1])
    for p in (0, 1):
        d_p = feats.shape[1] if me == p else d_other
        if d_p == 0:
            continue
        cross = await mpc.cross_product(
            x_int.T if me == p else None,
            e_share[:, None] if me != p else None,
            left=p,
            shape=(d_p, b, 1),
        )
        share = cross.share[:, 0]
        if me == p:
            share = share + x_int.T @ e_share  # the local part, wrapping like the shares
        total = await mpc.reveal(Secret(share, 2 * frac), to=p)
        if total is not None:
            grad = np.asarray(total, dtype=np.float64) / b
    return grad


__all__ = ["LrParams", "LrResult", "train"]
