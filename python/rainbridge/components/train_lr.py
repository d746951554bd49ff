"""The ``train_lr`` component: vertical logistic regression (:mod:`rainbridge.protocols.fl.
vertical_lr`) over two or more parties' aligned tables — the labels (and maybe some
features) at one party, the other features at one or more feature parties. The label party
runs a two-party MPC session with each feature party, by OT extension; with exactly two data
parties a third party with ``role: dealer`` may serve the session's randomness instead.

Each party's ``model`` output is its own part only: its features, their standardisation
(mean and scale from its own training rows) and their weights, plus the intercept at the
label party — a JSON file no other party receives. The label party may also receive a
``report`` (AUC, KS, epochs) computed on the training rows; that needs every feature party's
partial scores (``evaluate: true``, the default), as FATE's evaluation does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import (
    LabelledParams,
    check_aligned_star,
    matrix,
    open_session,
    serve_dealer,
)
from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import DataError
from rainbridge.net.channel import Channel
from rainbridge.protocols.fl.metrics import auc, ks
from rainbridge.protocols.fl.vertical_lr import LrParams, LrRoles, train_parties
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.ot import OtProvider

MODEL_FORMAT = "rainbridge/vertical-lr/v1"


class TrainLrParams(LabelledParams):
    """Parameters of the ``train_lr`` component."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1, le=1000, description="passes over the rows, at most")
    batch_size: int = Field(default=1024, ge=8, le=1 << 16, description="rows per gradient step")
    learning_rate: float = Field(default=0.1, gt=0, le=100, description="step size of SGD")
    l2: float = Field(default=0.0, ge=0, description="L2 penalty (never on the intercept)")
    l1: float = Field(default=0.0, ge=0, description="L1 penalty (never on the intercept)")
    tol: float = Field(
        default=1e-4, ge=0, description="stop when no weight moves more than this in an epoch"
    )
    sigmoid: Literal["piecewise", "taylor"] = Field(
        default="piecewise",
        description="σ on shares: piecewise (two secure comparisons a row) or taylor (1/2 + z/4)",
    )
    seed: int | None = Field(default=None, ge=0, description="batch order (repeatable runs)")
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
        data, _dealer = lr_roles(spec)
        params.check_parties(data)
        empty = [p for p in data if p != params.label.party and not params.features.get(p)]
        if empty:
            raise ComponentParamError(
                f"feature party {empty[0]!r} has no features: give it some or leave it out",
                ("params", "features"),
            )
        if params.label.column in params.features.get(params.label.party, []):
            raise ComponentParamError(
                f"the label column {params.label.column!r} is not a feature too: the model would "
                "learn the label from itself",
                ("params", "features"),
            )
        model = spec.outputs.get("model")
        if model is None or sorted(model.receivers) != data:
            every = "both data parties" if len(data) == 2 else "every data party"
            raise ComponentParamError(
                f"train_lr's 'model' output goes to {every} (each keeps its own part)",
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
        data, dealer = lr_roles(ctx.spec)
        if ctx.party == dealer:
            served = await serve_dealer(ctx)
            assert served is not None
            return served
        label = params.label.party
        is_label = ctx.party == label
        mine = params.features.get(ctx.party, [])
        table = self._read(ctx, params, mine, is_label)
        id_column = params.id_of(ctx.party)
        # every input checked before the first message
        x = matrix(table, mine)
        bad = [c for c, ok in zip(mine, np.isfinite(x).all(axis=0), strict=True) if not ok]
        if bad:
            # a NaN is no missing value to Arrow, but it would poison every party's weights
            raise DataError(
                f"feature column {bad[0]!r} of {ctx.party!r} holds NaN or infinite values"
            )
        mean = x.mean(axis=0) if len(x) else np.zeros(len(mine))
        scale = x.std(axis=0) if len(x) else np.ones(len(mine))
        # a column constant over the rows gets scale 1, so 0 and no weight: its floating-point
        # std is often about 1e-17, not 0, which made it a second intercept and another value
        # in a new row a partial score of about 10^15
        scale[(scale == 0) | (x == x[:1]).all(axis=0)] = 1.0
        y = None
        if is_label:
            y = matrix(table, [params.label.column])[:, 0]
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"label column {params.label.column!r} must hold 0 and 1 only")
            if len(np.unique(y)) < 2:  # nothing to learn, and a KS of 1.0 beside no AUC
                raise DataError(
                    f"label column {params.label.column!r} holds one class only over the "
                    "training rows: logistic regression needs both 0 and 1"
                )
        counts = {p: len(params.features.get(p, [])) for p in data}
        if len(data) == 2:
            hello = {"features": len(mine)}
            session = await open_session(ctx, table, id_column, hello, "lr", params.ot)
            their = session.their_hello.get("features")
            if their != counts[session.other]:
                raise DataError("the other party announced another feature count")
            sessions: dict[str, Mpc] = {session.other: session.mpc}
        else:
            await check_aligned_star(ctx, table, id_column, label, data, "lr")
            sessions = await _open_star(ctx, label, data, params.ot)
        feature_parties = tuple(p for p in data if p != label)
        channels: Mapping[str, Channel] = (
            {} if is_label else {p: ctx.channels[p] for p in feature_parties if p != ctx.party}
        )
        res = await train_parties(
            LrRoles(ctx.party, label, feature_parties, counts),
            sessions,
            channels,
            (x - mean) / scale,
            y,
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
        for mpc in sessions.values():
            await mpc.close()
        ctx.progress(1.0)
        model = {
            "format": MODEL_FORMAT,
            "job": ctx.job_id,
            "component": ctx.spec.id,
            "party": ctx.party,
            "label_party": label,
            "parties": data,
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


def lr_roles(spec: ComponentSpec) -> tuple[list[str], str | None]:
    """(the data parties, sorted; the dealer or None): two or more data parties, and a
    dealer only beside exactly two (a session per pair of parties runs on OT extension)."""
    dealers = [p for p, ref in spec.inputs.items() if ref.role == "dealer"]
    data = sorted(p for p, ref in spec.inputs.items() if ref.role is None)
    if len(dealers) + len(data) != len(spec.inputs) or len(dealers) > 1 or len(data) < 2:
        raise ComponentParamError(
            "train_lr needs two or more data parties and, beside exactly two, at most one "
            "party with 'role: dealer'",
            ("inputs",),
        )
    if dealers and len(data) > 2:
        raise ComponentParamError(
            f"a dealer serves two data parties only; with {len(data)} the label party runs "
            "a session with each feature party by OT extension: remove 'role: dealer'",
            ("inputs",),
        )
    return data, dealers[0] if dealers else None


async def _open_star(ctx: ComponentContext, label: str, data: list[str], ot: str) -> dict[str, Mpc]:
    """The label party's MPC session with each feature party (OT extension; the engine
    parties numbered in name order, as with two); a feature party's one with the label
    party."""
    peers = [p for p in data if p != label] if ctx.party == label else [label]

    async def one(peer: str) -> Mpc:
        me = 0 if ctx.party < peer else 1
        provider = OtProvider(me, ctx.channels[peer], source=ot)
        await provider.setup()
        return Mpc(me, ctx.channels[peer], provider)

    return dict(zip(peers, await asyncio.gather(*(one(p) for p in peers)), strict=True))
