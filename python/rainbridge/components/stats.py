"""The ``stats`` component: joint statistics over two parties' aligned tables (安全统计).

Inputs: two data parties, each with a table aligned row by row with the other's (a PSI
``intersection`` both received: same IDs, same order — checked before anything else), and
optionally a third party with ``role: dealer`` that serves correlated randomness and sees no
data. Without a dealer the two parties make that randomness themselves by OT extension
(:mod:`rainbridge.protocols.mpc.ot`): no third party to trust, much slower.
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

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import (
    AlignedParams,
    check_roles,
    matrix,
    open_session,
    roles,
    serve_dealer,
)
from rainbridge.data import read_columns
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.dp import Mechanism, clip
from rainbridge.protocols.mpc.stats import (
    crosstab,
    group_extrema,
    group_sums,
    moments,
    to_integers,
)

Statistic = Literal[
    "count",
    "sum",
    "mean",
    "var",
    "std",
    "cov",
    "corr",
    "min",
    "max",
    "median",
    "quantile",
    "histogram",
]
#: statistics of a column that its owner computes over the aligned rows by itself (then
#: shares with the receiver) when there is no cross-party grouping
_ORDER_STATS = ("min", "max", "median", "quantile")
MAX_BINS = 100
MAX_GROUPS = 1000
MAX_SUMMARY_ROWS = 1000


class GroupBy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    party: str
    column: str


class DpParams(BaseModel):
    """Differential privacy of the released statistics (noise added inside the MPC)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(gt=0, le=100, description="privacy budget this job spends")
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    delta: float = Field(default=0.0, ge=0, lt=0.01, description="for the Gaussian mechanism")
    bounds: dict[str, float] = Field(
        description="each used column's bound B: values are clipped to [-B, B]"
    )

    def mechanism_of(self) -> Mechanism:
        return Mechanism(self.epsilon, self.delta if self.mechanism == "gaussian" else 0.0)


class Crosstab(BaseModel):
    """Counts per (one party's column value, the other party's column value)."""

    model_config = ConfigDict(extra="forbid")
    rows: GroupBy
    columns: GroupBy


class StatsParams(AlignedParams):
    """Parameters of the ``stats`` component."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, list[str]] = Field(description="each data party's numeric columns")
    statistics: list[Statistic] = Field(default=["count", "mean", "std"], min_length=1)
    group_by: GroupBy | None = None
    decimals: int = Field(default=2, ge=0, le=6, description="precision of the values")
    min_group_size: int = Field(default=1, ge=1)
    quantiles: list[float] = Field(
        default=[0.25, 0.5, 0.75], min_length=1, max_length=99, description="for 'quantile'"
    )
    bins: dict[str, list[float]] = Field(
        default_factory=dict, description="histogram bin edges per column (increasing)"
    )
    crosstab: Crosstab | None = None
    dp: DpParams | None = None


class StatsComponent(Component):
    type_name = "stats"
    summary = "Joint statistics over two parties' aligned columns (MPC; a dealer or OT)"
    Params = StatsParams
    outputs = ("result",)
    min_parties = 2

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        data = check_roles(spec, "stats")
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
        self._check_more(params, data)
        if params.dp is not None and params.dp.mechanism == "gaussian" and not params.dp.delta:
            raise ComponentParamError(
                "the Gaussian mechanism needs dp.delta > 0", ("params", "dp", "delta")
            )
        if params.dp is not None:
            used = [c for cols in params.columns.values() for c in cols]
            missing = [c for c in used if c not in params.dp.bounds]
            if missing:
                raise ComponentParamError(
                    f"dp.bounds must give a bound for {', '.join(map(repr, missing))}",
                    ("params", "dp", "bounds"),
                )

    @staticmethod
    def _check_more(params: StatsParams, data: list[str]) -> None:
        """Checks of the order statistics, histograms and the cross tabulation."""
        where = ("params",)
        if any(not 0 < q < 1 for q in params.quantiles):
            raise ComponentParamError("quantiles must lie strictly between 0 and 1", where)
        used = {c for cols in params.columns.values() for c in cols}
        for col, edges in params.bins.items():
            if col not in used:
                raise ComponentParamError(f"bins given for {col!r}, not a listed column", where)
            if not 2 <= len(edges) <= MAX_BINS + 1 or any(
                b <= a for a, b in itertools.pairwise(edges)
            ):
                raise ComponentParamError(
                    f"bins of {col!r}: 2 to {MAX_BINS + 1} strictly increasing edges", where
                )
        if "histogram" in params.statistics:
            missing = sorted(used - set(params.bins))
            if missing:
                raise ComponentParamError(f"histogram needs bins for {missing[0]!r}", where)
        if params.group_by is not None and {"median", "quantile"} & set(params.statistics):
            raise ComponentParamError(
                "median and quantiles per group are not supported; ask for a histogram per "
                "group (bins) instead",
                where,
            )
        ct = params.crosstab
        if ct is not None and (
            ct.rows.party not in data
            or ct.columns.party not in data
            or ct.rows.party == ct.columns.party
        ):
            raise ComponentParamError(
                "crosstab rows and columns must be columns of the two different data parties",
                ("params", "crosstab"),
            )
        revealing = set(_ORDER_STATS) | {"histogram"}
        if params.dp is not None and (ct is not None or revealing & set(params.statistics)):
            raise ComponentParamError(
                "differential privacy covers count, sum, mean, var, std, cov and corr; drop "
                "min, max, median, quantile, histogram and crosstab, or dp",
                ("params", "dp"),
            )

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        return [c for c in self.column_uses(spec, party, id_column) if c != self._id(spec, party)]

    def _id(self, spec: ComponentSpec, party: str) -> str:
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        return params.id_of(party)

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, StatsParams)
        # the ID column only checks the alignment (a digest), so it counts as joined
        uses: dict[str, set[str]] = {params.id_of(party): {"join"}}
        for c in params.columns.get(party, []):
            uses.setdefault(c, set()).add("aggregate")
        for gb in (
            params.group_by,
            *((params.crosstab.rows, params.crosstab.columns) if params.crosstab else ()),
        ):
            if gb is not None and gb.party == party:
                uses.setdefault(gb.column, set()).add("group")
        return uses

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, StatsParams)
        spec = ctx.spec
        served = await serve_dealer(ctx)
        if served is not None:
            return served
        (p0, _p1), _dealer = roles(spec)
        receiver_name = spec.outputs["result"].receivers[0]
        receiver = 0 if receiver_name == p0 else 1
        table = self._read(ctx, params)
        n = table.num_rows
        mine = params.columns.get(ctx.party, [])
        # agree on the alignment and the shapes before any share moves
        session = await open_session(
            ctx, table, params.id_of(ctx.party), {"columns": mine}, "stats"
        )
        mpc, me = session.mpc, session.me
        their_cols = [str(c) for c in session.their_hello.get("columns", [])][:10_000]
        raw = matrix(table, mine)
        dp_all = None
        if params.dp is not None:
            raw = clip(raw, [params.dp.bounds[c] for c in mine])  # each owner clips its own
            order = (mine + their_cols) if me == 0 else (their_cols + mine)
            dp_all = (params.dp.mechanism_of(), np.array([params.dp.bounds[c] for c in order]))
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
        rows += await self._own_order_stats(params, mpc, me, receiver, raw, mine, their_cols)
        ctx.progress(0.7)
        if params.group_by is not None:
            rows += await self._grouped(ctx, params, mpc, table, me, values, raw, their_cols)
            ctx.progress(0.9)
        if params.crosstab is not None:
            rows += await self._crosstab(ctx, params, mpc, table, me)
        await mpc.close()
        ctx.progress(1.0)
        summary: dict[str, Any] = {"rows": n, "receiver": receiver_name}
        if ctx.party == receiver_name:
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
            summary["outputs"] = {"result": ctx.write_output("result", result)}
            summary["result"] = rows[:MAX_SUMMARY_ROWS]
        return summary

    async def _groups(
        self, ctx: ComponentContext, table: pa.Table, gb: GroupBy, receiver: str, tag: str
    ) -> tuple[Any, list[str]]:
        """The group keys (at the key party; None elsewhere) and the groups' labels.

        The number of groups shapes the computation, so the other party learns it; the
        labels go to it only when it is the receiver (they are the key party's data).
        """
        other = next(
            p for p in ctx.spec.inputs if p not in (ctx.party,) and ctx.spec.inputs[p].role is None
        )
        ch = ctx.channels[other]
        if ctx.party == gb.party:
            col = table.column(gb.column).cast(pa.string()).fill_null("(null)").to_pylist()
            groups = sorted(set(col))
            if len(groups) > MAX_GROUPS:
                raise DataError(f"column {gb.column!r} has over {MAX_GROUPS} distinct values")
            index = {g: i for i, g in enumerate(groups)}
            keys = np.array([index[v] for v in col], dtype=np.int64)
            await ch.send_json(
                tag, {"count": len(groups), "labels": groups if receiver == other else None}
            )
            return keys, groups
        got = await ch.recv_json(tag)
        count = int(got.get("count", 0)) if isinstance(got, dict) else 0
        if not 0 < count <= MAX_GROUPS:
            raise ParameterMismatchError("the other party announced an invalid group count")
        labels = got.get("labels")
        groups = (
            [str(g) for g in labels][:count]
            if isinstance(labels, list) and len(labels) == count
            else [str(i) for i in range(count)]
        )
        return None, groups

    async def _grouped(
        self,
        ctx: ComponentContext,
        params: StatsParams,
        mpc: Mpc,
        table: pa.Table,
        me: int,
        values: Any,
        raw: Any,
        their_cols: list[str],
    ) -> list[dict[str, Any]]:
        gb = params.group_by
        assert gb is not None
        key_party = me if ctx.party == gb.party else 1 - me
        receiver_name = ctx.spec.outputs["result"].receivers[0]
        receiver = me if ctx.party == receiver_name else 1 - me
        keys, groups = await self._groups(ctx, table, gb, receiver_name, "stats/groups")
        is_key = ctx.party == gb.party
        value_cols = their_cols if is_key else params.columns.get(ctx.party, [])
        n, m = table.num_rows, len(value_cols)
        second = bool({"var", "std"} & set(params.statistics))
        mine = None
        if not is_key:
            mine = values
            if second:  # sums of squares too, for the variance per group
                if n and np.abs(values).max() >= 2**31:
                    raise DataError("values too large for a variance per group (|v| < 2^31)")
                mine = np.concatenate([values, values * values], axis=1)
        res = await group_sums(
            mpc,
            key_party=key_party,
            keys=keys,
            groups=groups,
            values=mine,
            value_shape=(n, m * (1 + second)),
            receiver=receiver,
            decimals=params.decimals,
            min_group_size=params.min_group_size,
            dp=_group_dp(params, value_cols, squares=second),
        )
        rows: list[dict[str, Any]] = []
        if res is not None:
            for i, g in enumerate(res.groups):
                cnt = float(res.counts[i])
                rows.append(_row("count", "", "", g, cnt))
                for j, c in enumerate(value_cols):
                    total = float(res.sums[i, j])
                    rows.append(_row("sum", c, "", g, total))
                    rows.append(_row("mean", c, "", g, total / cnt))
                    if second:
                        sq = float(res.sums[i, m + j]) * 10.0**-params.decimals
                        var = (sq - total * total / cnt) / (cnt - 1) if cnt > 1 else float("nan")
                        if "var" in params.statistics:
                            rows.append(_row("var", c, "", g, var))
                        if "std" in params.statistics:
                            rows.append(_row("std", c, "", g, float(np.sqrt(max(var, 0.0)))))
        shown = None if res is None else set(res.groups)
        if {"min", "max"} & set(params.statistics) and m:
            ext = await group_extrema(
                mpc,
                key_party=key_party,
                keys=keys,
                groups=len(groups),
                values=None if is_key else values,
                value_shape=(n, m),
                receiver=receiver,
                min_group_size=params.min_group_size,
            )
            if ext is not None and shown is not None:
                scale = 10.0**-params.decimals
                for i, g in enumerate(groups):
                    for j, c in enumerate(value_cols):
                        if g in shown and "min" in params.statistics:
                            rows.append(_row("min", c, "", g, float(ext[0][i, j]) * scale))
                        if g in shown and "max" in params.statistics:
                            rows.append(_row("max", c, "", g, float(ext[1][i, j]) * scale))
        if "histogram" in params.statistics:
            for j, c in enumerate(value_cols):
                edges = params.bins[c]
                bin_keys = None if is_key else _bin_keys(raw[:, j], edges)
                counts = await crosstab(
                    mpc,
                    row_party=key_party,
                    keys=keys if is_key else bin_keys,
                    shape=(n, len(groups), len(edges) - 1),
                    receiver=receiver,
                    min_group_size=params.min_group_size,
                )
                if counts is not None:
                    for i, g in enumerate(groups):
                        for b, label in enumerate(_bin_labels(edges)):
                            rows.append(_row("histogram", c, label, g, float(counts[i, b])))
        return rows

    async def _crosstab(
        self, ctx: ComponentContext, params: StatsParams, mpc: Mpc, table: pa.Table, me: int
    ) -> list[dict[str, Any]]:
        ct = params.crosstab
        assert ct is not None
        receiver_name = ctx.spec.outputs["result"].receivers[0]
        receiver = me if ctx.party == receiver_name else 1 - me
        row_party = me if ctx.party == ct.rows.party else 1 - me
        rk, row_groups = await self._groups(ctx, table, ct.rows, receiver_name, "stats/ct-rows")
        ck, col_groups = await self._groups(ctx, table, ct.columns, receiver_name, "stats/ct-cols")
        counts = await crosstab(
            mpc,
            row_party=row_party,
            keys=rk if ctx.party == ct.rows.party else ck,
            shape=(table.num_rows, len(row_groups), len(col_groups)),
            receiver=receiver,
            min_group_size=params.min_group_size,
        )
        if counts is None:
            return []
        return [
            _row("crosstab", ct.rows.column, ct.columns.column, f"{r}|{c}", float(counts[i, j]))
            for i, r in enumerate(row_groups)
            for j, c in enumerate(col_groups)
        ]

    async def _own_order_stats(
        self,
        params: StatsParams,
        mpc: Mpc,
        me: int,
        receiver: int,
        raw: Any,
        mine: list[str],
        their_cols: list[str],
    ) -> list[dict[str, Any]]:
        """Min, max, median, quantiles and histograms of each party's own columns over the
        aligned rows: computed by the column's owner alone, then shared with the receiver."""
        wanted = set(params.statistics) & {*_ORDER_STATS, "histogram"}
        if not wanted:
            return []
        # medians and quantiles interpolate between values: keep more digits than the data's
        digits = min(params.decimals + 4, 9)
        scale = 10**digits
        out: list[dict[str, Any]] = []
        for owner in (0, 1):
            cols = mine if owner == me else their_cols
            entries = _order_entries(params, cols)
            if not entries:
                continue
            vals = None
            if owner == me:
                if raw.shape[0] == 0:
                    raise DataError("no aligned rows to compute min, max or quantiles over")
                vals = np.concatenate(
                    [_order_values(params, raw[:, j], c) for j, c in enumerate(cols)]
                )
                vals = to_integers(vals, digits)
            shared = await mpc.input(vals, owner, (len(entries),), integer=True)
            got = await mpc.reveal(shared, to=receiver)
            if got is not None:
                for (stat, c, arg), v in zip(entries, got, strict=True):
                    out.append(_row(stat, c, arg, "", float(v) / scale))
        return out

    @staticmethod
    def _read(ctx: ComponentContext, params: StatsParams) -> pa.Table:
        ref = ctx.inputs[ctx.party]
        wanted = [params.id_of(ctx.party), *params.columns.get(ctx.party, [])]
        for gb in (
            params.group_by,
            *((params.crosstab.rows, params.crosstab.columns) if params.crosstab else ()),
        ):
            if gb is not None and gb.party == ctx.party:
                wanted.append(gb.column)
        missing = [c for c in dict.fromkeys(wanted) if c not in ref.columns]
        if missing:
            raise DataError(
                f"stats input of {ctx.party!r} has no column {', '.join(map(repr, missing))}"
            )
        return read_columns(ref, list(dict.fromkeys(wanted)))


def _order_entries(params: StatsParams, cols: list[str]) -> list[tuple[str, str, str]]:
    """(statistic, column, argument) of the order statistics asked of ``cols``, in an order
    both parties derive from the parameters alone."""
    out: list[tuple[str, str, str]] = []
    for c in cols:
        for stat in ("min", "max", "median"):
            if stat in params.statistics:
                out.append((stat, c, ""))
        if "quantile" in params.statistics:
            out += [("quantile", c, f"{q:g}") for q in params.quantiles]
        if "histogram" in params.statistics:
            out += [("histogram", c, label) for label in _bin_labels(params.bins[c])]
    return out


def _order_values(params: StatsParams, col: Any, name: str) -> Any:
    """The values of :func:`_order_entries` for one column, in the same order."""
    out: list[float] = []
    if "min" in params.statistics:
        out.append(float(col.min()))
    if "max" in params.statistics:
        out.append(float(col.max()))
    if "median" in params.statistics:
        out.append(float(np.median(col)))
    if "quantile" in params.statistics:
        out += [float(v) for v in np.quantile(col, params.quantiles)]
    if "histogram" in params.statistics:
        edges = params.bins[name]
        keys = _bin_keys(col, edges)
        out += np.bincount(keys[keys >= 0], minlength=len(edges) - 1).astype(float).tolist()
    return np.array(out)


def _bin_labels(edges: list[float]) -> list[str]:
    last = len(edges) - 2
    return [
        f"[{lo:g}, {hi:g}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]


def _bin_keys(col: Any, edges: list[float]) -> Any:
    """Each value's bin (the last bin includes its upper edge); -1 outside every bin."""
    e = np.asarray(edges, dtype=float)
    keys = np.searchsorted(e, col, side="right") - 1
    keys[col == e[-1]] = len(e) - 2
    keys[(col < e[0]) | (col > e[-1])] = -1
    return keys.astype(np.int64)


def _group_dp(
    params: StatsParams, value_cols: list[str], *, squares: bool = False
) -> tuple[Mechanism, Any] | None:
    """(mechanism, bound of each summed column in the columns' units); a column of squares
    is bounded by B², and its integers carry the scale twice, hence the extra 10^decimals."""
    if params.dp is None:
        return None
    bounds = [params.dp.bounds[c] for c in value_cols]
    sq = [b * b * 10.0**params.decimals for b in bounds] if squares else []
    return params.dp.mechanism_of(), np.array(bounds + sq)


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
