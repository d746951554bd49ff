"""The ``predict`` component: score aligned rows with a vertical model trained earlier in the
same job (``train_lr`` or ``train_sgb``), each party applying its own part.

For a SecureBoost model every party marks, per tree, the leaves each row can reach given its
own splits and sends the marks to the label party, which keeps the one leaf all allow and
adds the leaf weights: the label party learns each row's leaf in every tree (as in training),
the others learn nothing. On a ``ray`` compute engine each party marks its rows by blocks
on the cluster; the marks, and so the scores, are those of one call.

Each party standardises its features and computes its partial score with its own weights;
the feature party sends its partial scores to the label party, which adds its own and the
intercept and keeps σ(z) — the ``predictions`` output (ID, score, predicted class at
``threshold``), and AUC/KS when its rows carry the label. What is revealed: the feature
party's partial score of every scored row, to the label party (as in FATE's hetero-LR
prediction; the label party learns the score anyway, and with its own part, the rest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.components.train_sgb import MODEL_FORMAT as SGB_FORMAT
from rainbridge.components.train_sgb import data_parties, float_matrix
from rainbridge.components.twoparty import (
    AlignedParams,
    check_aligned,
    check_aligned_star,
    matrix,
)
from rainbridge.data import read_columns
from rainbridge.errors import DataError, ProtocolViolationError
from rainbridge.protocols.fl.metrics import auc, ks
from rainbridge.protocols.fl.sharding import row_shards
from rainbridge.protocols.fl.trees import (
    TreePart,
    combine_marks,
    leaf_marks,
    link,
    unpack_marks,
)


class PredictParams(AlignedParams):
    """Parameters of the ``predict`` component."""

    model: str = Field(
        description="the id of a train_lr or train_sgb component earlier in this job"
    )
    features: dict[str, list[str]] = Field(
        description="each party's features, as in the model (what grants must allow)"
    )
    threshold: float = Field(default=0.5, gt=0, lt=1)
    label: str | None = Field(default=None, description="the label party's label column, if any")


class PredictComponent(Component):
    type_name = "predict"
    summary = "Score aligned rows with a vertical model trained earlier in the job"
    Params = PredictParams
    outputs = ("predictions",)

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        data_parties(spec, "predict")
        out = spec.outputs.get("predictions")
        if out is None or len(out.receivers) != 1 or out.receivers[0] not in spec.inputs:
            raise ComponentParamError(
                "predict needs a 'predictions' output with one receiver: the label party",
                ("outputs",),
            )

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, PredictParams)
        # each party's features enter the partial scores the label party receives
        uses: dict[str, set[str]] = {params.id_of(party): {"join"}}
        for c in params.features.get(party, []):
            uses.setdefault(c, set()).add("aggregate")
        return uses

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, PredictParams)
        return list(params.features.get(party, []))

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, PredictParams)
        model = self._model(ctx, params.model)
        receiver = ctx.spec.outputs["predictions"].receivers[0]
        if receiver != model["label_party"]:
            raise DataError(
                f"the predictions go to the model's label party {model['label_party']!r}"
            )
        is_label = ctx.party == receiver
        if model["format"] == SGB_FORMAT:
            return await self._run_sgb(ctx, params, model, receiver)
        if len(ctx.spec.inputs) != 2:
            raise DataError("a vertical LR model scores with exactly its two parties")
        feats = list(model["features"])
        if feats != list(params.features.get(ctx.party, [])):
            raise DataError(
                f"the model's features at {ctx.party!r} are {feats}; the job names "
                f"{params.features.get(ctx.party, [])}"
            )
        ref = ctx.inputs[ctx.party]
        wanted = [params.id_of(ctx.party), *feats]
        if is_label and params.label:
            wanted.append(params.label)
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(f"predict input of {ctx.party!r} has no column {missing[0]!r}")
        table = read_columns(ref, list(dict.fromkeys(wanted)))
        other, _ = await check_aligned(
            ctx, table, params.id_of(ctx.party), {"model": model["job"]}, "predict"
        )
        x = matrix(table, feats)
        z = ((x - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(
            model["weights"], dtype=float
        )
        ch = ctx.channels[other]
        n = table.num_rows
        if not is_label:
            await ch.send("predict/scores", np.ascontiguousarray(z, dtype=np.float64).tobytes())
            ctx.progress(1.0)
            return {"rows": n, "receiver": receiver}
        theirs = np.empty(n, dtype=np.float64)
        got = await ch.recv_into("predict/scores", theirs.data.cast("B"))
        if got != theirs.nbytes:
            raise ProtocolViolationError("the other party's partial scores have the wrong size")
        score = 1.0 / (1.0 + np.exp(-np.clip(z + theirs + float(model["intercept"]), -30, 30)))
        cols: dict[str, Any] = {
            params.id_of(ctx.party): table.column(params.id_of(ctx.party)),
            "score": score,
            "predicted": (score >= params.threshold).astype(np.int64),
        }
        summary: dict[str, Any] = {"rows": n, "receiver": receiver}
        if params.label:
            y = matrix(table, [params.label])[:, 0]
            cols["label"] = y
            summary["result"] = {"auc": auc(score, y), "ks": ks(score, y), "rows": float(n)}
        return self._write(ctx, pa.table(cols), summary)

    @staticmethod
    def _model(ctx: ComponentContext, component: str) -> dict[str, Any]:
        path = ctx.artifacts.get(f"{component}.model")
        if path is None:
            raise DataError(
                f"no model {component!r} at {ctx.party!r}: name a train_lr component that ran "
                "earlier in this job"
            )
        model = json.loads(Path(path).read_text())
        if model.get("format") not in (MODEL_FORMAT, SGB_FORMAT):
            raise DataError(f"{component!r} is not a vertical LR or SecureBoost model")
        return dict(model)

    async def _run_sgb(
        self, ctx: ComponentContext, params: PredictParams, model: dict[str, Any], receiver: str
    ) -> dict[str, Any]:
        is_label = ctx.party == receiver
        feats = list(model["features"])
        if feats != list(params.features.get(ctx.party, [])):
            raise DataError(
                f"the model's features at {ctx.party!r} are {feats}; the job names "
                f"{params.features.get(ctx.party, [])}"
            )
        if sorted(ctx.spec.inputs) != sorted(model["parties"]):
            raise DataError(f"the model's parties are {model['parties']}")
        id_col = params.id_of(ctx.party)
        wanted = [id_col, *feats, *([params.label] if is_label and params.label else [])]
        ref = ctx.inputs[ctx.party]
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(f"predict input of {ctx.party!r} has no column {missing[0]!r}")
        table = read_columns(ref, list(dict.fromkeys(wanted)))
        parties = sorted(ctx.spec.inputs)
        await check_aligned_star(ctx, table, id_col, receiver, parties, "predict")
        trees = [TreePart.from_json(t) for t in model["trees"]]
        x = float_matrix(table, feats)
        shards = row_shards(ctx.compute)
        marks = leaf_marks(trees, x) if shards is None else await shards.leaf_marks(trees, x)
        n = table.num_rows
        if not is_label:
            await ctx.channels[receiver].send("predict/marks", marks)
            ctx.progress(1.0)
            return {"rows": n, "receiver": receiver}
        got = [unpack_marks(marks, n, trees)]
        for p in parties:
            if p != ctx.party:
                got.append(unpack_marks(await ctx.channels[p].recv("predict/marks"), n, trees))
        base = np.asarray(model["base"], dtype=np.float64)
        scores = link(combine_marks(trees, base, got, n), str(model["objective"]))
        cols: dict[str, Any] = {id_col: table.column(id_col)}
        summary: dict[str, Any] = {"rows": n, "receiver": receiver}
        y = matrix(table, [params.label])[:, 0] if params.label else None
        if scores.ndim == 2:  # multiclass: a probability per class
            for c in range(scores.shape[1]):
                cols[f"score_{c}"] = scores[:, c]
            cols["predicted"] = scores.argmax(axis=1).astype(np.int64)
            if y is not None:
                summary["result"] = {"accuracy": float((cols["predicted"] == y).mean())}
        elif model["objective"] == "regression":
            cols["score"] = scores
            if y is not None:
                summary["result"] = {"rmse": float(np.sqrt(np.mean((scores - y) ** 2)))}
        else:
            cols["score"] = scores
            cols["predicted"] = (scores >= params.threshold).astype(np.int64)
            if y is not None:
                summary["result"] = {"auc": auc(scores, y), "ks": ks(scores, y), "rows": float(n)}
        if y is not None:
            cols["label"] = y
        return self._write(ctx, pa.table(cols), summary)

    @staticmethod
    def _write(ctx: ComponentContext, result: pa.Table, summary: dict[str, Any]) -> dict[str, Any]:
        summary["outputs"] = {"predictions": ctx.write_output("predictions", result)}
        ctx.progress(1.0)
        return summary
