"""GROUP BY for the ``stats`` component: one party's column makes the groups (NULL one of
them), the other party's columns are aggregated per group — counts and sums by one product
of private matrices (in Z_2^128 for integers too large for 64-bit sums), MIN/MAX by a secure
comparison tree, histograms and cross tabulations by products of indicators — each value
exact or within its stated bound (:mod:`.stats_plans`), or withheld with the reason.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rainbridge.components.base import ComponentContext
from rainbridge.components.stats_columns import Column, bin_keys
from rainbridge.components.stats_plans import (
    ColumnPlan,
    GroupResult,
    extremum_matrix,
    extremum_value,
    value_matrix,
)
from rainbridge.components.stats_rows import bin_labels, row
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.dp import Mechanism
from rainbridge.protocols.mpc.encoding import Encoding
from rainbridge.protocols.mpc.stats import crosstab, group_extrema, group_sums
from rainbridge.protocols.mpc.wide import group_sums_wide

if TYPE_CHECKING:
    from rainbridge.components.stats import GroupBy, StatsParams

MAX_GROUPS = 1000


def group_keys(table: pa.Table, column: str) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Each row's group index and the groups' labels: the distinct values in order, NULL
    last as a group of its own (as SQL's GROUP BY has it)."""
    col = table.column(column)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    distinct = pc.unique(col.drop_null() if col.null_count else col)
    if isinstance(distinct, pa.ChunkedArray):
        distinct = distinct.combine_chunks()
    distinct = distinct.take(pc.sort_indices(distinct))
    groups = len(distinct) + (1 if col.null_count else 0)
    if groups > MAX_GROUPS:
        raise DataError(f"column {column!r} has over {MAX_GROUPS} distinct values")
    idx = pc.index_in(col, value_set=distinct)
    keys = np.asarray(idx.fill_null(len(distinct)).to_numpy(), dtype=np.int64)
    labels = [_label(v) for v in distinct.to_pylist()]
    if col.null_count:
        labels.append(None)
    return keys, labels


def _label(v: Any) -> Any:
    """A group key as JSON carries it: numbers, text and booleans as they are, others as
    text (dates, times, decimals)."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


async def exchange_groups(
    ctx: ComponentContext, table: pa.Table, gb: GroupBy, receiver: str, tag: str
) -> tuple[Any, list[Any]]:
    """The group keys (at the key party; None elsewhere) and the groups' labels.

    The number of groups shapes the computation, so the other party learns it; the
    labels go to it only when it is the receiver (they are the key party's data).
    """
    ch = ctx.channels[other_party(ctx)]
    if ctx.party == gb.party:
        keys, groups = group_keys(table, gb.column)
        await ch.send_json(
            tag, {"count": len(groups), "labels": groups if receiver != ctx.party else None}
        )
        return keys, groups
    got = await ch.recv_json(tag)
    count = int(got.get("count", 0)) if isinstance(got, dict) else 0
    if not 0 <= count <= MAX_GROUPS:
        raise ParameterMismatchError("the other party announced an invalid group count")
    labels = got.get("labels")
    ok = (
        isinstance(labels, list)
        and len(labels) == count
        and all(v is None or type(v) in (str, int, float, bool) for v in labels)
    )
    return None, (list(labels) if ok else [str(i) for i in range(count)])


async def grouped_rows(
    ctx: ComponentContext,
    params: StatsParams,
    mpc: Mpc,
    table: pa.Table,
    me: int,
    cols: list[Column],
    their_cols: list[str],
    info: dict[str, Any],
) -> list[dict[str, Any]]:
    gb = params.group_by
    assert gb is not None
    key_party = me if ctx.party == gb.party else 1 - me
    receiver_name = ctx.spec.outputs["result"].receivers[0]
    receiver = me if ctx.party == receiver_name else 1 - me
    keys, groups = await exchange_groups(ctx, table, gb, receiver_name, "stats/groups")
    is_key = ctx.party == gb.party
    value_cols = their_cols if is_key else [c.name for c in cols]
    per = {c: params.of(c) for c in value_cols}
    ch = ctx.channels[other_party(ctx)]
    n = table.num_rows
    dp = params.dp is not None
    plans: list[ColumnPlan] = []
    mat = None
    if not is_key:
        nulls = any(c.has_nulls for c in cols)
        vm = value_matrix(cols, per, n, params.decimals if dp else None, masks=nulls)
        mat, plans = vm.matrix(n), vm.plans
        wide_mat = vm.wide_matrix(n)
        # the key party needs the widths (they shape the products); the plan with the
        # encodings goes to the receiver only
        await ch.send_json(
            "stats/plan",
            {
                "width": mat.shape[1],
                "wide": wide_mat.shape[1],
                "plans": [p.to_json() for p in plans] if receiver != me else None,
            },
        )
        width, wide = mat.shape[1], wide_mat.shape[1]
    else:
        wide_mat = None
        got = await ch.recv_json("stats/plan")
        width = int(got.get("width", -1)) if isinstance(got, dict) else -1
        wide = int(got.get("wide", -1)) if isinstance(got, dict) else -1
        if not 0 <= width <= 4 * len(value_cols) or not 0 <= wide <= len(value_cols):
            raise ParameterMismatchError("the other party announced an invalid plan")
        if me == receiver:
            raw_plans = got.get("plans")
            if not isinstance(raw_plans, list) or len(raw_plans) != len(value_cols):
                raise ParameterMismatchError("the other party sent no statistics plan")
            plans = [ColumnPlan.from_json(p, width, wide) for p in raw_plans]
    res = await group_sums(
        mpc,
        key_party=key_party,
        keys=keys,
        groups=groups,
        values=mat,
        value_shape=(n, width),
        receiver=receiver,
        decimals=None,
        min_group_size=params.min_group_size,
        dp=_group_dp(params, value_cols),
        noise_decimals=params.decimals,
    )
    wide_sums = None
    if wide:  # integers too large for 64-bit sums: exact in Z_2^128
        wide_sums = await group_sums_wide(
            ch,
            party=me,
            key_party=key_party,
            keys=keys,
            groups=len(groups),
            values=wide_mat,
            shape=(n, wide),
            receiver=receiver,
            min_group_size=params.min_group_size,
            prefix="stats/wide",
        )
    rows: list[dict[str, Any]] = []
    present: dict[tuple[int, int], int] = {}
    if res is not None:
        for i, g in enumerate(res.groups):
            cnt = int(res.counts[i])
            rows.append(row("count", "", "", cnt, group=g, grouped=True))
            big = wide_sums[1][groups.index(g)] if wide_sums is not None else []
            result = GroupResult(g, cnt, [int(x) for x in res.sums[i]], big)
            for j, plan in enumerate(plans):
                present[(groups.index(g), j)] = result.present(plan, dp)
                values, notes = result.column(plan, per[plan.name], dp)
                for stat, v in values.items():
                    rows.append(
                        row(stat, plan.name, "", v, group=g, grouped=True, note=notes.get(stat))
                    )
    shown = None if res is None else {groups.index(g) for g in res.groups}
    if res is not None and len(res.groups) < len(groups):
        info["suppressed_groups"] = len(groups) - len(res.groups)
        info["suppressed_reason"] = f"fewer than {params.min_group_size} rows"
    ext = [c for c in value_cols if {"min", "max"} & per[c]]
    if ext and groups and n:
        rows += await _group_extrema(
            params,
            mpc,
            key_party,
            receiver,
            keys,
            groups,
            [c for c in cols if c.name in ext],
            is_key,
            n,
            (value_cols, ext),
            plans,
            present,
            shown,
        )
    for j, c in enumerate(value_cols):
        if "histogram" in per[c]:
            edges = params.bins[c]
            counts = await crosstab(
                mpc,
                row_party=key_party,
                keys=keys if is_key else bin_keys(cols[j], edges),
                shape=(n, len(groups), len(edges) - 1),
                receiver=receiver,
                min_group_size=params.min_group_size,
            )
            if counts is not None:
                for i, g in enumerate(groups):
                    for b, label in enumerate(bin_labels(edges)):
                        rows.append(
                            row("histogram", c, label, int(counts[i, b]), group=g, grouped=True)
                        )
    return rows


async def _group_extrema(
    params: StatsParams,
    mpc: Mpc,
    key_party: int,
    receiver: int,
    keys: Any,
    groups: list[Any],
    cols: list[Column],
    is_key: bool,
    n: int,
    names: tuple[list[str], list[str]],
    plans: list[ColumnPlan],
    present: dict[tuple[int, int], int],
    shown: set[int] | None,
) -> list[dict[str, Any]]:
    """MIN and MAX per group of the value columns ``names[1]`` (of ``names[0]``)."""
    all_cols, value_cols = names
    values = valid = None
    encs: list[Encoding] = []
    if not is_key:
        values, encs = extremum_matrix(cols)
        valid = np.column_stack([c.valid for c in cols])
    ext = await group_extrema(
        mpc,
        key_party=key_party,
        keys=keys,
        groups=len(groups),
        values=values,
        value_shape=(n, len(value_cols)),
        receiver=receiver,
        min_group_size=params.min_group_size,
        valid=valid,
    )
    ch_encs = await _extremum_encodings(mpc, receiver, encs, len(value_cols))
    if ext is None or shown is None:
        return []
    out: list[dict[str, Any]] = []
    for i in sorted(shown):
        for j, c in enumerate(value_cols):
            at = all_cols.index(c)
            has = present.get((i, at), 0) > 0
            is_int = plans[at].is_int if plans else False
            for stat, arr in (("min", ext[0]), ("max", ext[1])):
                if stat in params.of(c):
                    v = extremum_value(int(arr[i, j]), ch_encs[j], is_int) if has else None
                    out.append(row(stat, c, "", v, group=groups[i], grouped=True))
    return out


async def _extremum_encodings(
    mpc: Mpc, receiver: int, encs: list[Encoding], m: int
) -> list[Encoding]:
    """The value party's MIN/MAX encodings, told to the receiver when that is the key
    party."""
    if encs:  # the value party
        if mpc.party != receiver:
            await mpc.ch.send_json("stats/ext", [e.to_json() for e in encs])
        return encs
    if mpc.party != receiver:
        return []
    got = await mpc.ch.recv_json("stats/ext")
    try:
        out = [Encoding.from_json(e) for e in got]
    except (TypeError, ValueError):
        raise ParameterMismatchError("the other party sent malformed encodings") from None
    if len(out) != m:
        raise ParameterMismatchError("the other party sent the wrong number of encodings")
    return out


async def crosstab_rows(
    ctx: ComponentContext, params: StatsParams, mpc: Mpc, table: pa.Table, me: int
) -> list[dict[str, Any]]:
    ct = params.crosstab
    assert ct is not None
    receiver_name = ctx.spec.outputs["result"].receivers[0]
    receiver = me if ctx.party == receiver_name else 1 - me
    row_party = me if ctx.party == ct.rows.party else 1 - me
    rk, row_groups = await exchange_groups(ctx, table, ct.rows, receiver_name, "stats/ct-rows")
    ck, col_groups = await exchange_groups(ctx, table, ct.columns, receiver_name, "stats/ct-cols")
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
        row(
            "crosstab",
            ct.rows.column,
            ct.columns.column,
            int(counts[i, j]),
            group=f"{r}|{c}",
            grouped=True,
        )
        for i, r in enumerate(row_groups)
        for j, c in enumerate(col_groups)
    ]


def other_party(ctx: ComponentContext) -> str:
    return next(p for p in ctx.spec.inputs if p != ctx.party and ctx.spec.inputs[p].role is None)


def _group_dp(params: StatsParams, value_cols: list[str]) -> tuple[Mechanism, Any] | None:
    """(mechanism, bound of each summed column in its integers' units over 10^decimals),
    in the order of :func:`value_matrix`'s columns under dp: the values, then their squares
    where a variance is asked (bounded by B², whose integers carry the scale twice, hence
    the extra 10^decimals)."""
    if params.dp is None:
        return None
    bounds: list[float] = []
    for c in value_cols:
        b = params.dp.bounds[c]
        bounds.append(b)
        if {"var", "std"} & params.of(c):
            bounds.append(b * b * 10.0**params.decimals)
    return params.dp.mechanism_of(), np.array(bounds)
