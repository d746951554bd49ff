"""The ``predict`` component: score aligned rows with a vertical model (``train_lr`` or
``train_sgb``), each party applying its own part — a model trained earlier in the same job,
or a registered model from an earlier job on new rows (batch scoring).

``model`` names the training component of this job, or a model in the parties' registries:
``name@version``, ``name`` (its latest version in use) or its ID (``<job id>.<component>``).
Each party resolves the name in its own registry (a retired version is refused before the
job starts); before scoring, the parties check that they all hold parts of the same model
(the training job and component), so parts of two versions never mix. The model carries
its features: ``features`` need not be repeated (given, it must match the model's).

For a SecureBoost model every party marks, per tree, the leaves each row can reach given its
own splits and sends the marks to the label party, which keeps the one leaf all allow and
adds the leaf weights: the label party learns each row's leaf in every tree (as in training),
the others learn nothing. On a ``ray`` compute engine each party marks its rows by blocks
on the cluster; the marks, and so the scores, are those of one call.

For a vertical LR model each party standardises its features and computes its partial score
with its own weights; every other party sends its partial scores to the label party, which
adds its own and the intercept and keeps σ(z) — the ``predictions`` output (ID, score,
predicted class at ``threshold``), and AUC/KS when its rows carry the label. What is
revealed: each other party's partial score of every scored row, to the label party (as in
FATE's hetero-LR prediction; the label party learns the score anyway, and with its own
part, the rest).
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
from rainbridge.protocols.fl.vertical_lr import standardise


class PredictParams(AlignedParams):
    """Parameters of the ``predict`` component."""

    model: str = Field(
        min_length=1,
        max_length=200,
        description="a train_lr or train_sgb component earlier in this job, or a registered "
        "model: name@version, name (its latest version in use) or its ID (job.component)",
    )
    features: dict[str, list[str]] | None = Field(
        default=None,
        description="each party's features; default: the model's (given, they must match it)",
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="a score at or above it is predicted 1"
    )
    label: str | None = Field(
        default=None, description="the label party's label column, if any (for AUC and KS)"
    )


class PredictComponent(Component):
    type_name = "predict"
    summary = "Score aligned rows with a vertical model: of this job, or registered (name@version)"
    Params = PredictParams
    outputs = ("predictions",)
    id_outputs = ("predictions",)

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
        for c in (params.features or {}).get(party, []):
            uses.setdefault(c, set()).add("aggregate")
        return uses

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, PredictParams)
        return list((params.features or {}).get(party, []))

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, PredictParams)
        model, registered = self._model(ctx, params.model)
        receiver = ctx.spec.outputs["predictions"].receivers[0]
        if receiver != model["label_party"]:
            raise DataError(
                f"the predictions go to the model's label party {model['label_party']!r}"
            )
        parties = sorted(ctx.spec.inputs)
        if parties != sorted(model["parties"]):
            raise DataError(
                f"the model's parties are {', '.join(sorted(model['parties']))}; the job's "
                f"are {', '.join(parties)}"
            )
        feats = [str(f) for f in model["features"]]
        named = (params.features or {}).get(ctx.party)
        if named is not None and list(named) != feats:
            raise DataError(
                f"the model's features at {ctx.party!r} are {feats}; the job names {named}"
            )
        is_label = ctx.party == receiver
        id_col = params.id_of(ctx.party)
        wanted = [id_col, *feats, *([params.label] if is_label and params.label else [])]
        ref = ctx.inputs[ctx.party]
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(f"predict input of {ctx.party!r} has no column {missing[0]!r}")
        table = read_columns(ref, list(dict.fromkeys(wanted)))
        x = None
        if model["format"] == MODEL_FORMAT:  # SecureBoost sends a NaN down its missing branch
            x = matrix(table, feats)
            finite = np.isfinite(x).all(axis=0)
            bad = [c for c, ok in zip(feats, finite, strict=True) if not ok]
            if bad:  # a NaN is no missing value to Arrow: it made a NaN score, predicted 0
                raise DataError(
                    f"feature column {bad[0]!r} of {ctx.party!r} holds NaN or infinite values"
                )
        await same_model(ctx, f"{model['job']}.{model['component']}", receiver, parties)
        await check_aligned_star(ctx, table, id_col, receiver, parties, "predict")
        summary: dict[str, Any] = {"rows": table.num_rows, "receiver": receiver}
        if registered:
            summary["model"] = registered
        if model["format"] == SGB_FORMAT:
            cols = await self._score_sgb(ctx, params, model, table, receiver, parties)
        else:
            assert x is not None
            cols = await self._score_lr(ctx, model, x, receiver, parties)
        if not is_label:
            ctx.progress(1.0)
            return summary
        assert cols is not None
        out: dict[str, Any] = {id_col: table.column(id_col), **cols}
        if "score" in cols and (model["format"] != SGB_FORMAT or model["objective"] == "binary"):
            out["predicted"] = (cols["score"] >= params.threshold).astype(np.int64)
        if params.label:
            y = matrix(table, [params.label])[:, 0]
            out["label"] = y
            summary["result"] = _metrics(cols, y, str(model.get("objective", "binary")))
            if "auc" in summary["result"]:
                summary["result"]["rows"] = float(table.num_rows)
        return self._write(ctx, pa.table(out), summary)

    @staticmethod
    def _model(ctx: ComponentContext, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """This party's part of the model and, for a registered one, its registration."""
        path = ctx.artifacts.get(f"{name}.model")
        registered: dict[str, Any] | None = None
        if path is None:
            entry = ctx.models.get(name)
            if entry is None:
                raise DataError(
                    f"no model {name!r} at {ctx.party!r}: name a train_lr or train_sgb "
                    "component earlier in this job, or a registered model (name@version)"
                )
            path = Path(str(entry["path"]))
            registered = {k: entry[k] for k in ("id", "name", "version") if k in entry}
        try:
            model = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            raise DataError(f"model {name!r} cannot be read at {ctx.party!r}") from None
        if not isinstance(model, dict) or model.get("format") not in (MODEL_FORMAT, SGB_FORMAT):
            raise DataError(f"{name!r} is not a vertical LR or SecureBoost model")
        return model, registered

    async def _score_lr(
        self,
        ctx: ComponentContext,
        model: dict[str, Any],
        x: Any,
        receiver: str,
        parties: list[str],
    ) -> dict[str, Any] | None:
        """Partial scores of the rows' features ``x`` to the label party, which adds them up:
        its columns, or None."""
        n = x.shape[0]
        z = np.zeros(n)
        if x.shape[1]:
            z = standardise(x, model["mean"], model["scale"]) @ np.asarray(
                model["weights"], dtype=float
            )
        if ctx.party != receiver:
            await ctx.channels[receiver].send(
                "predict/scores", np.ascontiguousarray(z, dtype=np.float64).tobytes()
            )
            return None
        total = z + float(model["intercept"] or 0.0)
        for p in parties:
            if p == ctx.party:
                continue
            theirs = np.empty(n, dtype=np.float64)
            got = await ctx.channels[p].recv_into("predict/scores", theirs.data.cast("B"))
            if got != theirs.nbytes:
                raise ProtocolViolationError(f"{p!r}'s partial scores have the wrong size")
            if not np.isfinite(theirs).all():
                raise ProtocolViolationError(f"{p!r}'s partial scores are not all finite")
            total += theirs
        return {"score": 1.0 / (1.0 + np.exp(-np.clip(total, -30, 30)))}

    async def _score_sgb(
        self,
        ctx: ComponentContext,
        params: PredictParams,
        model: dict[str, Any],
        table: pa.Table,
        receiver: str,
        parties: list[str],
    ) -> dict[str, Any] | None:
        """Leaf marks to the label party, which keeps the leaf all allow: its columns."""
        trees = [TreePart.from_json(t) for t in model["trees"]]
        x = float_matrix(table, [str(f) for f in model["features"]])
        shards = row_shards(ctx.compute)
        marks = leaf_marks(trees, x) if shards is None else await shards.leaf_marks(trees, x)
        n = table.num_rows
        if ctx.party != receiver:
            await ctx.channels[receiver].send("predict/marks", marks)
            return None
        got = [unpack_marks(marks, n, trees)]
        for p in parties:
            if p != ctx.party:
                got.append(unpack_marks(await ctx.channels[p].recv("predict/marks"), n, trees))
        base = np.asarray(model["base"], dtype=np.float64)
        scores = link(combine_marks(trees, base, got, n), str(model["objective"]))
        if scores.ndim == 2:  # multiclass: a probability per class
            cols: dict[str, Any] = {f"score_{c}": scores[:, c] for c in range(scores.shape[1])}
            cols["predicted"] = scores.argmax(axis=1).astype(np.int64)
            return cols
        return {"score": scores}

    @staticmethod
    def _write(ctx: ComponentContext, result: pa.Table, summary: dict[str, Any]) -> dict[str, Any]:
        summary["outputs"] = {"predictions": ctx.write_output("predictions", result)}
        ctx.progress(1.0)
        return summary


def _metrics(cols: dict[str, Any], y: Any, objective: str) -> dict[str, float]:
    """The label party's headline metrics of the scores against the labels."""
    if "score" not in cols:  # multiclass
        return {"accuracy": float((cols["predicted"] == y).mean())}
    if objective == "regression":
        return {"rmse": float(np.sqrt(np.mean((cols["score"] - y) ** 2)))}
    return {"auc": auc(cols["score"], y), "ks": ks(cols["score"], y)}


async def same_model(ctx: ComponentContext, model_id: str, hub: str, parties: list[str]) -> None:
    """Check that every party holds a part of the same model (``<job id>.<component>`` of
    its training), before any row is scored: parts of two versions never mix. Raises
    DataError at every party, naming what each holds."""
    if ctx.party != hub:
        ch = ctx.channels[hub]
        await ch.send_json("predict/model", {"model": model_id})
        verdict = await ch.recv_json("predict/model-ok")
        if not isinstance(verdict, dict) or verdict.get("ok") is not True:
            got = verdict.get("held") if isinstance(verdict, dict) else None
            # the hub's words, kept to the job's parties and a model ID's length
            said = {p: str(got[p])[:200] for p in parties if isinstance(got, dict) and p in got}
            raise DataError(_differ(said))
        return
    held = {ctx.party: model_id}
    for p in parties:
        if p != hub:
            got = await ctx.channels[p].recv_json("predict/model")
            held[p] = str(got.get("model"))[:200] if isinstance(got, dict) else "?"
    ok = len(set(held.values())) == 1
    for p in parties:
        if p != hub:
            await ctx.channels[p].send_json(
                "predict/model-ok", {"ok": ok, **({} if ok else {"held": held})}
            )
    if not ok:
        raise DataError(_differ(held))


def _differ(held: dict[str, Any]) -> str:
    which = "; ".join(f"{p} holds {m}" for p, m in sorted(held.items()))
    return (
        "the parties hold parts of different models under this name"
        + (f" ({which})" if which else "")
        + ": every party scores with the same version (see `rainbridge model list`)"
    )
