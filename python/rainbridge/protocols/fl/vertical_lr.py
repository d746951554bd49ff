"""Vertical logistic regression: the labels (and maybe some features) at one party, the
other features at one or more feature parties, rows aligned (after PSI). Each party keeps the
weights of its own features.

Per mini-batch each party computes its partial score ``z_p = X_p · w_p`` (the label party's
includes the intercept). The residual ``e = σ(z) - y``, ``z = z_L + Σ z_i``, is
secret-shared between the label party L and the first feature party F_1 (its *partner*),
over their two-party engine (:class:`Mpc`): with ``sigmoid="taylor"`` (σ(z) ≈ 1/2 + z/4, the
approximation of FATE's hetero-LR) each share is an affine function of the party's own
partial score and the shares it received — no MPC at all; with ``"piecewise"`` the engine
computes σ on shares (clamp(z + 1/2, 0, 1), SecureML's three-piece function: the signs of
z + 1/2 and z - 1/2 in one batched comparison, then one multiplication; L's and F_1's own
partial scores serve as their shares of their sum). Every other feature party F_j splits its
encoded partial score into two uniformly random ring shares, one to L and one to F_1, so L
and F_1 hold a sharing of the whole ``z``. F_1 then sends each F_j its share of ``e``
re-masked with a mask L and F_1 both draw from a seed L gave F_1 (L subtracts the same mask
from its own share), so L and every feature party hold an additive sharing of ``e``. The
gradient of each party's weights, ``X_pᵀ e / B``, is its local ``X_pᵀ e_p`` plus a product
of two private matrices, ``X_pᵀ`` and the other share (:meth:`Mpc.cross_product`), revealed
to that party only: L's and F_1's over their pair, F_j's over the pair (L, F_j); without a
dealer the residual is made narrow first (its shares' low 18 bits and their carry,
:class:`.lr_shares.NarrowResidual`), so that each product chooses by 18 bits of a row, not 64. Early
stopping: every party sends L the largest relative change of its weights in the epoch, L
answers each with the largest of all, and all stop together when it is under ``tol``. With
one feature party there are no score shares and no masks: the pair's engine is the whole
protocol. Every party's result is the same mini-batch SGD as on the joined plaintext, up to
fixed-point rounding; a training that diverges (a partial score past
:data:`MAX_PARTIAL_SCORE`) is refused, before a Taylor residual could wrap around the ring
and before a sum of scores could outgrow the piecewise sigmoid's comparisons, which run over
the narrowest carry tree that holds every party's scores (29 bits, not 64, for two or
three parties at 16 fractional bits: :func:`.lr_shares.score_bits`).

Security model: semi-honest; the label party colludes with no feature party; each pair's
engine setup (a dealer or OT extension). What each party learns: the gradients of its own
weights, batch by batch — d_p sums over B rows, never a row's residual or label (the
leakage FATE's hetero-LR also has); the batch order (drawn from a seed the label party
sends); every party's feature count; the largest weight change per epoch. L and F_1 each
see, of another feature party's partial scores, only a uniformly random share; F_j sees only
a uniformly random share of the residual. With ``scores_to_label=True`` the label party
also gets every feature party's partial scores of the training rows, to evaluate the model
(as FATE's evaluation does); the feature parties learn nothing more.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError, DataError, ParameterMismatchError, ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.fl.lr_shares import (
    MAX_ABS_FEATURE,
    MAX_PARTIAL_SCORE,
    pair_gradient,
    residual_share,
)
from rainbridge.protocols.mpc.engine import Mpc
from rainbridge.protocols.mpc.prg import SEED_BYTES, Prg, new_seed, random_ring
from rainbridge.protocols.mpc.ring import Ring, byte_view, encode


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
        if self.seed is not None and self.seed < 0:  # numpy's generators take none
            raise ConfigError("the batch-order seed must not be negative")


@dataclass
class LrResult:
    """This party's part of the model (weights of its own standardised features)."""

    weights: npt.NDArray[np.float64]
    intercept: float | None  # the label party's
    epochs_run: int
    history: list[float] = field(default_factory=list)  # largest relative weight change
    train_scores: npt.NDArray[np.float64] | None = None  # σ(z) at the label party


def standardise(x: Any, mean: Any, scale: Any) -> npt.NDArray[np.float64]:
    """A part's features as its weights expect them: standardised with the training rows'
    mean and scale, clipped at ±``MAX_ABS_FEATURE`` as in training (scoring a new row
    the way the model saw its training rows)."""
    z = (np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64)) / np.asarray(
        scale, dtype=np.float64
    )
    return np.clip(z, -MAX_ABS_FEATURE, MAX_ABS_FEATURE)


def _sigma(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@dataclass(frozen=True)
class LrRoles:
    """Who does what in one run; every party builds the same roles (but its own ``me``)."""

    me: str
    label: str
    #: the feature parties, in an order every party agrees on; the first is L's partner
    feature_parties: tuple[str, ...]
    #: every party's number of features (the label party's without its intercept)
    features: Mapping[str, int]

    def __post_init__(self) -> None:
        parties = (self.label, *self.feature_parties)
        if not self.feature_parties:
            raise ConfigError("vertical LR needs at least one feature party")
        if len(set(parties)) != len(parties):
            raise ConfigError("a party is named twice (the label party is not a feature party)")
        if self.me not in parties:
            raise ConfigError(f"{self.me!r} is not a party of this training")
        if set(self.features) != set(parties) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.features.values()
        ):
            raise ConfigError("give every party's feature count (0 or more), and no other's")

    @property
    def partner(self) -> str:
        """F_1: the feature party that shares the residual with the label party."""
        return self.feature_parties[0]

    @property
    def others(self) -> tuple[str, ...]:
        """F_2 … F_N: they share their partial scores between L and F_1."""
        return self.feature_parties[1:]

    def width(self, party: str) -> int:
        """Columns of ``party``'s weights (the label party's intercept is one)."""
        return self.features[party] + (1 if party == self.label else 0)


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
    """The two-party form of :func:`train_parties`: ``mpc`` joins the label party (engine
    party ``label_party``) and the one feature party; ``x`` are this party's (standardised)
    features, ``y`` the 0/1 labels at the label party (None elsewhere)."""
    if label_party not in (0, 1):
        raise ConfigError("the label party is engine party 0 or 1")
    me, other = f"p{mpc.party}", f"p{1 - mpc.party}"
    label = f"p{label_party}"
    roles = LrRoles(
        me=me,
        label=label,
        feature_parties=(other if me == label else me,),
        features={me: x.shape[1] if x.ndim == 2 else -1, other: their_features},
    )
    return await train_parties(
        roles, {other: mpc}, {}, x, y, params=params, scores_to_label=scores_to_label,
        progress=progress,
    )  # fmt: skip


async def train_parties(
    roles: LrRoles,
    sessions: Mapping[str, Mpc],
    channels: Mapping[str, Channel],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None,
    *,
    params: LrParams,
    scores_to_label: bool = False,
    progress: Callable[[float], None] | None = None,
) -> LrResult:
    """Run ``roles.me``'s role.

    ``sessions``: the two-party engines this party takes part in, by the other party — at
    the label party one with each feature party, at a feature party the one with the label
    party. ``channels``: to other feature parties — at the partner one to each of the others,
    at another feature party the one to the partner; none with one feature party. ``x``:
    this party's standardised features; ``y``: the 0/1 labels at the label party (None
    elsewhere).
    """
    run = _Run(roles, sessions, channels, x, y, params)
    n = run.n
    seed = await run.agree_seed()
    rng = np.random.default_rng(seed)
    w = np.zeros(run.feats.shape[1])
    reg = slice(None, -1) if run.is_label else slice(None)  # never the intercept
    history: list[float] = []
    epochs_run = 0
    for _epoch in range(params.epochs):
        before = w.copy()
        order = rng.permutation(n)
        for start in range(0, n, params.batch_size):
            idx = order[start : start + params.batch_size]
            w -= params.learning_rate * await run.gradient(idx, w)
            if params.l2:
                w[reg] -= params.learning_rate * params.l2 * w[reg]
            if params.l1:
                shrink = params.learning_rate * params.l1
                w[reg] = np.sign(w[reg]) * np.maximum(np.abs(w[reg]) - shrink, 0.0)
        epochs_run += 1
        if progress is not None:
            progress(epochs_run / params.epochs)
        # initial=0: a feature party with no features has no weights to move
        moved = float(np.max(np.abs(w - before), initial=0.0))
        change = moved / max(1.0, float(np.max(np.abs(w), initial=0.0)))
        worst = await run.agree_change(change)
        history.append(worst)
        if worst < params.tol:
            break
    scores = await run.train_scores(run.feats @ w) if scores_to_label else None
    return LrResult(
        weights=w[:-1] if run.is_label else w,
        intercept=float(w[-1]) if run.is_label else None,
        epochs_run=epochs_run,
        history=history,
        train_scores=scores,
    )


T = TypeVar("T")


async def _together(*aws: Awaitable[T]) -> list[T]:
    """All of ``aws`` at once; the first failure cancels the others, so that no exchange
    with another party outlives it, and is raised as it is."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _recv_ring(ch: Channel, tag: str, n: int) -> Ring:
    out = np.empty(n, dtype=np.uint64)
    got = await ch.recv_into(tag, byte_view(out))
    if got != out.nbytes:
        raise ProtocolViolationError(
            f"peer {ch.peer!r} sent {got} bytes for {tag!r}, expected {out.nbytes}"
        )
    return out


def split_score(encoded: Ring) -> tuple[Ring, Ring]:
    """Two uniformly random ring shares of ``encoded`` (a partial score): one for the
    partner, one for the label party; either alone says nothing of the score."""
    to_partner = random_ring(encoded.shape)
    return to_partner, encoded - to_partner


class _Run:
    """One party's state in one training: its data, engines and channels."""

    def __init__(
        self,
        roles: LrRoles,
        sessions: Mapping[str, Mpc],
        channels: Mapping[str, Channel],
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64] | None,
        params: LrParams,
    ) -> None:
        me = roles.me
        self.roles, self.sessions, self.channels, self.params = roles, sessions, channels, params
        self.is_label = me == roles.label
        if self.is_label:
            want_sessions, want_channels = set(roles.feature_parties), set()
        else:
            want_sessions = {roles.label}
            want_channels = set(roles.others) if me == roles.partner else {roles.partner}
            if not roles.others:
                want_channels = set()
        if set(sessions) != want_sessions:
            raise ConfigError(
                f"{me!r} needs an MPC session with {sorted(want_sessions)}, got {sorted(sessions)}"
            )
        if not want_channels <= set(channels):
            raise ConfigError(f"{me!r} needs channels to {sorted(want_channels)}")
        fracs = {m.frac for m in sessions.values()}
        if len(fracs) != 1:
            raise ConfigError("every MPC session of a training has the same precision")
        self.frac = fracs.pop()
        if x.ndim != 2 or x.shape[1] != roles.features[me]:
            raise ConfigError(
                f"{me!r} announced {roles.features[me]} features but gives {x.shape[1:]} columns"
            )
        self.n = n = x.shape[0]
        # checked before the first message: a 2 would train another model silently
        if self.is_label and (y is None or y.shape != (n,) or not np.isin(y, (0.0, 1.0)).all()):
            raise ConfigError("the label party gives one 0/1 label per row")
        self.y = y
        # the label party's intercept is a feature of ones
        feats = np.hstack([x, np.ones((n, 1))]) if self.is_label else x
        self.feats = np.clip(feats, -MAX_ABS_FEATURE, MAX_ABS_FEATURE)
        self.x_int = encode(self.feats, self.frac)  # (n, d) ring
        #: the masks L and F_1 put on the residual shares F_1 sends the other feature parties
        self.masks: Prg | None = None

    # -- agreeing --------------------------------------------------------------------------

    async def agree_seed(self) -> int:
        """The label party draws the batch order's seed (the order says nothing about the
        data) and, with several feature parties, the residual masks' seed for the partner."""
        roles, n = self.roles, self.n
        if self.is_label:
            seed = self.params.seed
            if seed is None:
                seed = int.from_bytes(np.random.default_rng().bytes(8), "little")
            # the roles too: a feature party that takes itself for another's place would
            # wait for messages nobody sends
            msg = {"seed": seed, "rows": n, "feature_parties": list(roles.feature_parties),
                   "features": dict(roles.features)}  # fmt: skip
            await _together(*(m.ch.send_json("lr/seed", msg) for m in self.sessions.values()))
            if roles.others:
                mask_seed = new_seed()
                await self.sessions[roles.partner].ch.send("lr/masks", mask_seed)
                self.masks = Prg(mask_seed)
            return seed
        ch = self.sessions[roles.label].ch
        got = await ch.recv_json("lr/seed")
        if not isinstance(got, dict) or got.get("rows") != n:
            raise ProtocolViolationError("the parties' row counts differ")
        theirs = (got.get("feature_parties"), got.get("features"))
        if theirs != (list(roles.feature_parties), dict(roles.features)):
            raise ParameterMismatchError(
                f"the label party has the feature parties and counts {str(theirs)[:300]}; "
                f"{roles.me!r} has {list(roles.feature_parties)}, {dict(roles.features)}"
            )
        seed = got.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ProtocolViolationError("malformed batch-order seed")
        if self.roles.me == roles.partner and roles.others:
            mask_seed = await ch.recv("lr/masks")
            if len(mask_seed) != SEED_BYTES:
                raise ProtocolViolationError("malformed residual-mask seed")
            self.masks = Prg(mask_seed)
        return seed

    async def agree_change(self, change: float) -> float:
        """The largest relative weight change of the epoch at any party (all stop together)."""
        if self.is_label:
            theirs = await _together(*(_recv_change(m.ch) for m in self.sessions.values()))
            worst = max([change, *theirs])
            await _together(
                *(m.ch.send_json("lr/change", {"change": worst}) for m in self.sessions.values())
            )
            return worst
        ch = self.sessions[self.roles.label].ch
        await ch.send_json("lr/change", {"change": change})
        return max(change, await _recv_change(ch))

    async def train_scores(self, z_me: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        """σ(z) of the training rows at the label party (every feature party sends it its
        partial scores); None elsewhere."""
        if not self.is_label:
            ch = self.sessions[self.roles.label].ch
            await ch.send("lr/scores", np.ascontiguousarray(z_me).tobytes())
            return None
        parts = await _together(*(_recv_scores(m.ch, self.n) for m in self.sessions.values()))
        return _sigma(z_me + np.sum(parts, axis=0))

    # -- one mini-batch --------------------------------------------------------------------

    async def gradient(
        self, idx: npt.NDArray[np.int64], w: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """This party's gradient for the batch ``idx`` (its own weights only)."""
        roles, b = self.roles, len(idx)
        z = self.feats[idx] @ w
        self._check_scores(z, idx)
        x_int = self.x_int[idx]
        me = roles.me
        if me not in (roles.label, roles.partner):
            return await self._other_gradient(z, x_int)
        # L and F_1 add the shares of the others' partial scores to their own
        ring = (
            self.channels if me == roles.partner else {f: self.sessions[f].ch for f in roles.others}
        )
        got = await _together(*(_recv_ring(ring[f], "lr/z", b) for f in roles.others))
        extra: Ring = np.zeros(b, dtype=np.uint64)
        for share in got:
            extra += share  # wraps modulo 2^64, as shares do
        pair = self.sessions[roles.partner if me == roles.label else roles.label]
        y = self.y[idx] if self.y is not None else None
        e = await residual_share(pair, z, extra, y, self.params.sigmoid, len(roles.features))
        masks = [self.masks.ring((b,)) for _ in roles.others] if self.masks else []
        dims = {pair.party: roles.width(me), 1 - pair.party: roles.width(_peer(roles, me))}
        both = pair_gradient(pair, x_int, e, (0, 1), dims, self._e_bound())
        if me == roles.partner:
            sends = zip(roles.others, masks, strict=True)
            await _together(*(self.channels[f].send("lr/e", byte_view(e + r)) for f, r in sends))
            grad = await both
        else:
            # each other feature party's gradient over its own pair, with L's share less the
            # mask F_1 added to the share it sent
            grads = await _together(
                both,
                *(
                    pair_gradient(self.sessions[f], x_int, e - r,
                                   (1 - self.sessions[f].party,),
                                   {1 - self.sessions[f].party: roles.width(f)},
                                   self._e_bound())
                    for f, r in zip(roles.others, masks, strict=True)
                ),
            )  # fmt: skip
            grad = grads[0]
        assert grad is not None
        return grad

    def _e_bound(self) -> tuple[float, int]:
        """A public bound on |σ(z) - y| and the number of parts it is encoded in: 1 for the
        clamp; with Taylor's σ, as :meth:`_check_scores` bounds it."""
        parties = len(self.roles.features)
        if self.params.sigmoid == "taylor":
            return parties * MAX_PARTIAL_SCORE / 4 + 1, parties
        return 1.0, parties

    def _check_scores(self, z: npt.NDArray[np.float64], idx: npt.NDArray[np.int64]) -> None:
        """Refuse a batch whose sigmoid could come out wrong. Every party's |z_p| must be at
        most MAX_PARTIAL_SCORE: the piecewise sigmoid's comparisons hold sums of such
        scores only (:func:`score_bits`). With the Taylor sigmoid |e| is then at most
        P·MAX_PARTIAL_SCORE/4 + 1 for P parties, and this party's sums Σ|x|·|e| must stay
        under 2^62 at 2·frac fractional bits."""
        taylor = self.params.sigmoid == "taylor"
        if not np.isfinite(z).all() or np.max(np.abs(z), initial=0.0) > MAX_PARTIAL_SCORE:
            raise DataError(
                f"the training diverges at {self.roles.me!r} (a partial score over "
                f"{MAX_PARTIAL_SCORE:g} or not a number): lower learning_rate"
                + (" or use sigmoid: piecewise" if taylor else " or standardise the features")
            )
        if not taylor:
            return
        e_max = self._e_bound()[0]
        x_sum = float(np.max(np.abs(self.feats[idx]).sum(axis=0), initial=0.0))
        if x_sum * e_max * 2.0 ** (2 * self.frac) >= 2.0**62:
            raise DataError(
                f"the Taylor training could diverge at {self.roles.me!r} past the fixed-point "
                "range (features too large for the batch): standardise them, lower "
                "batch_size or use sigmoid: piecewise"
            )

    async def _other_gradient(
        self, z: npt.NDArray[np.float64], x_int: Ring
    ) -> npt.NDArray[np.float64]:
        """F_j (j ≥ 2): share the partial score between L and F_1, get a share of the
        residual from F_1, and the gradient over the pair (L, F_j)."""
        roles = self.roles
        pair = self.sessions[roles.label]
        scaled = 0.25 * z if self.params.sigmoid == "taylor" else z
        to_partner, to_label = split_score(encode(scaled, self.frac))
        partner = self.channels[roles.partner]
        await _together(
            partner.send("lr/z", byte_view(to_partner)), pair.ch.send("lr/z", byte_view(to_label))
        )
        e = await _recv_ring(partner, "lr/e", len(z))
        grad = await pair_gradient(
            pair, x_int, e, (pair.party,), {pair.party: roles.width(roles.me)}, self._e_bound()
        )
        assert grad is not None
        return grad


def _peer(roles: LrRoles, me: str) -> str:
    """The other party of the (L, F_1) pair."""
    return roles.partner if me == roles.label else roles.label


async def _recv_change(ch: Channel) -> float:
    got = await ch.recv_json("lr/change")
    value = got.get("change") if isinstance(got, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolViolationError("malformed convergence message")
    return float(value)


async def _recv_scores(ch: Channel, n: int) -> npt.NDArray[np.float64]:
    out = np.empty(n, dtype=np.float64)
    got = await ch.recv_into("lr/scores", byte_view(out.view(np.uint64)))
    if got != out.nbytes:
        raise ProtocolViolationError(f"{ch.peer!r}'s partial scores have the wrong size")
    if not np.isfinite(out).all():  # a NaN sorts anywhere: the AUC and KS would be wrong
        raise ProtocolViolationError(f"{ch.peer!r}'s partial scores are not all finite")
    return out


__all__ = ["LrParams", "LrResult", "LrRoles", "split_score", "train", "train_parties"]
