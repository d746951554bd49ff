"""The ``stats`` component: joint statistics over two parties' aligned tables (安全统计).

Inputs: two data parties, each with a table aligned row by row with the other's (a PSI
``intersection`` both received: same IDs, same order — checked before anything else), and a
third party with ``role: dealer`` that serves correlated randomness and sees no data.
Parameters name each data party's columns and the statistics; the single receiver of the
``result`` output learns them and nothing else (see :mod:`rainbridge.protocols.mpc.stats`
for what the sufficient statistics reveal). Optionally ``group_by`` a column of one data
party (its distinct values are the groups) with sums and means of the other party's
columns; groups smaller than ``min_group_size`` are suppressed.

With ``dp`` (``epsilon`` and a bound per column), values are clipped to their bounds by
their owners and the party that does not receive adds Laplace noise inside the MPC
(:mod:`rainbridge.protocols.mpc.dp`); a dataset's owner may require it and cap the total ε
spent on the dataset (``rainbridge dataset policy --dp-budget``).

The result is a long table — ``statistic, column, column2, group, value`` — in CSV or
Parquet at the receiver, and the same rows (up to 1,000) in the job's result summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.data import read_columns, write_table_atomic
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc import DealerClient, Mpc, SeedProvider, receive_seed, run_dealer
from rainbridge.protocols.mpc.dp import clip
from rainbridge.protocols.mpc.stats import group_sums, moments, to_integers

Statistic = Literal["count", "sum", "mean", "var", "std", "cov", "corr"]
MAX_GROUPS = 1000
MAX_SUMMARY_ROWS = 1000


class GroupBy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    party: str
    column: str


class DpParams(BaseModel):
    """Differential privacy of the released statistics (Laplace, added inside the MPC)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(gt=0, le=100, description="privacy budget this job spends")
    bounds: dict[str, float] = Field(
        description="each used column's bound B: values are clipped to [-B, B]"
    )


class StatsParams(BaseModel):
    """Parameters of the ``stats`` component."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, list[str]] = Field(description="each data party's numeric columns")
    statistics: list[Statistic] = Field(default=["count", "mean", "std"], min_length=1)
    group_by: GroupBy | None = None
    decimals: int = Field(default=2, ge=0, le=6, description="precision of the values")
    min_group_size: int = Field(default=1, ge=1)
    dp: DpParams | None = None
    id: str | dict[str, str] = Field(
        default="customer_id", description="the aligned ID column (or one per data party)"
    )

    def id_of(self, party: str) -> str:
        return self.id if isinstance(self.id, str) else self.id.get(party, "customer_id")


class StatsComponent(Component):
    type_name = "stats"
    summary = "Joint statistics over two parties' aligned columns (MPC, dealer-assisted)"
    Params = StatsParams
    outputs = ("result",)
    min_parties = 3

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        dealers = [p for p, ref in spec.inputs.items() if ref.role == "dealer"]
        data = [p for p, ref in spec.inputs.items() if ref.role is None]
        if len(dealers) != 1 or len(data) != 2:
            raise ComponentParamError(
                "stats needs exactly two data parties and one party with 'role: dealer'",
                ("inputs",),
            )
        for p in params.columns:
            if p not in data:
                raise ComponentParamError(
                    f"columns are given for {p!r}, which is not a data party", ("params", "columns")
                )
        out = spec.outputs.get("result")
        if out is None or len(out.receivers) != 1 or out.receivers[0] not in data:
            raise ComponentParamError(
                "stats needs a 'result' output with one receiver, a data party", ("outputs",)
            )
        if params.group_by is not None and params.group_by.party not in data:
            raise ComponentParamError(
                "group_by.party must be a data party", ("params", "group_by", "party")
            )
        if params.dp is not None:
            used = [c for cols in params.columns.values() for c in cols]
            missing = [c for c in used if c not in params.dp.bounds]
            if missing:
                raise ComponentParamError(
                    f"dp.bounds must give a bound for {', '.join(map(repr, missing))}",
                    ("params", "dp", "bounds"),
                )

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        cols = list(params.columns.get(party, []))
        if params.group_by is not None and params.group_by.party == party:
            cols.append(params.group_by.column)
        return cols

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        # the ID column only checks the alignment (a digest), so it counts as joined
        uses: dict[str, set[str]] = {params.id_of(party): {"join"}}
        for c in params.columns.get(party, []):
            uses.setdefault(c, set()).add("aggregate")
        if params.group_by is not None and params.group_by.party == party:
            uses.setdefault(params.group_by.column, set()).add("group")
        return uses

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, StatsParams)
        spec = ctx.spec
        dealer = next(p for p, ref in spec.inputs.items() if ref.role == "dealer")
        p0, p1 = sorted(p for p in spec.inputs if p != dealer)
        if ctx.party == dealer:
            served = await run_dealer(ctx.channels[p0], ctx.channels[p1])
            ctx.progress(1.0)
            return {"role": "dealer", "requests_served": served}
        me = 0 if ctx.party == p0 else 1
        other = p1 if me == 0 else p0
        receiver_name = spec.outputs["result"].receivers[0]
        receiver = 0 if receiver_name == p0 else 1
        ch = ctx.channels[other]
        table = self._read(ctx, params)
        n = table.num_rows
        mine = params.columns.get(ctx.party, [])
        # agree on the alignment and the shapes before any share moves
        digest = hashlib.sha256(
            "\n".join(table.column(params.id_of(ctx.party)).cast(pa.string()).to_pylist()).encode()
        ).hexdigest()
        await ch.send_json("stats/hello", {"rows": n, "ids": digest, "columns": mine})
        theirs = await ch.recv_json("stats/hello")
        if not isinstance(theirs, dict) or theirs.get("rows") != n or theirs.get("ids") != digest:
            raise ParameterMismatchError(
                "the two parties' tables are not aligned (different IDs or order); "
                "feed both from the same PSI intersection"
            )
        their_cols = [str(c) for c in theirs.get("columns", [])][:10_000]
        seed = await receive_seed(ctx.channels[dealer])
        provider = SeedProvider(seed) if me == 0 else DealerClient(seed, ctx.channels[dealer])
        mpc = Mpc(me, ch, provider)
        raw = np.column_stack([self._numeric(table, c) for c in mine]) if mine else np.zeros((n, 0))
        dp_all = None
        if params.dp is not None:
            raw = clip(raw, [params.dp.bounds[c] for c in mine])  # each owner clips its own
            order = (mine + their_cols) if me == 0 else (their_cols + mine)
            dp_all = (params.dp.epsilon, np.array([params.dp.bounds[c] for c in order]))
        values = to_integers(raw, params.decimals)
        rows: list[dict[str, Any]] = []
        res = await moments(
            mpc,
            values,
            mine,
            (n, len(their_cols)),
            their_cols,
            receiver,
            (params.decimals, params.decimals),
            dp=dp_all,
        )
        ctx.progress(0.6)
        if res is not None:
            rows += _moment_rows(res, params.statistics)
        if params.group_by is not None:
            rows += await self._grouped(ctx, params, mpc, table, me, other, values, their_cols)
        await mpc.close()
        ctx.progress(1.0)
        summary: dict[str, Any] = {"rows": n, "receiver": receiver_name}
        if ctx.party == receiver_name:
            out_spec = spec.outputs["result"]
            result = pa.Table.from_pylist(
                rows,
                schema=pa.schema(
                    [
                        ("statistic", pa.string()),
                        ("column", pa.string()),
                        ("column2", pa.string()),
                        ("group", pa.string()),
                        ("value", pa.float64()),
                    ]
                ),
            )
            path = Path(ctx.out_dir) / f"{spec.id}.result.{out_spec.format}"
            write_table_atomic(result, path, out_spec.format)
            summary["outputs"] = {
                "result": {
                    "path": str(path),
                    "rows": result.num_rows,
                    "columns": result.column_names,
                    "format": out_spec.format,
                }
            }
            summary["result"] = rows[:MAX_SUMMARY_ROWS]
        return summary

    async def _grouped(
        self,
        ctx: ComponentContext,
        params: StatsParams,
        mpc: Mpc,
        table: pa.Table,
        me: int,
        other: str,
        values: Any,
        their_cols: list[str],
    ) -> list[dict[str, Any]]:
        gb = params.group_by
        assert gb is not None
        key_party = me if ctx.party == gb.party else 1 - me
        ch = ctx.channels[other]
        receiver_name = ctx.spec.outputs["result"].receivers[0]
        receiver = me if ctx.party == receiver_name else 1 - me
        if ctx.party == gb.party:
            col = table.column(gb.column).cast(pa.string()).fill_null("(null)").to_pylist()
            groups = sorted(set(col))
            if len(groups) > MAX_GROUPS:
                raise DataError(f"group_by column {gb.column!r} has over {MAX_GROUPS} values")
            index = {g: i for i, g in enumerate(groups)}
            keys = np.array([index[v] for v in col], dtype=np.int64)
            # the number of groups shapes the computation, so the other party learns it; the
            # labels go to it only when it is the receiver (they are the key party's data)
            await ch.send_json(
                "stats/groups",
                {"count": len(groups), "labels": groups if receiver != key_party else None},
            )
            value_cols = their_cols
            res = await group_sums(
                mpc,
                key_party=key_party,
                keys=keys,
                groups=groups,
                values=None,
                value_shape=(table.num_rows, len(value_cols)),
                receiver=receiver,
                decimals=params.decimals,
                min_group_size=params.min_group_size,
                dp=_group_dp(params, value_cols),
            )
        else:
            got = await ch.recv_json("stats/groups")
            count = int(got.get("count", 0)) if isinstance(got, dict) else 0
            if not 0 < count <= MAX_GROUPS:
                raise ParameterMismatchError("the other party announced an invalid group count")
            labels = got.get("labels")
            groups = (
                [str(g) for g in labels][:count]
                if isinstance(labels, list) and len(labels) == count
                else [str(i) for i in range(count)]
            )
            value_cols = params.columns.get(ctx.party, [])
            res = await group_sums(
                mpc,
                key_party=key_party,
                keys=None,
                groups=groups,
                values=values,
                value_shape=values.shape,
                receiver=receiver,
                decimals=params.decimals,
                min_group_size=params.min_group_size,
                dp=_group_dp(params, value_cols),
            )
        if res is None:
            return []
        rows: list[dict[str, Any]] = []
        for i, g in enumerate(res.groups):
            rows.append(_row("count", "", "", g, float(res.counts[i])))
            for j, c in enumerate(value_cols):
                rows.append(_row("sum", c, "", g, float(res.sums[i, j])))
                rows.append(_row("mean", c, "", g, float(res.sums[i, j] / res.counts[i])))
        return rows

    @staticmethod
    def _read(ctx: ComponentContext, params: StatsParams) -> pa.Table:
        ref = ctx.inputs[ctx.party]
        wanted = [params.id_of(ctx.party), *params.columns.get(ctx.party, [])]
        if params.group_by is not None and params.group_by.party == ctx.party:
            wanted.append(params.group_by.column)
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(
                f"stats input of {ctx.party!r} has no column {', '.join(map(repr, missing))}"
            )
        return read_columns(ref, list(dict.fromkeys(wanted)))

    @staticmethod
    def _numeric(table: pa.Table, column: str) -> Any:
        col = table.column(column)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"column {column!r} is not numeric ({col.type})")
        if col.null_count:
            raise DataError(f"column {column!r} has {col.null_count} missing values")
        return pc.cast(col, pa.float64()).to_numpy()


def _group_dp(params: StatsParams, value_cols: list[str]) -> tuple[float, Any] | None:
    if params.dp is None:
        return None
    return params.dp.epsilon, np.array([params.dp.bounds[c] for c in value_cols])


def _row(stat: str, col: str, col2: str, group: str, value: float) -> dict[str, Any]:
    return {"statistic": stat, "column": col, "column2": col2, "group": group, "value": value}


def _moment_rows(res: Any, statistics: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "count" in statistics:
        rows.append(_row("count", "", "", "", float(res.n)))  # the joined rows
    mean, var = res.mean(), res.variance()
    cov, corr = res.covariance(), res.correlation()
    for i, c in enumerate(res.names):
        if "count" in statistics:
            rows.append(_row("count", c, "", "", float(res.n)))
        if "sum" in statistics:
            rows.append(_row("sum", c, "", "", float(res.sums[i])))
        if "mean" in statistics:
            rows.append(_row("mean", c, "", "", float(mean[i])))
        if "var" in statistics:
            rows.append(_row("var", c, "", "", float(var[i])))
        if "std" in statistics:
            rows.append(_row("std", c, "", "", float(np.sqrt(max(var[i], 0.0)))))
    for stat, mat in (("cov", cov), ("corr", corr)):
        if stat in statistics:
            for i, a in enumerate(res.names):
                for j, b in enumerate(res.names):
                    rows.append(_row(stat, a, b, "", float(mat[i, j])))
    return rows
