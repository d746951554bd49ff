"""SecureBoost: vertical gradient-boosted trees (Cheng et al., "SecureBoost: A Lossless
Federated Learning Framework", IEEE Intelligent Systems 2021), as FATE's hetero-SecureBoost
and SecretFlow's SGB train them.

One *label party* holds the labels (and maybe features); one or more *feature parties* hold
other features of the same aligned rows. Per tree the label party computes every row's
gradient and hessian, packs the two into one Okamoto–Uchiyama plaintext
(:mod:`rainbridge._core`, a key it generates for this training) and sends the ciphertexts to
each feature party. Level by level, each feature party adds them up into encrypted
histograms over its own bins (per open node, per feature, per bin; only the smaller child of
each split, the other is the parent minus it; big nodes two features at a time,
:mod:`rainbridge.protocols.fl.histograms`), re-randomised, and returns them; the label
party decrypts, adds its own plaintext histograms and finds the best split (XGBoost's gain
with λ, γ and the minimum child weight). For a split on a feature party's feature it names
only (node, feature index, bin); the owner keeps the threshold, and answers which rows of
that node go left, one bit a row; with the next level's request the label party tells every
feature party which nodes split and which of their rows went left (one bit a row again),
from which each keeps every row's node. Leaf weights stay with the label party. The label
party encrypts with its secret key (by CRT, ciphertexts distributed as the public key's).

Objectives: ``binary`` (logistic), ``regression`` (squared error), ``multiclass`` (softmax;
one tree per class per round). Row subsampling per tree, learning rate (shrinkage), early
stopping on a held-out share of the label party's rows (``validation_fraction``,
``early_stopping_rounds``); missing values go to their own bin and always to the right.

Scale-out: given a sharding compute engine (``ray``), a party spreads its homomorphic work
over row blocks (:mod:`rainbridge.protocols.fl.sharding`): the label party's encryption and
decryption, a feature party's histograms (blocks' sums added up by chunks of cells and
re-randomised once). The messages and the trees are exactly those of one call.

Joint prediction (:mod:`rainbridge.protocols.fl.trees`): each party marks, per tree, the
leaves a row can reach given only its own splits; the label party ANDs the parties' marks,
which leaves exactly one leaf per tree, and adds the leaf weights. One message per party.

Security model: semi-honest parties. What each learns —
the label party: for each node and each of a feature party's features, the sums of
gradients and hessians per bin (so, the order statistics of the node's rows along that
feature, bin by bin, in gradient-weighted form) and hence which rows go left at every
split; the number of bins per feature and whether it has missing values (what its root
histogram shows anyway: only the bins that can hold rows are sent). It never sees a feature
value or a threshold.
A feature party: the instance space of every node (which rows reach it), which rows the
label party samples into each tree, the tree shapes and which of its own features and bins
are used; never a label, gradient or hessian (encrypted under a key only the label party
holds; every returned sum is re-randomised so the label party cannot match it to the
ciphertexts it sent). This is the leakage of SecureBoost as published and as FATE and
SecretFlow ship it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from rainbridge._core import OuNonceMaker, OuPublicKey, OuSecretKey
from rainbridge.errors import ConfigError, DataError, ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.fl.histograms import histograms, kept_cells
from rainbridge.protocols.fl.sharding import CT_BYTES, RowShards, TaskEngine, row_shards
from rainbridge.protocols.fl.trees import (
    Binned,
    TreePart,
    bin_features,
    link,
    sigmoid,
    softmax,
)

Objective = Literal["binary", "regression", "multiclass"]
#: bits of precision kept from each gradient when it is encoded as an integer
PRECISION_BITS = 53
MAX_DEPTH = 10
#: bytes of a feature party's histograms the label party holds at most (float64 g and h
#: per node, feature and bin over a level and its parents)
HIST_BUDGET = 4 << 30


@dataclass
class SgbParams:
    trees: int = 10
    max_depth: int = 5
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    max_bin: int = 32
    subsample: float = 1.0
    objective: Objective = "binary"
    num_class: int = 0
    validation_fraction: float = 0.0
    early_stopping_rounds: int = 0
    key_bits: int = 2048
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.trees < 1 or not 1 <= self.max_depth <= MAX_DEPTH:
            raise ConfigError(f"trees must be positive and max_depth in 1..{MAX_DEPTH}")
        if not 2 <= self.max_bin <= 255:
            raise ConfigError("max_bin must be in 2..255")
        if self.learning_rate <= 0 or self.reg_lambda < 0 or self.gamma < 0:
            raise ConfigError("learning_rate must be positive, reg_lambda and gamma not negative")
        if self.min_child_weight < 0 or not 0 < self.subsample <= 1:
            raise ConfigError("min_child_weight must not be negative, subsample in (0, 1]")
        if self.objective not in ("binary", "regression", "multiclass"):
            raise ConfigError("objective is 'binary', 'regression' or 'multiclass'")
        if self.objective == "multiclass" and self.num_class < 2:
            raise ConfigError("a multiclass objective needs num_class >= 2")
        if not 0 <= self.validation_fraction < 1 or self.early_stopping_rounds < 0:
            raise ConfigError("validation_fraction in [0, 1), early_stopping_rounds >= 0")
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ConfigError("early stopping needs a validation_fraction")
        if self.key_bits not in (1024, 2048):
            raise ConfigError("key_bits is 2048 (or 1024 for tests only)")

    @property
    def outputs(self) -> int:
        return self.num_class if self.objective == "multiclass" else 1


class PhaseClock:
    """Wall seconds one party spends per phase of training (encryption, waits for the peer,
    histograms...), so that where the time goes stays measurable; what no span covers is
    ``other``. ``cpu`` is the process's CPU seconds over the whole training (all its
    threads): on a shared machine a steadier measure of the work than wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    @contextmanager
    def span(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, t0)

    def add(self, phase: str, since: float) -> None:
        """Counts the seconds from ``since`` (a ``time.perf_counter()``) to now."""
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - since

    def totals(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        wall = time.perf_counter() - self._start
        out["other"] = round(max(0.0, wall - sum(self.seconds.values())), 3)
        out["cpu"] = round(time.process_time() - self._cpu, 3)
        return out


# -- the label party --------------------------------------------------------------------------


@dataclass
class SgbResult:
    """One party's part of the trained model."""

    trees: list[TreePart]
    edges: list[list[float]]  # own features' bin edges (for the record)
    base: list[float]  # label party: the initial margin per output
    rounds: int
    history: list[float] = field(default_factory=list)  # validation loss per round
    train_scores: npt.NDArray[np.float64] | None = None  # label party, training rows
    he_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase


def _tree_rows(n: int, params: SgbParams) -> tuple[int, int]:
    """(validation rows, rows each tree is grown on) of ``n``: the sizes the label party's
    row draws take, known before the draws (its first nonce reserve is sized by them)."""
    n_val = round(params.validation_fraction * n)
    per_tree = n - n_val
    if params.subsample < 1:
        per_tree = max(1, round(params.subsample * per_tree))
    return n_val, per_tree


def _gradients(
    objective: str, raw: npt.NDArray[np.float64], y: npt.NDArray[np.float64], cls: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if objective == "binary":
        p = sigmoid(raw[:, 0])
        return p - y, np.maximum(p * (1 - p), 1e-16)
    if objective == "regression":
        return raw[:, 0] - y, np.ones(len(y))
    p = softmax(raw)[:, cls]
    return p - (y == cls), np.maximum(2.0 * p * (1 - p), 1e-16)


def _loss(objective: str, raw: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    if len(y) == 0:
        return 0.0
    if objective == "binary":
        p = np.clip(sigmoid(raw[:, 0]), 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if objective == "regression":
        return float(np.mean((raw[:, 0] - y) ** 2))
    p = np.clip(softmax(raw), 1e-15, 1.0)
    return float(-np.mean(np.log(p[np.arange(len(y)), y.astype(np.int64)])))


def _encoding(vals: npt.NDArray[np.float64], rows: int) -> tuple[int, int]:
    """(frac_bits, slot_bits): integers of at most PRECISION_BITS bits, sums of ``rows`` of
    them within a slot."""
    top = float(np.abs(vals).max()) if vals.size else 1.0
    exp = math.frexp(top)[1] if top > 0 else 0  # top < 2^exp
    frac = max(0, min(62 - 1, PRECISION_BITS - exp))
    slot = PRECISION_BITS + max(1, math.ceil(math.log2(rows + 1))) + 2
    return frac, slot


def unpack_rows(data: bytes, n: int, what: str) -> npt.NDArray[np.bool_]:
    """One bit a row (``np.packbits``' order), exactly ``ceil(n / 8)`` bytes with the
    padding bits clear, or refused."""
    if len(data) != (n + 7) // 8:
        raise ProtocolViolationError(f"{what} is {len(data)} bytes; {(n + 7) // 8} expected")
    raw = np.frombuffer(data, dtype=np.uint8)
    # the last byte's bits past row n are padding: set, the message is not one we sent
    if n % 8 and int(raw[-1]) & ((1 << (8 - n % 8)) - 1):
        raise ProtocolViolationError(f"{what} has padding bits set past its {n} rows")
    return np.unpackbits(raw, count=n).astype(bool)


def move_rows(
    pos: npt.NDArray[np.int32], split: list[int], left: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int32]:
    """Every row's node after the nodes ``split`` split: the left or the right child."""
    moving = np.isin(pos, split)
    return np.where(moving, np.where(left, 2 * pos + 1, 2 * pos + 2), pos).astype(np.int32)


@dataclass
class _Peer:
    name: str
    ch: Channel
    n_features: int
    n_bins: int
    n_splits: npt.NDArray[np.int64]
    keep: npt.NDArray[np.bool_]  # features × bins: the cells its histograms hold


def _own_hist(
    binned: Binned, rows: npt.NDArray[np.int64], pos: npt.NDArray[np.int32],
    g: npt.NDArray[np.float64], h: npt.NDArray[np.float64], nodes: list[int],
) -> dict[int, npt.NDArray[np.float64]]:  # fmt: skip
    """node -> features × bins × 2 sums over the tree's rows, in plaintext."""
    f, b = binned.bins.shape[1], binned.n_bins
    out: dict[int, npt.NDArray[np.float64]] = {}
    if f == 0:
        return {k: np.zeros((0, b, 2)) for k in nodes}
    p, gr, hr = pos[rows], g[rows], h[rows]
    for k in nodes:
        sel = p == k
        flat = (binned.bins[rows[sel]].astype(np.int64) + np.arange(f) * b).ravel()
        gs, hs = np.repeat(gr[sel], f), np.repeat(hr[sel], f)
        hist = np.stack([np.bincount(flat, gs, f * b), np.bincount(flat, hs, f * b)], axis=1)
        out[k] = hist.reshape(f, b, 2).astype(np.float64)
    return out


def _best(
    hist: npt.NDArray[np.float64], n_splits: npt.NDArray[np.int64], gsum: float, hsum: float,
    p: SgbParams,
) -> tuple[float, int, int]:  # fmt: skip
    """(gain, feature, bin) of the best split in one party's histograms (gain -inf: none)."""
    if hist.shape[0] == 0 or hist.shape[1] < 2:
        return -math.inf, -1, -1
    gl = np.cumsum(hist[:, :-1, 0], axis=1)
    hl = np.cumsum(hist[:, :-1, 1], axis=1)
    gr, hr = gsum - gl, hsum - hl
    lam = p.reg_lambda
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - gsum**2 / (hsum + lam)
    ok = (hl >= p.min_child_weight) & (hr >= p.min_child_weight)
    ok &= np.arange(gl.shape[1])[None, :] < n_splits[:, None]
    ok &= (hl > 0) & (hr > 0)
    gain = np.where(ok & np.isfinite(gain), gain, -math.inf)
    i = int(np.argmax(gain))
    f, b = divmod(i, gain.shape[1])
    return float(gain[f, b]), f, b


async def train_label(
    peers: Mapping[str, Channel],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    params: SgbParams,
    *,
    me: str,
    progress: Callable[[float], None] | None = None,
    engine: TaskEngine | None = None,
    min_block: int | None = None,
) -> SgbResult:
    """The label party's side; ``peers`` are the feature parties' channels.

    ``engine``: where the encryption and decryption run (a ``ray`` engine: by blocks of up
    to ``max(min_block, rows / (4 · workers))`` rows, evened out, ``min_block`` 2^14 by
    default; none or ``local``: one call each).
    """
    n = len(y)
    clock = PhaseClock()
    shards = row_shards(engine, min_block)
    rng = np.random.default_rng(params.seed)
    obj = params.objective
    if obj == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise ConfigError("a binary objective needs labels 0 and 1")
    if obj == "multiclass" and not (np.isin(y, np.arange(params.num_class)).all()):
        raise ConfigError(f"multiclass labels must be 0..{params.num_class - 1}")
    with clock.span("binning"):
        binned = bin_features(x, params.max_bin)
    t0 = time.perf_counter()
    with clock.span("keygen"):
        sk = await asyncio.to_thread(OuSecretKey.generate, params.key_bits)
        pk = sk.public_key()
    he = time.perf_counter() - t0
    # the next encryption's randomness is made while this party waits for the feature
    # parties (a background thread at the lowest CPU priority), so that only G^m is left
    # to compute when the gradients are known; sharded, the workers encrypt whole; with no
    # feature party nothing is ever encrypted, so a reserve would only burn a core's idle
    # time and hold every row's nonce in memory
    maker = OuNonceMaker(sk) if shards is None and peers else None
    if maker is not None:
        # the first tree's rows, no more: a nonce made past them is discarded at the take
        maker.fill(_tree_rows(n, params)[1])
    try:
        setup = {"rows": n, "max_depth": params.max_depth, "max_bin": params.max_bin}
        pkb = pk.to_bytes()
        for ch in peers.values():
            await ch.send("sgb/pk", pkb)
            await ch.send_json("sgb/setup", setup)
        peer_list: list[_Peer] = []
        for name, ch in peers.items():
            with clock.span("wait"):
                info = await ch.recv_json("sgb/features")
            try:
                nf, nb = int(info["features"]), int(info["n_bins"])
                ns = np.asarray([int(v) for v in info["n_splits"]], dtype=np.int64)
                missing = info["missing"]
                if not isinstance(missing, list) or any(not isinstance(v, bool) for v in missing):
                    raise TypeError
            except (KeyError, TypeError, ValueError):
                raise ProtocolViolationError(f"{name!r} described its features wrongly") from None
            if nf != len(ns) or nf != len(missing) or not 2 <= nb <= 256:
                raise ProtocolViolationError(f"{name!r} described its features inconsistently")
            if (ns >= nb).any() or (ns < 0).any():
                raise ProtocolViolationError(f"{name!r} described its features inconsistently")
            # the label party holds every node's histogram of this party's features for a
            # level and its parents: sized from the party's own description, so bounded here
            # before anything is allocated (a forged count of features would exhaust memory)
            need = (2**params.max_depth) * nf * nb * 16
            if need > HIST_BUDGET:
                raise DataError(
                    f"{name!r} has {nf:,} features of {nb} bins: at depth {params.max_depth} their "
                    f"histograms need {need / 2**30:.1f} GiB at the label party, over its "
                    f"{HIST_BUDGET / 2**30:g} GiB per party; use fewer features, bins or depth"
                )
            peer_list.append(_Peer(name, ch, nf, nb, ns, kept_cells(ns.tolist(), missing, nb)))

        # validation rows (held out of every tree) and the initial margin
        perm = rng.permutation(n)
        n_val, _ = _tree_rows(n, params)
        val = np.sort(perm[:n_val])
        train = np.sort(perm[n_val:])
        yt = y[train]
        k_out = params.outputs
        if obj == "binary":
            m = float(np.clip(yt.mean() if len(yt) else 0.5, 1e-6, 1 - 1e-6))
            base = np.array([math.log(m / (1 - m))])
        elif obj == "regression":
            base = np.array([float(yt.mean()) if len(yt) else 0.0])
        else:
            base = np.zeros(k_out)
        raw = np.tile(base, (n, 1))
        own_splits = np.asarray(binned.n_splits, dtype=np.int64)
        trees: list[TreePart] = []
        steps: list[npt.NDArray[np.float64]] = []
        history: list[float] = []
        best_loss, best_rounds, rounds = math.inf, 0, 0
        for rnd in range(params.trees):
            for cls in range(k_out):
                with clock.span("gradients"):
                    g_all, h_all = _gradients(obj, raw, y, cls)
                    rows = train
                    if params.subsample < 1:
                        take = _tree_rows(n, params)[1]
                        rows = np.sort(rng.choice(train, size=take, replace=False))
                    rows = rows.astype(np.int64)
                    g, h = g_all[rows], h_all[rows]
                    frac, slot = _encoding(np.concatenate([g, h]), len(rows))
                    enc = np.empty((len(rows), 2), dtype="<i8")
                    enc[:, 0] = np.rint(np.ldexp(g, frac))
                    enc[:, 1] = np.rint(np.ldexp(h, frac))
                t0 = time.perf_counter()
                # alone (no feature party: a baseline on the label party's own features) nothing
                # leaves, so nothing is encrypted
                with clock.span("encrypt"):
                    if not peer_list:
                        cts = b""
                    elif shards is None:
                        # the key owner encrypts by CRT (about twice as fast); the ciphertexts are
                        # those of the public key, so the feature party cannot tell
                        ahead = maker.take(len(rows)) if maker is not None else []
                        cts = await asyncio.to_thread(sk.encrypt_packed_ahead, enc, 2, slot, ahead)
                    else:
                        cts = await shards.encrypt_packed(sk, enc, 2, slot)
                he += time.perf_counter() - t0
                rows32 = rows.astype("<i4").tobytes()
                with clock.span("send"):
                    for pr in peer_list:
                        await pr.ch.send_json("sgb/next", {"kind": "tree", "rows": len(rows)})
                        await pr.ch.send("sgb/rows", rows32)
                        await pr.ch.send("sgb/gh", cts)
                if maker is not None and peer_list:
                    maker.fill(len(rows))  # for the next tree, while the feature parties sum
                tree, pos, spent = await _grow(
                    peer_list, binned, own_splits, rows, g_all, h_all, sk, frac, slot, params,
                    me=me, n=n, cls=cls, clock=clock, shards=shards,
                )  # fmt: skip
                he += spent
                trees.append(tree)
                # every row now sits at a leaf: its margin moves by the leaf's weight
                w = np.zeros(2 ** (params.max_depth + 1))
                for leaf, v in tree.weights.items():
                    w[leaf] = v
                step = w[pos]
                steps.append(step)
                raw[:, cls] += step
            rounds = rnd + 1
            if n_val:
                loss = _loss(obj, raw[val], y[val])
                history.append(loss)
                if loss < best_loss - 1e-12:
                    best_loss, best_rounds = loss, rounds
                elif (
                    params.early_stopping_rounds
                    and rounds - best_rounds >= params.early_stopping_rounds
                ):
                    break
            if progress is not None:
                progress(rounds / params.trees)
        keep = rounds
        if params.early_stopping_rounds and best_rounds:
            keep = best_rounds
        trees = trees[: keep * k_out]
        for pr in peer_list:
            await pr.ch.send_json("sgb/next", {"kind": "end", "keep": keep * k_out})
        final = np.tile(base, (n, 1))
        for t, step in zip(trees, steps, strict=False):
            final[:, t.cls] += step
        return SgbResult(
            trees=trees,
            edges=[e.tolist() for e in binned.edges],
            base=base.tolist(),
            rounds=keep,
            history=history,
            train_scores=link(final, obj),
            he_seconds=he,
            phases=clock.totals(),
        )
    finally:
        # stop the filling however training ends: a reserve left behind by an error (its
        # frame kept by the traceback) or after the last tree would fill to its target for
        # nothing and hold the nonces in memory
        if maker is not None:
            maker.take(0)


async def _grow(
    peers: list[_Peer], binned: Binned, own_splits: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64], g_all: npt.NDArray[np.float64], h_all: npt.NDArray[np.float64],
    sk: OuSecretKey, frac: int, slot: int, p: SgbParams, *, me: str, n: int, cls: int,
    clock: PhaseClock, shards: RowShards | None = None,
) -> tuple[TreePart, npt.NDArray[np.int32], float]:  # fmt: skip
    """Grows one tree level by level; (the tree, every row's leaf, seconds in HE)."""
    pos = np.zeros(n, dtype=np.int32)
    g, h = g_all[rows], h_all[rows]
    gsum: dict[int, float] = {0: float(g.sum())}
    hsum: dict[int, float] = {0: float(h.sum())}
    count: dict[int, int] = {0: len(rows)}
    owner: dict[int, str] = {}
    splits: dict[int, tuple[int, float]] = {}
    weights: dict[int, float] = {}
    parent_hist: dict[str, dict[int, npt.NDArray[np.float64]]] = {pr.name: {} for pr in peers}
    level = [0]
    he = 0.0
    lam = p.reg_lambda
    # the previous level's splits: the nodes split and, one bit a row, which rows went left
    # (the feature parties keep every row's node from these, as the label party does)
    moved: list[int] = []
    moves = b""

    def leaf(k: int) -> None:
        weights[k] = -gsum[k] / (hsum[k] + lam) * p.learning_rate

    for depth in range(p.max_depth + 1):
        opened = [
            k for k in level
            if depth < p.max_depth and count[k] >= 2 and hsum[k] >= 2 * p.min_child_weight
        ]  # fmt: skip
        for k in level:
            if k not in opened:
                leaf(k)
        if not opened:
            break
        # the feature parties sum only the smaller of two open siblings
        compute, derive = [], []
        for k in opened:
            sib = k + 1 if k % 2 == 1 else k - 1
            if k == 0 or sib not in opened or (count[k], k) < (count[sib], sib):
                compute.append(k)
            else:
                derive.append(k)
        with clock.span("send"):
            for pr in peers:
                await pr.ch.send_json("sgb/level", {"compute": compute, "moved": moved})
                if moved:
                    await pr.ch.send("sgb/moves", moves)
        with clock.span("wait_histograms"):
            raw_hists = await asyncio.gather(*(pr.ch.recv("sgb/hist") for pr in peers))
        hists: dict[str, dict[int, npt.NDArray[np.float64]]] = {}
        for pr, data in zip(peers, raw_hists, strict=True):
            cells = len(compute) * int(pr.keep.sum())
            if len(data) != cells * CT_BYTES:
                raise ProtocolViolationError(f"{pr.name!r} sent histograms of the wrong size")
            t0 = time.perf_counter()
            try:
                with clock.span("decrypt"):
                    if shards is None:
                        dec = await asyncio.to_thread(sk.decrypt_packed, data, 2, slot, frac)
                    else:
                        dec = await shards.decrypt_packed(sk, data, 2, slot, frac)
            except ValueError as exc:  # a ciphertext out of range for the key
                raise ProtocolViolationError(
                    f"{pr.name!r} sent invalid histogram ciphertexts: {exc}"
                ) from None
            he += time.perf_counter() - t0
            arr = np.zeros((len(compute), pr.n_features, pr.n_bins, 2))
            got = np.frombuffer(dec, dtype="<f8").reshape(len(compute), int(pr.keep.sum()), 2)
            arr[:, pr.keep] = got
            mine = {k: arr[i] for i, k in enumerate(compute)}
            for k in derive:
                sib = k + 1 if k % 2 == 1 else k - 1
                mine[k] = parent_hist[pr.name][(k - 1) // 2] - mine[sib]
            hists[pr.name] = mine
        with clock.span("own_histograms"):
            own = _own_hist(binned, rows, pos, g_all, h_all, opened)
        # the best split of every open node, over every party's features
        chosen: dict[int, tuple[str, int, int]] = {}
        split_t0 = time.perf_counter()
        for k in opened:
            best = _best(own[k], own_splits, gsum[k], hsum[k], p)
            who = me
            for pr in peers:
                cand = _best(hists[pr.name][k], pr.n_splits, gsum[k], hsum[k], p)
                if cand[0] > best[0]:
                    best, who = cand, pr.name
            if best[0] > max(p.gamma, 1e-12):
                chosen[k] = (who, best[1], best[2])
                owner[k] = who
            else:
                leaf(k)
        clock.add("split", split_t0)
        with clock.span("send"):
            for pr in peers:
                mine_s = [[k, f, b] for k, (w, f, b) in chosen.items() if w == pr.name]
                await pr.ch.send_json("sgb/splits", {"splits": mine_s})
        with clock.span("wait_splits"):
            lefts = await asyncio.gather(*(pr.ch.recv("sgb/left") for pr in peers))
        update_t0 = time.perf_counter()
        go_left = np.zeros(n, dtype=bool)
        for pr, data in zip(peers, lefts, strict=True):
            theirs = np.isin(pos, [k for k, c in chosen.items() if c[0] == pr.name])
            go_left |= theirs & unpack_rows(data, n, f"{pr.name!r}'s split answer")
        for k, (who, f, b) in chosen.items():
            if who == me:
                at = pos == k
                go_left[at] = binned.bins[at, f] <= b
                splits[k] = (f, float(binned.edges[f][b]))
        moved = sorted(chosen)
        moves = np.packbits(go_left).tobytes()  # set only at rows of split nodes
        pos = move_rows(pos, moved, go_left)
        nxt: list[int] = []
        pt = pos[rows]
        for k in chosen:
            for c in (2 * k + 1, 2 * k + 2):
                sel = pt == c
                gsum[c], hsum[c], count[c] = (
                    float(g[sel].sum()),
                    float(h[sel].sum()),
                    int(sel.sum()),
                )
                nxt.append(c)
        for pr in peers:
            parent_hist[pr.name] = {k: hists[pr.name][k] for k in chosen}
        clock.add("update", update_t0)
        level = nxt
    tree = TreePart(owner, splits, sorted(weights), weights, cls)
    # the last level's moves are not sent: a feature party needs no row's leaf
    done = {"owner": {str(k): v for k, v in owner.items()}, "leaves": tree.leaves}
    for pr in peers:
        await pr.ch.send_json("sgb/level", {"done": done})
    return tree, pos, he


# -- a feature party --------------------------------------------------------------------------


async def train_feature(
    ch: Channel, x: npt.NDArray[np.float64], *, me: str, max_bin: int = 32,
    progress: Callable[[float], None] | None = None, engine: TaskEngine | None = None,
    min_block: int | None = None,
) -> SgbResult:  # fmt: skip
    """A feature party's side: histograms over its bins, its own splits' thresholds.

    ``engine``: where the histograms are summed (a ``ray`` engine: by row blocks, as
    :func:`train_label`; none or ``local``: one call per level).
    """
    n, nf = x.shape
    clock = PhaseClock()
    shards = row_shards(engine, min_block)
    with clock.span("binning"):
        binned = bin_features(x, max_bin)
        missing = [bool(v) for v in (binned.bins == binned.n_bins - 1).any(axis=0)]
    try:
        with clock.span("wait"):
            pkb = await ch.recv("sgb/pk")
        pk = OuPublicKey.from_bytes(pkb)
    except ValueError as exc:
        raise ProtocolViolationError(f"the label party's key is invalid: {exc}") from None
    setup = await ch.recv_json("sgb/setup")
    if not isinstance(setup, dict) or setup.get("rows") != n:
        raise ProtocolViolationError("the label party expects a different number of rows")
    max_depth = int(setup.get("max_depth", 0))
    if not 1 <= max_depth <= MAX_DEPTH:
        raise ProtocolViolationError("the label party asked for an invalid tree depth")
    await ch.send_json(
        "sgb/features",
        {
            "features": nf,
            "n_bins": binned.n_bins,
            "n_splits": binned.n_splits,
            "missing": missing,
        },
    )
    keep = kept_cells(binned.n_splits, missing, binned.n_bins)
    trees: list[TreePart] = []
    max_node = 2 ** (max_depth + 1) - 1
    while True:
        with clock.span("wait"):
            nxt = await ch.recv_json("sgb/next")
        kind = nxt.get("kind") if isinstance(nxt, dict) else None
        if kind == "end":
            keep = nxt.get("keep")
            if not isinstance(keep, int) or not 0 <= keep <= len(trees):
                raise ProtocolViolationError("the label party kept an invalid number of trees")
            trees = trees[:keep]
            break
        if kind != "tree":
            raise ProtocolViolationError(f"unexpected SecureBoost step {kind!r}")
        with clock.span("wait"):
            raw_rows = await ch.recv("sgb/rows")
        if len(raw_rows) % 4:
            raise ProtocolViolationError("the label party's rows are not 4-byte entries")
        rows = np.frombuffer(raw_rows, dtype="<i4")
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ProtocolViolationError("the label party named rows out of range")
        with clock.span("wait"):
            gh = await ch.recv("sgb/gh")
        try:
            with clock.span("load"):
                loaded = pk.load(gh)  # checks every ciphertext against the key
        except ValueError as exc:
            raise ProtocolViolationError(f"invalid gradient ciphertexts: {exc}") from None
        if len(loaded) != len(rows):
            raise ProtocolViolationError("gradient ciphertexts do not match the rows")
        # sharded, the tasks take the ciphertexts' bytes (rows × 256), not the core's object
        cts = loaded if shards is None else None
        ct_rows = np.frombuffer(gh, np.uint8).reshape(-1, CT_BYTES)
        del loaded
        bins_t = np.ascontiguousarray(binned.bins[rows])
        splits: dict[int, tuple[int, float]] = {}
        pos = np.zeros(n, dtype=np.int32)  # every row's node, kept from the label's moves
        while True:
            with clock.span("wait"):
                lvl = await ch.recv_json("sgb/level")
            if not isinstance(lvl, dict):
                raise ProtocolViolationError("a malformed SecureBoost level")
            if "done" in lvl:
                try:
                    tree = TreePart.from_json({**lvl["done"], "splits": {}})
                except (ConfigError, TypeError):
                    raise ProtocolViolationError("the label party sent a malformed tree") from None
                if any(not 0 <= k < max_node for k in tree.owner) or any(
                    tree.owner.get(k) != me for k in splits
                ):
                    raise ProtocolViolationError("the tree's owners contradict this party's splits")
                tree.splits = splits
                trees.append(tree)
                break
            try:
                compute = [int(k) for k in lvl.get("compute", [])]
                moved = [int(k) for k in lvl.get("moved", [])]
            except (TypeError, ValueError):
                raise ProtocolViolationError("a malformed histogram request") from None
            if any(not 0 <= k < max_node // 2 for k in moved) or len(set(moved)) != len(moved):
                raise ProtocolViolationError("the label party moved rows of an invalid node")
            if moved:
                with clock.span("wait"):
                    data = await ch.recv("sgb/moves")
                pos = move_rows(pos, moved, unpack_rows(data, n, "the label party's moves"))
            if any(not 0 <= k < max_node for k in compute) or len(set(compute)) != len(compute):
                raise ProtocolViolationError("a histogram asked for a node out of range or twice")
            hist_t0 = time.perf_counter()
            if cts is not None:
                hist = await asyncio.to_thread(
                    histograms,
                    pk,
                    cts,
                    bins_t,
                    np.ascontiguousarray(pos[rows]),
                    np.asarray(compute, dtype="<i4"),
                    binned.n_bins,
                )
            else:
                assert shards is not None
                hist = await shards.histogram(
                    pk,
                    ct_rows,
                    bins_t,
                    nf,
                    np.ascontiguousarray(pos[rows]),
                    np.asarray(compute, dtype="<i4"),
                    binned.n_bins,
                )
            # only the cells that can hold rows leave: no bin past a feature's last split,
            # no missing-value bin of a feature without missing values
            cells = np.frombuffer(hist, np.uint8).reshape(len(compute), nf, binned.n_bins, CT_BYTES)
            hist = cells[:, keep].tobytes()
            clock.add("histogram", hist_t0)
            with clock.span("send"):
                await ch.send("sgb/hist", hist)
            with clock.span("wait"):
                req = await ch.recv_json("sgb/splits")
            split_t0 = time.perf_counter()
            left = np.zeros(n, dtype=bool)
            for item in req.get("splits", []) if isinstance(req, dict) else []:
                try:
                    k, f, b = (int(v) for v in item)
                except (TypeError, ValueError):
                    raise ProtocolViolationError("a malformed split") from None
                if not (0 <= f < nf and 0 <= b < binned.n_splits[f] and 0 <= k < max_node):
                    raise ProtocolViolationError(f"a split out of range: {item}")
                at = pos == k
                left[at] = binned.bins[at, f] <= b
                splits[k] = (f, float(binned.edges[f][b]))
            clock.add("split", split_t0)
            with clock.span("send"):
                await ch.send("sgb/left", np.packbits(left).tobytes())
        if progress is not None:
            progress(min(0.99, len(trees) / max(1, len(trees) + 1)))
    return SgbResult(
        trees=trees,
        edges=[e.tolist() for e in binned.edges],
        base=[],
        rounds=len(trees),
        phases=clock.totals(),
    )
