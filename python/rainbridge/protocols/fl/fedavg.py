"""Horizontal federated learning: FedAvg (McMahan et al. 2017) of a logistic regression or a
small MLP over clients that each hold different rows, with secure aggregation (:mod:`.secagg`)
so the server only ever sees the weighted sum of the clients' models.

A round: the server sends the global parameters to every remaining client; each runs
``local_epochs`` of mini-batch SGD on its rows and submits ``n_i · θ_i`` and ``n_i`` through
secure aggregation; the server sets θ = Σ n_i θ_i / Σ n_i over the clients that finished the
round (a client that drops is left out of this and later rounds).

Security model: that of :mod:`.secagg` (semi-honest); the server and every client learn the
global model after each round, as in any FedAvg; the server also learns the total row count
of the round's clients and who dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ChannelError, ConfigError, ProtocolViolationError
from rainbridge.protocols.fl.secagg import SecAggClient, SecAggServer

Array = npt.NDArray[np.float64]


@dataclass
class FedAvgParams:
    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.1
    l2: float = 0.0
    model: Literal["lr", "mlp"] = "lr"
    hidden: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.rounds, self.local_epochs, self.batch_size, self.hidden) < 1:
            raise ConfigError("rounds, local_epochs, batch_size and hidden must be positive")
        if self.learning_rate <= 0 or self.l2 < 0:
            raise ConfigError("learning_rate must be positive and l2 not negative")
        if self.model not in ("lr", "mlp"):
            raise ConfigError("model is 'lr' or 'mlp'")


def _sigma(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


class Model:
    """Parameters as one flat vector; the shapes follow from (features, params)."""

    def __init__(self, features: int, params: FedAvgParams) -> None:
        self.d = features
        self.p = params
        self.h = params.hidden

    @property
    def size(self) -> int:
        if self.p.model == "lr":
            return self.d + 1
        return self.d * self.h + self.h + self.h + 1

    def init(self) -> Array:
        if self.p.model == "lr":
            return np.zeros(self.size)
        rng = np.random.default_rng(self.p.seed)
        w1 = rng.normal(0, 1 / np.sqrt(self.d), (self.d, self.h))
        w2 = rng.normal(0, 1 / np.sqrt(self.h), self.h)
        return np.concatenate([w1.ravel(), np.zeros(self.h), w2, [0.0]])

    def _unpack(self, th: Array) -> tuple[Array, Array, Array, float]:
        d, h = self.d, self.h
        w1 = th[: d * h].reshape(d, h)
        b1 = th[d * h : d * h + h]
        w2 = th[d * h + h : d * h + 2 * h]
        return w1, b1, w2, float(th[-1])

    def score(self, th: Array, x: Array) -> Array:
        """The logit of each row."""
        if self.p.model == "lr":
            return np.asarray(x @ th[:-1] + th[-1])
        w1, b1, w2, b2 = self._unpack(th)
        return np.asarray(np.maximum(x @ w1 + b1, 0.0) @ w2 + b2)

    def grad(self, th: Array, x: Array, y: Array) -> Array:
        """Gradient of the mean log loss (plus L2 on the weights) over the rows."""
        n = len(y)
        if self.p.model == "lr":
            e = _sigma(x @ th[:-1] + th[-1]) - y
            g = np.concatenate([x.T @ e / n, [e.mean()]])
            g[:-1] += self.p.l2 * th[:-1]
            return g
        w1, b1, w2, b2 = self._unpack(th)
        hid = x @ w1 + b1
        act = np.maximum(hid, 0.0)
        e = _sigma(act @ w2 + b2) - y
        g_w2 = act.T @ e / n
        back = np.outer(e, w2) * (hid > 0)
        g_w1 = x.T @ back / n + self.p.l2 * w1
        g_b1 = back.mean(axis=0)
        return np.concatenate([g_w1.ravel(), g_b1, g_w2 + self.p.l2 * w2, [e.mean()]])

    def local_train(self, th: Array, x: Array, y: Array, rng: np.random.Generator) -> Array:
        th = th.copy()
        for _ in range(self.p.local_epochs):
            order = rng.permutation(len(y))
            for s in range(0, len(y), self.p.batch_size):
                idx = order[s : s + self.p.batch_size]
                th -= self.p.learning_rate * self.grad(th, x[idx], y[idx])
        return th


async def client(sa: SecAggClient, x: Array, y: Array, params: FedAvgParams) -> Array:
    """A client's role (call ``sa.setup()`` first); returns the last global model."""
    model = Model(x.shape[1], params)
    rng = np.random.default_rng()
    th = model.init()
    for r in range(params.rounds):
        buf = np.empty(model.size, dtype=np.float64)
        got = await sa.ch.recv_into(f"fedavg/global/{r}", buf.data.cast("B"))
        if got != buf.nbytes:
            raise ProtocolViolationError("the global model has the wrong size")
        th = model.local_train(buf, x, y, rng)
        await sa.submit(np.concatenate([len(y) * th, [float(len(y))]]))
    final = np.empty(model.size, dtype=np.float64)
    got = await sa.ch.recv_into("fedavg/final", final.data.cast("B"))
    if got != final.nbytes:
        raise ProtocolViolationError("the final model has the wrong size")
    return final


async def server(sa: SecAggServer, features: int, params: FedAvgParams) -> tuple[Array, list[int]]:
    """The aggregator's role (call ``sa.setup()`` first): (the model, clients per round)."""
    model = Model(features, params)
    th = model.init()
    per_round: list[int] = []
    for r in range(params.rounds):
        members = sorted(set(sa.keys) - sa.dropped_for_good)
        for n in members:
            try:
                await sa.chs[n].send(f"fedavg/global/{r}", th.tobytes())
            except ChannelError:  # a client gone: a dropout, left out from now on
                sa.dropped_for_good.add(n)
        total, survivors = await sa.aggregate(model.size + 1)
        if total[-1] <= 0:
            raise ProtocolViolationError("the clients reported no rows")
        th = total[:-1] / total[-1]
        per_round.append(len(survivors))
    for n in sorted(set(sa.keys) - sa.dropped_for_good):
        await sa.chs[n].send("fedavg/final", th.tobytes())
    return th, per_round
