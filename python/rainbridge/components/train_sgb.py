"""The ``train_sgb`` component: SecureBoost (:mod:`rainbridge.protocols.fl.secureboost`) over
aligned tables — the label (and maybe features) at one party, features at one or more
others; no dealer (the label party's Okamoto–Uchiyama key does the work).

Each party's ``model`` output is its own part only: every tree's shape and owners, the
thresholds of its own splits, and at the label party the leaf weights and the initial margin
— a JSON file no other party receives. The label party may also receive a ``report``
(training AUC/KS for a binary objective, the loss per round, rounds kept, time in HE).
Feature columns may hold missing values (they go to their own bin, always to the right).

On a ``ray`` compute engine each party spreads its homomorphic work over row blocks (the
label party's encryption and decryption, a feature party's histograms); the model is the
one the ``local`` engine trains.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import LabelledParams, check_aligned_star
from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import ConfigError, DataError
from rainbridge.protocols.fl.metrics import auc, ks
from rainbridge.protocols.fl.secureboost import SgbParams, train_feature, train_label

MODEL_FORMAT = "rainbridge/secureboost/v1"


class TrainSgbParams(LabelledParams):
    """Parameters of the ``train_sgb`` component (XGBoost's names where they exist)."""

    model_config = ConfigDict(extra="forbid")

    trees: int = Field(default=10, ge=1, le=1000, description="boosting rounds")
    max_depth: int = Field(default=5, ge=1, le=10, description="levels of splits per tree")
    learning_rate: float = Field(default=0.3, gt=0, le=1, description="shrinkage of each tree")
    reg_lambda: float = Field(default=1.0, ge=0, description="L2 penalty on leaf weights")
    gamma: float = Field(default=0.0, ge=0, description="minimum gain of a split")
    min_child_weight: float = Field(
        default=1.0, ge=0, description="minimum sum of hessians in a child of a split"
    )
    max_bin: int = Field(default=32, ge=2, le=255, description="bins per feature for splits")
    subsample: float = Field(
        default=1.0, gt=0, le=1, description="share of the rows each tree is grown on"
    )
    objective: Literal["binary", "regression", "multiclass"] = Field(
        default="binary", description="what the label is: 0/1, a number, or a class"
    )
    num_class: int = Field(default=0, ge=0, le=100, description="multiclass: the number of classes")
    validation_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of the rows held out to measure the loss per round",
    )
    early_stopping_rounds: int = Field(
        default=0, ge=0, description="stop after this many rounds without a better validation loss"
    )
    key_bits: Literal[1024, 2048] = Field(default=2048, description="1024 for tests only")
    seed: int | None = Field(default=None, ge=0, description="sampling seed (repeatable runs)")

    def protocol(self) -> SgbParams:
        try:
            return SgbParams(
                trees=self.trees,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                reg_lambda=self.reg_lambda,
                gamma=self.gamma,
                min_child_weight=self.min_child_weight,
                max_bin=self.max_bin,
                subsample=self.subsample,
                objective=self.objective,
                num_class=self.num_class,
                validation_fraction=self.validation_fraction,
                early_stopping_rounds=self.early_stopping_rounds,
                key_bits=self.key_bits,
                seed=self.seed,
            )
        except ConfigError as exc:
            raise ComponentParamError(str(exc), ("params",)) from None


def data_parties(spec: ComponentSpec, what: str) -> list[str]:
    """Every input is a data party (two or more); no dealer."""
    if any(ref.role is not None for ref in spec.inputs.values()) or len(spec.inputs) < 2:
        raise ComponentParamError(
            f"{what} needs two or more data parties and no dealer or aggregator", ("inputs",)
        )
    return sorted(spec.inputs)


class TrainSgbComponent(Component):
    type_name = "train_sgb"
    summary = "SecureBoost: vertical gradient-boosted trees over encrypted gradients (HE)"
    Params = TrainSgbParams
    outputs = ("model", "report")

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainSgbParams)
        data = data_parties(spec, "train_sgb")
        params.check_parties(data)
        params.protocol()
        model = spec.outputs.get("model")
        if model is None or sorted(model.receivers) != data:
            raise ComponentParamError(
                "train_sgb's 'model' output goes to every data party (each keeps its own part)",
                ("outputs", "model"),
            )
        report = spec.outputs.get("report")
        if report is not None and report.receivers != [params.label.party]:
            raise ComponentParamError(
                "the 'report' goes to the label party alone", ("outputs", "report")
            )

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainSgbParams)
        uses = params.uses(party)
        for c in params.features.get(party, []):
            # a split on it tells the label party which rows pass a threshold (kept by the
            # owner): a WHERE-like use, so "aggregate"-only columns are refused
            uses.setdefault(c, set()).add("filter")
        return uses

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, TrainSgbParams)
        return params.used(party)

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, TrainSgbParams)
        proto = params.protocol()
        label = params.label.party
        is_label = ctx.party == label
        mine = params.features.get(ctx.party, [])
        label_col = params.label.column if is_label else None
        table = read_features(ctx, params.id_of(ctx.party), mine, label_col, "train_sgb")
        parties = sorted(ctx.spec.inputs)
        await check_aligned_star(ctx, table, params.id_of(ctx.party), label, parties, "sgb")
        x = float_matrix(table, mine)
        progress = lambda f: ctx.progress(min(f, 0.99))  # noqa: E731
        summary: dict[str, Any] = {"rows": table.num_rows}
        y = None
        if is_label:
            y = float_matrix(table, [params.label.column])[:, 0]
            if np.isnan(y).any():
                raise DataError(f"label column {params.label.column!r} has missing values")
            peers = {p: ctx.channels[p] for p in parties if p != label}
            res = await train_label(
                peers, x, y, proto, me=ctx.party, progress=progress, engine=ctx.compute
            )
        else:
            res = await train_feature(
                ctx.channels[label],
                x,
                me=ctx.party,
                max_bin=params.max_bin,
                progress=progress,
                engine=ctx.compute,
            )
        ctx.progress(1.0)
        model: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "job": ctx.job_id,
            "component": ctx.spec.id,
            "party": ctx.party,
            "label_party": label,
            "parties": parties,
            "features": mine,
            "objective": params.objective,
            "num_class": params.num_class,
            "trees": [t.to_json() for t in res.trees],
            "rounds": res.rounds,
            "rows": table.num_rows,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        if is_label:
            model["base"] = res.base
        path = Path(ctx.out_dir) / f"{ctx.spec.id}.model.json"
        write_json_atomic(model, path)
        outputs: dict[str, Any] = {
            "model": {"path": str(path), "rows": len(res.trees), "columns": mine, "format": "json"}
        }
        summary["rounds"] = res.rounds
        if is_label:
            assert y is not None
            metrics: dict[str, float] = {
                "rows": float(len(y)),
                "rounds": float(res.rounds),
                "trees": float(len(res.trees)),
                "he_seconds": round(res.he_seconds, 3),
            }
            if params.objective == "binary" and res.train_scores is not None:
                metrics["auc"] = auc(res.train_scores, y)
                metrics["ks"] = ks(res.train_scores, y)
            for i, loss in enumerate(res.history):
                metrics[f"validation_loss_{i + 1}"] = loss
            summary["result"] = metrics
            if "report" in ctx.spec.outputs:
                outputs["report"] = ctx.write_metrics("report", metrics)
        summary["outputs"] = outputs
        return summary


def read_features(
    ctx: ComponentContext, id_column: str, features: list[str], label: str | None, what: str
) -> pa.Table:
    ref = ctx.inputs[ctx.party]
    wanted = [id_column, *features, *([label] if label else [])]
    missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
    if missing:
        raise DataError(
            f"{what} input of {ctx.party!r} has no column {', '.join(map(repr, missing))}"
        )
    return read_columns(ref, list(dict.fromkeys(wanted)))


def float_matrix(table: pa.Table, columns: list[str]) -> Any:
    """Numeric columns as float64, missing values as NaN."""
    cols = []
    for c in columns:
        col = table.column(c)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"column {c!r} is not numeric ({col.type})")
        cols.append(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False))
    return np.column_stack(cols).astype(np.float64) if cols else np.zeros((table.num_rows, 0))
