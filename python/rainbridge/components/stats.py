"""The ``stats`` component: joint statistics over two parties' aligned tables (安全统计).

Inputs: two data parties, each with a table aligned row by row with the other's (a PSI
``intersection`` both received: same IDs, same order — checked before anything else), and
optionally a third party with ``role: dealer`` that serves correlated randomness and sees no
data. Without a dealer the two parties make that randomness themselves by OT extension
(:mod:`rainbridge.protocols.mpc.ot`): no third party to trust, much slower.
Parameters name each data party's columns and the statistics (``column_statistics`` narrows
them per column); the single receiver of the ``result`` output learns them and nothing else.
Optionally ``group_by`` a column of one data party (its distinct values are the groups, NULL
one of them) with statistics of the other party's columns; groups smaller than
``min_group_size`` are suppressed.

Exact or refused. Every statistic of one party's own columns is computed by that party
alone, exactly (integers as integers at any size; reals in float64), and given to the
receiver — what sharing then revealing it would give, without the fixed-point range.
Covariances and correlations across the parties are one product of the two parties'
*standardized* columns (each owner centers and scales its own), so the engine's range no
longer depends on the data's magnitude; per-group sums use encodings each owner chooses from
its own data (:mod:`rainbridge.protocols.mpc.encoding`). Every answer is exact or within a
stated bound; a value whose bound would be exceeded is withheld with the reason (``note``),
and a query that needs it is refused. NULLs are skipped as SQL skips them (NaN is refused).
What the receiver learns beyond the answer: the encodings' scales (a power of two of a
column's magnitude, or its number of decimal places) and whether a column holds NULLs.

With ``dp`` (``epsilon`` and a bound per column), values are clipped to their bounds by
their owners and the party that does not receive adds Laplace noise inside the MPC
(:mod:`rainbridge.protocols.mpc.dp`); a dataset's owner may require it and cap the total ε
spent on the dataset (``rainbridge dataset policy --dp-budget``). The values are then
encoded at ``10^decimals`` and the range is checked against the public bounds first.

The result is a long table — ``statistic, column, column2, grouped, group, value, exact,
note`` — in CSV or Parquet at the receiver, and the same rows (up to 100,000; beyond, the
summary says so) in the job's result summary.
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
from rainbridge.components.stats_columns import Column, read_column
from rainbridge.components.stats_groups import crosstab_rows, grouped_rows, other_party
from rainbridge.components.stats_rows import (
    Statistic,
    checked_row,
    cross_bits,
    cross_rows,
    order_rows,
    own_rows,
    result_table,
    row,
    standardized,
)
from rainbridge.components.twoparty import (
    AlignedParams,
    check_roles,
    open_session,
    roles,
    serve_dealer,
)
from rainbridge.data import read_columns
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.dp import Mechanism, clip
from rainbridge.protocols.mpc.stats import (
    cross_block,
    moments,
    to_integers,
)

#: result rows kept in the job's summary; the output file always holds all of them
MAX_SUMMARY_ROWS = 100_000
#: statistics of a column that its owner computes over the aligned rows by itself (then
#: shares with the receiver) when there is no cross-party grouping
_ORDER_STATS = ("min", "max", "median", "quantile")
MAX_BINS = 100


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
    statistics: list[Statistic] = Field(
        default=["count", "mean", "std"], min_length=1, description="what to compute of each column"
    )
    group_by: GroupBy | None = Field(
        default=None, description="one party's column whose values group the other's statistics"
    )
    decimals: int = Field(
        default=2, ge=0, le=6, description="with dp: the decimal places values are encoded at"
    )
    min_group_size: int = Field(
        default=1, ge=1, description="groups with fewer rows are suppressed"
    )
    quantiles: list[float] = Field(
        default=[0.25, 0.5, 0.75], min_length=1, max_length=99, description="for 'quantile'"
    )
    bins: dict[str, list[float]] = Field(
        default_factory=dict, description="histogram bin edges per column (increasing)"
    )
    crosstab: Crosstab | None = Field(
        default=None, description="rows per pair of two parties' values (one column each)"
    )
    dp: DpParams | None = Field(
        default=None, description="differential privacy: noise added inside the MPC"
    )
    column_statistics: dict[str, list[Statistic]] = Field(
        default_factory=dict,
        description="only these statistics of a column (a column not named: all of them); "
        "nothing more is computed or revealed",
    )

    def of(self, column: str) -> set[str]:
        """The statistics asked of ``column``."""
        return set(self.column_statistics.get(column, self.statistics))


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
        named = [set(c) for c in params.columns.values()]
        both = sorted(named[0] & named[1]) if len(named) == 2 else []
        if both:
            # the result names a statistic by its column: two parties' columns of one name
            # would give two rows the reader could not tell apart
            raise ComponentParamError(
                f"column {both[0]!r} is named at both data parties; rename one", where
            )
        for col, stats in params.column_statistics.items():
            if col not in used or not set(stats) <= set(params.statistics):
                raise ComponentParamError(
                    f"column_statistics of {col!r}: a listed column, and statistics among "
                    "'statistics'",
                    where,
                )
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
        # every column read and checked (types, NaN) before the first message
        cols = [read_column(table, c) for c in mine]
        if params.dp is not None:
            self._check_dp_range(params, cols, n)
        hello = {"columns": mine, "nulls": any(c.has_nulls for c in cols)}
        # agree on the alignment and the shapes before any share moves
        session = await open_session(ctx, table, params.id_of(ctx.party), hello, "stats", params.ot)
        mpc, me = session.mpc, session.me
        their_cols = [str(c) for c in session.their_hello.get("columns", [])][:10_000]
        their_nulls = bool(session.their_hello.get("nulls", False))
        rows: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        if params.dp is not None:
            rows += await self._dp_moments(params, mpc, me, receiver, cols, n, their_cols)
        else:
            rows += await self._moments(
                ctx, params, mpc, me, receiver, cols, n, their_cols, their_nulls
            )
        ctx.progress(0.7)
        if params.group_by is not None:
            rows += await grouped_rows(ctx, params, mpc, table, me, cols, their_cols, info)
            ctx.progress(0.9)
        if params.crosstab is not None:
            rows += await crosstab_rows(ctx, params, mpc, table, me)
        await mpc.close()
        ctx.progress(1.0)
        summary: dict[str, Any] = {"rows": n, "receiver": receiver_name, **info}
        if ctx.party == receiver_name:
            summary["outputs"] = {"result": ctx.write_output("result", result_table(rows))}
            # every row up to a bound that keeps the job record small; a longer result says
            # so, and the whole table is the output (GET …/outputs/stats/result, paged)
            summary["result"] = rows[:MAX_SUMMARY_ROWS]
            summary["result_rows"] = len(rows)
            if len(rows) > MAX_SUMMARY_ROWS:
                summary["result_truncated"] = True
        return summary

    @staticmethod
    def _check_dp_range(params: StatsParams, cols: list[Column], n: int) -> None:
        """With differential privacy the values are clipped to public bounds and encoded at
        10^decimals: refuse before any message when the sums of squares could overflow."""
        assert params.dp is not None
        for col in cols:
            if col.has_nulls:
                raise DataError(
                    f"column {col.name!r} has {len(col.valid) - col.count} NULL values; "
                    "differential privacy needs every value present (filter them out)"
                )
            b = params.dp.bounds[col.name] * 10.0**params.decimals
            if b * b * max(n, 1) >= 2.0**62:
                raise DataError(
                    f"column {col.name!r}: the dp bound {params.dp.bounds[col.name]:g} at "
                    f"{params.decimals} decimals over {n} rows overflows the exact range of "
                    "sums of squares (2^62); lower the bound or the decimals"
                )

    async def _exchange_rows(
        self, ctx: ComponentContext, me: int, receiver: int, mine: list[dict[str, Any]], tag: str
    ) -> list[dict[str, Any]]:
        """The non-receiver's statistics of its own columns go to the receiver (what the
        receiver would get from sharing and revealing them); the receiver's stay home."""
        other = next(
            p for p in ctx.spec.inputs if p != ctx.party and ctx.spec.inputs[p].role is None
        )
        ch = ctx.channels[other]
        if me != receiver:
            await ch.send_json(tag, {"rows": mine})
            return []
        got = await ch.recv_json(tag)
        theirs = got.get("rows") if isinstance(got, dict) else None
        if not isinstance(theirs, list) or len(theirs) > 1_000_000:
            raise ParameterMismatchError("the other party sent malformed statistics")
        return [checked_row(r) for r in theirs]

    async def _moments(
        self,
        ctx: ComponentContext,
        params: StatsParams,
        mpc: Mpc,
        me: int,
        receiver: int,
        cols: list[Column],
        n: int,
        their_cols: list[str],
        their_nulls: bool,
    ) -> list[dict[str, Any]]:
        """Every statistic of one party's columns is computed by that party alone, exactly,
        and given to the receiver; only covariances and correlations across the parties
        need the engine: a product of the two parties' standardized columns."""
        wanted = set(params.statistics)
        own = own_rows(cols, params.of, params.quantiles, params.bins)
        theirs = await self._exchange_rows(ctx, me, receiver, own, "stats/own")
        crossed: list[dict[str, Any]] = []
        both = all(_crossed(params, p) for p in roles(ctx.spec)[0])
        if {"cov", "corr"} & wanted and both:
            crossed = await self._cross(ctx, params, mpc, me, receiver, cols, n, their_nulls)
        if me != receiver:
            return []
        mine = [c.name for c in cols]
        names = mine + their_cols if me == 0 else their_cols + mine
        return order_rows(own + theirs + crossed, names, params.statistics, n)

    async def _cross(
        self,
        ctx: ComponentContext,
        params: StatsParams,
        mpc: Mpc,
        me: int,
        receiver: int,
        cols: list[Column],
        n: int,
        their_nulls: bool,
    ) -> list[dict[str, Any]]:
        """COVAR and CORR of each of party 0's columns with each of party 1's."""
        masks = their_nulls or any(c.has_nulls for c in cols)
        f = cross_bits(n)
        mine = _crossed(params, ctx.party)
        mat, sds = standardized([c for c in cols if c.name in mine], f, masks)
        theirs = _crossed(params, other_party(ctx))
        their_width = len(theirs) * (3 if masks else 1)
        block = await cross_block(mpc, mat, their_width, receiver)
        # the receiver needs the other party's standard deviations to turn a correlation
        # into a covariance; for a correlation alone, only whether it is 0 or missing (what
        # the NULL of the answer tells anyway)
        cov = "cov" in params.statistics
        sd_rows = [
            row("sd", c, "", v if cov or v is None else float(v > 0)) for c, v in sds.items()
        ]
        got = await self._exchange_rows(ctx, me, receiver, sd_rows, "stats/sd")
        if block is None:
            return []
        all_sd = {r["column"]: r["value"] for r in got} | sds
        left, right = (mine, theirs) if me == 0 else (theirs, mine)
        return cross_rows(block, left, right, all_sd, f, masks, params.statistics, n)

    async def _dp_moments(
        self,
        params: StatsParams,
        mpc: Mpc,
        me: int,
        receiver: int,
        cols: list[Column],
        n: int,
        their_cols: list[str],
    ) -> list[dict[str, Any]]:
        """Differentially private moments: clipped values at 10^decimals, the noise added
        inside the engine by the party that does not receive (range checked beforehand)."""
        assert params.dp is not None
        mine = [c.name for c in cols]
        raw = np.column_stack([c.values.astype(np.float64) for c in cols]) if cols else None
        raw = (
            clip(raw, [params.dp.bounds[c] for c in mine]) if raw is not None else np.zeros((n, 0))
        )
        order = (mine + their_cols) if me == 0 else (their_cols + mine)
        dp_all = (params.dp.mechanism_of(), np.array([params.dp.bounds[c] for c in order]))
        res = await moments(
            mpc,
            to_integers(raw, params.decimals),
            mine,
            (n, len(their_cols)),
            their_cols,
            receiver,
            (params.decimals, params.decimals),
            dp=dp_all,
        )
        return [] if res is None else _moment_rows(res, params.statistics)

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


def _crossed(params: StatsParams, party: str) -> list[str]:
    """The columns of ``party`` whose covariances or correlations are asked."""
    return [c for c in params.columns.get(party, []) if {"cov", "corr"} & params.of(c)]


def _moment_rows(res: Any, statistics: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of the moments released under differential privacy (noisy sums)."""
    rows: list[dict[str, Any]] = []
    if "count" in statistics:
        rows.append(row("count", "", "", int(res.n)))  # the joined rows
    mean, var = res.mean(), res.variance()
    cov, corr = res.covariance(), res.correlation()
    for i, c in enumerate(res.names):
        if "count" in statistics:
            rows.append(row("count", c, "", int(res.n)))
        if "sum" in statistics:
            rows.append(row("sum", c, "", float(res.sums[i])))
        if "mean" in statistics:
            rows.append(row("mean", c, "", float(mean[i])))
        if "var" in statistics:
            rows.append(row("var", c, "", float(var[i])))
        if "std" in statistics:
            rows.append(row("std", c, "", float(np.sqrt(max(var[i], 0.0)))))
    for stat, mat in (("cov", cov), ("corr", corr)):
        if stat in statistics:
            for i, a in enumerate(res.names):
                for j, b in enumerate(res.names):
                    v = float(mat[i, j])
                    rows.append(row(stat, a, b, v if np.isfinite(v) else None))
    return rows
