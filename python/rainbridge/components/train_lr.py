"""The ``train_lr`` component: vertical logistic regression (:mod:`rainbridge.protocols.fl.
vertical_lr`) over two parties' aligned tables — the labels and some features at one party,
other features at the other; optionally a third party with ``role: dealer`` (without one the
two use OT extension).

Each party's ``model`` output is its own part only: its features, their standardisation
(mean and scale from its own training rows) and their weights, plus the intercept at the
label party — a JSON file no other party receives. The label party may also receive a
``report`` (AUC, KS, epochs) computed on the training rows; that needs the feature party's
partial scores (``evaluate: true``, the default), as FATE's evaluation does.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import (
    LabelledParams,
    check_roles,
    matrix,
    open_session,
    serve_dealer,
)
from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import DataError
from rainbridge.protocols.fl.metrics import auc, ks
from rainbridge.protocols.fl.vertical_lr import LrParams, train

MODEL_FORMAT = "rainbridge/vertical-lr/v1"


class TrainLrParams(LabelledParams):
    """Parameters of the ``train_lr`` component."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=1024, ge=8, le=1 << 16)
    learning_rate: float = Field(default=0.1, gt=0, le=100)
    l2: float = Field(default=0.0, ge=0)
    l1: float = Field(default=0.0, ge=0)
    tol: float = Field(default=1e-4, ge=0)
    sigmoid: Literal["piecewise", "taylor"] = "piecewise"
    seed: int | None = Field(default=None, description="batch order (repeatable runs)")
    evaluate: bool = Field(default=True, description="AUC/KS on the training rows (report)")


class TrainLrComponent(Component):
    type_name = "train_lr"
    summary = "Vertical logistic regression: labels at one party, features split (MPC)"
    Params = TrainLrParams
    outputs = ("model", "report")

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainLrParams)
        data = check_roles(spec, "train_lr")
        params.check_parties(data)
        model = spec.outputs.get("model")
        if model is None or sorted(model.receivers) != sorted(data):
            raise ComponentParamError(
                "train_lr's 'model' output goes to both data parties (each keeps its own part)",
                ("outputs", "model"),
            )
        report = spec.outputs.get("report")
        if report is not None and (report.receivers != [params.label.party] or not params.evaluate):
            raise ComponentParamError(
                "the 'report' goes to the label party alone, with evaluate: true",
                ("outputs", "report"),
            )

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainLrParams)
        return params.uses(party)

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainLrParams)
        return params.used(party)

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, TrainLrParams)
        served = await serve_dealer(ctx)
        if served is not None:
            return served
        is_label = ctx.party == params.label.party
        mine = params.features.get(ctx.party, [])
        table = self._read(ctx, params, mine, is_label)
        session = await open_session(
            ctx, table, params.id_of(ctx.party), {"features": len(mine)}, "lr"
        )
        mpc = session.mpc
        their = session.their_hello.get("features")
        if not isinstance(their, int) or their < 0:
            raise DataError("the other party announced no feature count")
        x = matrix(table, mine)
        mean = x.mean(axis=0) if len(x) else np.zeros(len(mine))
        scale = x.std(axis=0) if len(x) else np.ones(len(mine))
        scale[scale == 0] = 1.0
        y = None
        if is_label:
            y = matrix(table, [params.label.column])[:, 0]
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"label column {params.label.column!r} must hold 0 and 1 only")
        label_idx = mpc.party if is_label else 1 - mpc.party
        res = await train(
            mpc,
            (x - mean) / scale,
            y,
            label_party=label_idx,
            their_features=their,
            params=LrParams(
                epochs=params.epochs,
                batch_size=params.batch_size,
                learning_rate=params.learning_rate,
                l2=params.l2,
                l1=params.l1,
                tol=params.tol,
                sigmoid=params.sigmoid,
                seed=params.seed,
            ),
            scores_to_label=params.evaluate,
            progress=lambda f: ctx.progress(min(f, 0.99)),
        )
        await mpc.close()
        ctx.progress(1.0)
        model = {
            "format": MODEL_FORMAT,
            "job": ctx.job_id,
            "component": ctx.spec.id,
            "party": ctx.party,
            "label_party": params.label.party,
            "parties": sorted(params.features) or [],
            "features": mine,
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "weights": res.weights.tolist(),
            "intercept": res.intercept,
            "sigmoid": params.sigmoid,
            "rows": table.num_rows,
            "epochs_run": res.epochs_run,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        path = Path(ctx.out_dir) / f"{ctx.spec.id}.model.json"
        write_json_atomic(model, path)
        outputs: dict[str, Any] = {
            "model": {"path": str(path), "rows": len(mine), "columns": mine, "format": "json"}
        }
        summary: dict[str, Any] = {"rows": table.num_rows, "epochs_run": res.epochs_run}
        if is_label and res.train_scores is not None:
            assert y is not None
            metrics = {
                "auc": auc(res.train_scores, y),
                "ks": ks(res.train_scores, y),
                "rows": float(len(y)),
                "positives": float(y.sum()),
                "epochs_run": float(res.epochs_run),
            }
            summary["result"] = metrics
            if "report" in ctx.spec.outputs:
                outputs["report"] = ctx.write_metrics("report", metrics)
        summary["outputs"] = outputs
        return summary

    @staticmethod
    def _read(
        ctx: ComponentContext, params: TrainLrParams, mine: list[str], is_label: bool
    ) -> pa.Table:
        ref = ctx.inputs[ctx.party]
        wanted = [params.id_of(ctx.party), *mine]
        if is_label:
            wanted.append(params.label.column)
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(
                f"train_lr input of {ctx.party!r} has no column {', '.join(map(repr, missing))}"
            )
        return read_columns(ref, list(dict.fromkeys(wanted)))
