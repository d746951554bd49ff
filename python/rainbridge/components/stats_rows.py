"""The ``stats`` component's result rows: a party's own statistics, the cross-party
covariances decoded from the engine's block, and the long result table.

A row is ``statistic, column, column2, grouped, group, value``; ``value`` is None where
SQL gives NULL (an aggregate over no present value, a variance of fewer than two, a
correlation with a constant), an exact Python integer for integer results (COUNT, and SUM,
MIN, MAX of integer columns, exact at any size), a float otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rainbridge.components.stats_columns import (
    Column,
    _centered,
    extreme,
    histogram,
    mean_of,
    pair_moments,
    quantiles,
    std_of,
    sum_of,
    var_of,
)
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc.encoding import _LOG_TERM, stochastic_round

#: the cross-party correlation's promised absolute precision
CORR_TOLERANCE = 1e-6
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
#: what a row's ``statistic`` may be (the statistics, and the cross tabulation's cells and the
#: deviations parties exchange for covariances)
_STATS = {*get_args(Statistic), "crosstab", "sd"}


def row(
    stat: str,
    col: str,
    col2: str,
    value: Any,
    *,
    group: Any = "",
    grouped: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """One result row; ``note`` says why a value is withheld (its value is then None)."""
    out = {
        "statistic": stat,
        "column": col,
        "column2": col2,
        "grouped": grouped,
        "group": group,
        "value": None if note else value,
    }
    if note:
        out["note"] = note
    return out


def checked_row(r: Any) -> dict[str, Any]:
    """A row the other party sent, checked for shape and types."""
    ok = (
        isinstance(r, dict)
        and r.get("statistic") in _STATS
        and isinstance(r.get("column"), str)
        and isinstance(r.get("column2"), str)
        and isinstance(r.get("grouped"), bool)
        and (r.get("value") is None or type(r.get("value")) in (int, float))
    )
    if not ok:
        raise ParameterMismatchError("the other party sent a malformed statistics row")
    v = r["value"]
    if isinstance(v, float) and not math.isfinite(v):
        raise ParameterMismatchError("the other party sent a non-finite statistic")
    note = r.get("note")
    return row(
        r["statistic"],
        r["column"],
        r["column2"],
        v,
        group=r.get("group", ""),
        grouped=r["grouped"],
        note=str(note)[:1000] if note else None,
    )


def bin_labels(edges: list[float]) -> list[str]:
    last = len(edges) - 2
    return [
        f"[{lo:g}, {hi:g}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]


def own_rows(
    cols: list[Column],
    wanted: Callable[[str], set[str]],
    qs: list[float],
    bins: dict[str, list[float]],
) -> list[dict[str, Any]]:
    """The statistics ``wanted(column)`` of this party's own columns, and covariances among
    them, computed here over the aligned rows (NULLs skipped, pairs where both are
    present)."""
    out: list[dict[str, Any]] = []
    for c in cols:
        want = wanted(c.name)
        if "count" in want:
            out.append(row("count", c.name, "", c.count))
        if "sum" in want:
            out.append(row("sum", c.name, "", sum_of(c)))
        if "mean" in want:
            out.append(row("mean", c.name, "", mean_of(c)))
        if "var" in want:
            out.append(row("var", c.name, "", var_of(c)))
        if "std" in want:
            out.append(row("std", c.name, "", std_of(c)))
        for stat in ("min", "max"):
            if stat in want:
                out.append(row(stat, c.name, "", extreme(c, stat)))
        if "median" in want:
            out.append(row("median", c.name, "", quantiles(c, [0.5])[0]))
        if "quantile" in want:
            for q, v in zip(qs, quantiles(c, qs), strict=True):
                out.append(row("quantile", c.name, f"{q:g}", v))
        if "histogram" in want:
            for label, cnt in zip(
                bin_labels(bins[c.name]), histogram(c, bins[c.name]), strict=True
            ):
                out.append(row("histogram", c.name, label, cnt))
    paired = [c for c in cols if {"cov", "corr"} & wanted(c.name)]
    if paired:
        for a, b in itertools.product(paired, paired):
            if a.name == b.name:
                var = var_of(a)
                out.append(row("cov", a.name, a.name, var))
                out.append(row("corr", a.name, a.name, 1.0 if var else None))
            else:
                cov, corr = pair_moments(a, b)
                out.append(row("cov", a.name, b.name, cov))
                out.append(row("corr", a.name, b.name, corr))
    return out


def order_rows(
    rows: list[dict[str, Any]], names: list[str], statistics: Sequence[str], n: int
) -> list[dict[str, Any]]:
    """The ungrouped rows in a stable order: COUNT(*), then per column (party 0's first),
    then the covariance and correlation matrices."""
    want = set(statistics)
    by_col: dict[str, list[dict[str, Any]]] = {}
    mats: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r["statistic"] in ("cov", "corr"):
            mats[(r["statistic"], r["column"], r["column2"])] = r
        elif r["statistic"] != "sd":
            by_col.setdefault(r["column"], []).append(r)
    out = [row("count", "", "", n)] if "count" in want else []
    for c in names:
        out += by_col.get(c, [])
    for stat in ("cov", "corr"):
        if stat in want:
            for a, b in itertools.product(names, names):
                got = mats.get((stat, a, b)) or mats.get((stat, b, a))
                if got is not None:
                    out.append(row(stat, a, b, got["value"], note=got.get("note")))
    return out


def cross_bits(n: int) -> int:
    """Fractional bits of standardized values so that Σ z·w over n rows, at most n·2^2f by
    Cauchy–Schwarz (plus the rounding's step), stays below 2^62."""
    return max(1, (61 - math.ceil(math.log2(n + 2))) // 2)


def standardized(
    cols: list[Column], f: int, masks: bool
) -> tuple[npt.NDArray[np.int64], dict[str, float | None]]:
    """This party's columns for the cross block: per column ``Z`` (the value standardized by
    this party's own mean and deviation, at 2^f, stochastically rounded; 0 where NULL), and
    with ``masks`` also ``Z²`` and the presence mask, for pairs with NULLs on either side.
    Also each column's deviation (None when it has fewer than two values).

    Standardizing is what makes the range independent of the data: Σz² = n - 1 whatever
    the values' magnitude, and the engine's sums stay inside the ring."""
    mats: list[npt.NDArray[np.int64]] = []
    sds: dict[str, float | None] = {}
    for c in cols:
        sd = std_of(c)
        sds[c.name] = sd
        z = np.zeros(len(c.valid), dtype=np.float64)
        if sd:
            z[c.valid] = _centered(c) / sd
        big = stochastic_round(np.ldexp(z, f))
        big[~c.valid] = 0
        mats.append(big)
        if masks:
            mats.append(big * big)
            mats.append(c.valid.astype(np.int64))
    n = len(cols[0].valid) if cols else 0
    return (np.column_stack(mats) if mats else np.zeros((n, 0), np.int64)), sds


def cross_rows(
    block: npt.NDArray[np.int64],
    left: list[str],
    right: list[str],
    sds: dict[str, Any],
    f: int,
    masks: bool,
    statistics: Sequence[str],
    rows: int,
) -> list[dict[str, Any]]:
    """COVAR and CORR of each (left, right) pair from the revealed cross block, with a bound
    on what the rounding changed (holding with probability ≥ 1 - 2^-40); a pair whose bound
    exceeds the stated precision is refused rather than answered."""
    k = 3 if masks else 1
    out: list[dict[str, Any]] = []
    b = block.astype(object)  # Python integers: products of sums exceed 64 bits
    for i, a in enumerate(left):
        for j, c in enumerate(right):
            moments = (
                (
                    int(b[k * i + 2, k * j + 2]),  # rows where both are present
                    int(b[k * i, k * j]),
                    int(b[k * i, k * j + 2]),
                    int(b[k * i + 2, k * j]),
                    int(b[k * i + 1, k * j + 2]),
                    int(b[k * i + 2, k * j + 1]),
                )
                if masks
                else None
            )
            note = None
            try:
                cov, corr = pair_from_block(
                    a, c, int(b[k * i, k * j]), moments, sds.get(a), sds.get(c), f, rows
                )
            except DataError as exc:
                cov = corr = None
                note = str(exc)
            if "cov" in statistics:
                out.append(row("cov", a, c, cov, note=note))
            if "corr" in statistics:
                out.append(row("corr", a, c, corr, note=note))
    return out


def pair_from_block(
    a: str,
    c: str,
    zz: int,
    moments: tuple[int, int, int, int, int, int] | None,
    sd_a: float | None,
    sd_b: float | None,
    f: int,
    rows: int,
) -> tuple[float | None, float | None]:
    """(covariance, correlation) of one cross pair; NULL as SQL has it."""
    if sd_a is None or sd_b is None:
        return None, None  # fewer than two values in a column
    half = math.sqrt(_LOG_TERM / 2)
    if moments is None:
        # no NULL anywhere: z was standardized over all rows, Σz = 0 and Σz² = n - 1, so
        # Σ z_a z_b / (n - 1) is the correlation; the rounding errors (under one step,
        # independent, zero-mean) move Σ Z_a Z_b / 2^2f by at most 2·half·sqrt(n-1)·2^-f
        if rows < 2:
            return None, None
        if sd_a == 0 or sd_b == 0:
            return 0.0, None
        corr = zz * 2.0 ** (-2 * f) / (rows - 1)
        bound = (2 * half * math.sqrt(rows - 1) * 2.0**-f + rows * 2.0 ** (-2 * f)) / (rows - 1)
        _check_corr(a, c, bound, f)
        corr = max(-1.0, min(1.0, corr))
        return corr * sd_a * sd_b, corr
    n, zz, sa, sb, saa, sbb = moments
    if n < 2:
        return None, None
    if sd_a == 0 or sd_b == 0:
        return 0.0, None
    # the exact moments of the rounded values over the rows where both are present
    cxy = n * zz - sa * sb
    vx = n * saa - sa * sa
    vy = n * sbb - sb * sb
    if vx <= 0 or vy <= 0:
        return 0.0, None  # constant over the rows both have: no correlation
    corr = cxy / math.sqrt(float(vx) * float(vy))
    # rounding moves each normalized vector by at most half·‖e‖/‖x - x̄‖ to first order
    bound = 2 * half * (math.sqrt(n / vx) + math.sqrt(n / vy)) + n * n / vx + n * n / vy
    _check_corr(a, c, bound, f)
    cov = cxy / (n * (n - 1)) * 2.0 ** (-2 * f) * sd_a * sd_b
    return cov, max(-1.0, min(1.0, corr))


def _check_corr(a: str, c: str, bound: float, f: int) -> None:
    if bound > CORR_TOLERANCE:
        raise DataError(
            f"CORR({a}, {c}): the answer's error bound {bound:.2g} exceeds "
            f"{CORR_TOLERANCE:g} (the rows where both are present are few or narrow against "
            "the columns' spread); filter the NULLs out first or ask over more rows"
        )


def result_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The long table written to the receiver's output: ``value`` as float64 (NULL where
    SQL gives NULL), ``exact``, the decimal text of every integer result, and ``note``, why
    a value is withheld."""
    return pa.table(
        {
            "statistic": pa.array([r["statistic"] for r in rows], pa.string()),
            "column": pa.array([r["column"] for r in rows], pa.string()),
            "column2": pa.array([r["column2"] for r in rows], pa.string()),
            "grouped": pa.array([bool(r.get("grouped")) for r in rows], pa.bool_()),
            "group": pa.array(
                [None if r["group"] is None else str(r["group"]) for r in rows], pa.string()
            ),
            "value": pa.array(
                [None if r["value"] is None else float(r["value"]) for r in rows], pa.float64()
            ),
            "exact": pa.array(
                [str(r["value"]) if isinstance(r["value"], int) else None for r in rows],
                pa.string(),
            ),
            "note": pa.array([r.get("note") for r in rows], pa.string()),
        }
    )
