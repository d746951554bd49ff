"""The ``evaluate`` component: metrics of scores against labels where both already are — one
party, typically the label party over the ``predictions`` of a ``predict`` step — so no other
party learns anything per row (or at all).

Binary (``task: binary``): AUC, KS, the confusion matrix at ``threshold``, lift and gain by
decile, and the ROC curve; regression: MSE, MAE, R²; with ``baseline`` (a score column of an
earlier population) the population stability index of the scores. The ``report`` output is
a long table ``metric, key, value``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import matrix
from rainbridge.data import read_columns
from rainbridge.errors import DataError
from rainbridge.protocols.fl.metrics import (
    binary_report,
    regression,
    roc_curve,
    stability_index,
)


class EvaluateParams(BaseModel):
    """Parameters of the ``evaluate`` component."""

    model_config = ConfigDict(extra="forbid")
    score: str = Field(default="score", description="the column of scores")
    label: str = Field(default="label", description="the column of true labels")
    task: Literal["binary", "regression"] = Field(
        default="binary", description="binary: AUC, KS, confusion, lift; regression: MSE, MAE, R²"
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="binary: a score at least this is predicted 1"
    )
    baseline: str | None = Field(default=None, description="a column of earlier scores (PSI)")


class EvaluateComponent(Component):
    type_name = "evaluate"
    summary = "Metrics of scores against labels, at the one party that holds both"
    Params = EvaluateParams
    outputs = ("report",)
    min_parties = 1

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        if len(spec.inputs) != 1 or any(r.role is not None for r in spec.inputs.values()):
            raise ComponentParamError(
                "evaluate runs at one party with the scores and the labels", ("inputs",)
            )
        (party,) = spec.inputs
        out = spec.outputs.get("report")
        if out is None or out.receivers != [party]:
            raise ComponentParamError(
                "evaluate's 'report' stays with its party", ("outputs", "report")
            )

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, EvaluateParams)
        return [params.score, params.label, *([params.baseline] if params.baseline else [])]

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, EvaluateParams)
        ref = ctx.inputs[ctx.party]
        wanted = self.columns_used(ctx.spec, ctx.party, None)
        missing = [c for c in wanted if c not in ref.columns]
        if missing:
            raise DataError(f"evaluate input of {ctx.party!r} has no column {missing[0]!r}")
        table = read_columns(ref, wanted)
        s = matrix(table, [params.score])[:, 0]
        y = matrix(table, [params.label])[:, 0]
        rows: list[dict[str, Any]] = []

        def add(metric: str, key: str, value: float) -> None:
            rows.append({"metric": metric, "key": key, "value": float(value)})

        if params.task == "binary":
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"label column {params.label!r} must hold 0 and 1 only")
            rep = binary_report(s, y, params.threshold)
            add("auc", "", rep["auc"])
            add("ks", "", rep["ks"])
            for k, v in rep["confusion"].items():
                add("confusion", k, v)
            for b in rep["lift"]:
                add("lift", str(int(b["bucket"])), b["lift"])
                add("gain", str(int(b["bucket"])), b["gain"])
            fpr, tpr, _ = roc_curve(s, y)
            step = max(1, len(fpr) // 100)  # at most about 100 points of the curve
            for f, t in zip(fpr[::step], tpr[::step], strict=True):
                add("roc", f"{f:.6f}", t)
        else:
            for k, v in regression(s, y).items():
                add(k, "", v)
        if params.baseline:
            add("stability_index", "", stability_index(matrix(table, [params.baseline])[:, 0], s))
        report = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [("metric", pa.string()), ("key", pa.string()), ("value", pa.float64())]
            ),
        )
        written = ctx.write_output("report", report)
        ctx.progress(1.0)
        summary = {r["metric"]: r["value"] for r in rows if r["key"] == ""}
        return {
            "rows": table.num_rows,
            "result": summary,
            "outputs": {"report": written},
        }
