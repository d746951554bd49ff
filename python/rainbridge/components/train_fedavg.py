"""The ``train_fedavg`` component: horizontal federated learning — every client party holds
rows of the same features and label; one party with ``role: aggregator`` runs FedAvg
(:mod:`rainbridge.protocols.fl.fedavg`) under secure aggregation, so it only ever sees sums
over the clients.

Before training, three secure-aggregation rounds give everyone the global row count and each
feature's mean and standard deviation (sums of per-client terms scaled to stay small), so
all clients standardise alike. The ``model`` output — the global model, its features and
standardisation — goes to every client and the aggregator (they all see it after each round
anyway); a client that drops out is left out and the training finishes without it, as long
as ``threshold`` clients remain.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import matrix
from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import DataError, ProtocolViolationError
from rainbridge.protocols.fl import fedavg
from rainbridge.protocols.fl.fedavg import FedAvgParams, Model
from rainbridge.protocols.fl.secagg import SecAggClient, SecAggServer

MODEL_FORMAT = "rainbridge/fedavg/v1"


class TrainFedAvgParams(BaseModel):
    """Parameters of the ``train_fedavg`` component."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="the 0/1 label column, at every client")
    features: list[str] = Field(min_length=1, description="the feature columns, at every client")
    model: Literal["lr", "mlp"] = Field(
        default="lr", description="logistic regression, or a one-hidden-layer perceptron"
    )
    hidden: int = Field(default=16, ge=1, le=1024, description="mlp: units of the hidden layer")
    rounds: int = Field(default=20, ge=1, le=10_000, description="aggregation rounds")
    local_epochs: int = Field(
        default=1, ge=1, le=1000, description="passes over its rows a client makes per round"
    )
    batch_size: int = Field(default=32, ge=1, le=1 << 16, description="rows per local step")
    learning_rate: float = Field(default=0.05, gt=0, le=100, description="local step size")
    l2: float = Field(default=0.0, ge=0, description="L2 penalty on the weights")
    threshold: int | None = Field(
        default=None, ge=2, description="clients needed to unmask a round (default: 2/3 of them)"
    )
    seed: int = Field(
        default=0, ge=0, description="initial weights and batch order (repeatable runs)"
    )


class TrainFedAvgComponent(Component):
    type_name = "train_fedavg"
    summary = "Horizontal FedAvg (LR or MLP) under secure aggregation"
    Params = TrainFedAvgParams
    outputs = ("model",)
    min_parties = 3

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainFedAvgParams)
        aggs = [p for p, r in spec.inputs.items() if r.role == "aggregator"]
        clients = [p for p, r in spec.inputs.items() if r.role is None]
        if len(aggs) != 1 or len(clients) < 2 or len(aggs) + len(clients) != len(spec.inputs):
            raise ComponentParamError(
                "train_fedavg needs one party with 'role: aggregator' and two or more clients "
                "with data",
                ("inputs",),
            )
        if params.threshold is not None and params.threshold > len(clients):
            raise ComponentParamError(
                f"threshold {params.threshold} is above the {len(clients)} clients",
                ("params", "threshold"),
            )
        out = spec.outputs.get("model")
        if out is None or sorted(out.receivers) != sorted(spec.inputs):
            raise ComponentParamError(
                "the 'model' output goes to every client and the aggregator (all see it)",
                ("outputs", "model"),
            )

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainFedAvgParams)
        return {c: {"aggregate"} for c in [*params.features, params.label]}

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        return list(self.column_uses(spec, party, id_column))

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, TrainFedAvgParams)
        clients = sorted(p for p, r in ctx.spec.inputs.items() if r.role is None)
        threshold = params.threshold or max(2, math.ceil(2 * len(clients) / 3))
        fa = FedAvgParams(
            rounds=params.rounds,
            local_epochs=params.local_epochs,
            batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            l2=params.l2,
            model=params.model,
            hidden=params.hidden,
            seed=params.seed,
        )
        d = len(params.features)
        if ctx.spec.inputs[ctx.party].role == "aggregator":
            sa = SecAggServer({c: ctx.channels[c] for c in clients}, threshold)
            await sa.setup()
            mean, scale = await _global_scaling_server(sa, d)
            theta, per_round = await fedavg.server(sa, d, fa)
            summary: dict[str, Any] = {"role": "aggregator", "clients_per_round": per_round}
        else:
            ref = ctx.inputs[ctx.party]
            wanted = [*params.features, params.label]
            missing = [c for c in wanted if c not in ref.columns]
            if missing:
                raise DataError(
                    f"train_fedavg input of {ctx.party!r} has no column "
                    f"{', '.join(map(repr, missing))}"
                )
            table = read_columns(ref, wanted)
            x = matrix(table, params.features)
            y = matrix(table, [params.label])[:, 0]
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"label column {params.label!r} must hold 0 and 1 only")
            agg = next(p for p, r in ctx.spec.inputs.items() if r.role == "aggregator")
            sc = SecAggClient(ctx.party, ctx.channels[agg])
            await sc.setup()
            mean, scale = await _global_scaling_client(sc, x)
            theta = await fedavg.client(sc, (x - mean) / scale, y, fa)
            summary = {"role": "client", "rows": len(y)}
        ctx.progress(1.0)
        model = {
            "format": MODEL_FORMAT,
            "job": ctx.job_id,
            "component": ctx.spec.id,
            "model": params.model,
            "hidden": params.hidden,
            "features": params.features,
            "label": params.label,
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "theta": theta.tolist(),
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        path = Path(ctx.out_dir) / f"{ctx.spec.id}.model.json"
        write_json_atomic(model, path)
        summary["outputs"] = {
            "model": {"path": str(path), "rows": int(Model(d, fa).size), "format": "json"}
        }
        return summary


async def _global_scaling_server(sa: SecAggServer, d: int) -> tuple[Any, Any]:
    """Three aggregation rounds: N, then the mean, then the variance of each feature."""
    (n_total,), _ = await sa.aggregate(1)
    await _broadcast(sa, {"rows": n_total})
    mean, _ = await sa.aggregate(d)
    await _broadcast(sa, {"mean": mean.tolist()})
    var, _ = await sa.aggregate(d)
    scale = np.sqrt(np.maximum(var, 0.0))
    scale[scale == 0] = 1.0
    await _broadcast(sa, {"scale": scale.tolist()})
    return mean, scale


async def _broadcast(sa: SecAggServer, msg: dict[str, Any]) -> None:
    for n in sorted(set(sa.keys) - sa.dropped_for_good):
        await sa.chs[n].send_json("fedavg/scaling", msg)


async def _global_scaling_client(sc: SecAggClient, x: Any) -> tuple[Any, Any]:
    n = float(len(x))
    await sc.submit(np.array([n]))
    total = _field(await sc.ch.recv_json("fedavg/scaling"), "rows")
    if not isinstance(total, int | float) or total <= 0:
        raise ProtocolViolationError("the aggregator announced no rows")
    # each client's share of the global mean and variance: small numbers, no overflow
    await sc.submit(x.sum(axis=0) / total)
    mean = np.asarray(_field(await sc.ch.recv_json("fedavg/scaling"), "mean"), dtype=float)
    await sc.submit(((x - mean) ** 2).sum(axis=0) / total)
    scale = np.asarray(_field(await sc.ch.recv_json("fedavg/scaling"), "scale"), dtype=float)
    if mean.shape != (x.shape[1],) or scale.shape != (x.shape[1],) or np.any(scale <= 0):
        raise ProtocolViolationError("the aggregator announced a malformed scaling")
    return mean, scale


def _field(msg: Any, key: str) -> Any:
    if not isinstance(msg, dict) or key not in msg:
        raise ProtocolViolationError(f"the aggregator's message lacks {key!r}")
    return msg[key]
