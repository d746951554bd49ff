"""What the value party of a GROUP BY computes on, and how the receiver reads it back: the
``stats`` component's per-group sums, exactly or within a stated bound — or refused.

The value party encodes each column itself (:mod:`rainbridge.protocols.mpc.encoding`) and
builds, per column, the integer columns whose per-group sums answer the query:

* ``M`` — 1 where the value is present: COUNT(col) per group, and which groups are all NULL;
* ``S`` — the encoded value: SUM and AVG (exact for integers and decimals);
* ``D``, ``D²`` — the encoded value minus an integer near its mean, and its exact square:
  VARIANCE and STDDEV as the exact variance of the encoded values (centering keeps the
  squares small; the shift cancels out, so it is never sent).

The key party's one-hot indicators times these columns are one product of two private
matrices (:func:`rainbridge.protocols.mpc.stats.group_sums`). An integer column whose sums
could pass 2^62 is summed instead in Z_2^128 (:mod:`rainbridge.protocols.mpc.wide`), exact
at any size. The receiver decodes every
result with exact rational arithmetic, attaches the encoding's error bound and refuses a
result whose bound exceeds the documented precision (1e-9 relative for SUM/AVG of reals,
1e-6 relative for VARIANCE/STDDEV). MIN and MAX per group use the secure comparison tree
(:func:`rainbridge.protocols.mpc.stats.group_extrema`) on an encoding below 2^60.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.components.stats_columns import Column
from rainbridge.errors import DataError, ParameterMismatchError
from rainbridge.protocols.mpc.encoding import (
    _LOG_TERM,
    SUM_BITS,
    Encoding,
    choose,
    encode,
    float_keys,
    stochastic_round,
)

#: relative precision promised for SUM/AVG of real columns and for VARIANCE/STDDEV
SUM_TOLERANCE = 1e-9
VAR_TOLERANCE = 1e-6
#: MIN/MAX per group compare values below this magnitude
EXTREMUM_BITS = 60


@dataclass
class ColumnPlan:
    """Where one value column's integer columns sit in the matrix, and their encodings."""

    name: str
    is_int: bool
    mask: int  # -1: no NULL in the value party's columns, a group's count is its rows
    sum: tuple[int, Encoding] | None = None
    #: the sum is column ``wide`` of the 128-bit matrix (integers too large for 64 bits)
    wide: int | None = None
    var: tuple[int, int, Encoding] | None = None  # D, D², encoding of D
    extremum: Encoding | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "int": self.is_int,
            "mask": self.mask,
            "sum": None if self.sum is None else [self.sum[0], self.sum[1].to_json()],
            "var": None if self.var is None else [self.var[0], self.var[1], self.var[2].to_json()],
            "ext": None if self.extremum is None else self.extremum.to_json(),
            "wide": self.wide,
        }

    @classmethod
    def from_json(cls, d: Any, width: int, wide: int = 0) -> ColumnPlan:
        """A plan the value party sent; its indices checked against the matrices' widths."""
        try:
            plan = cls(str(d["name"]), bool(d["int"]), int(d["mask"]))
            if d.get("sum") is not None:
                plan.sum = (int(d["sum"][0]), Encoding.from_json(d["sum"][1]))
            if d.get("var") is not None:
                v = d["var"]
                plan.var = (int(v[0]), int(v[1]), Encoding.from_json(v[2]))
            if d.get("ext") is not None:
                plan.extremum = Encoding.from_json(d["ext"])
            if d.get("wide") is not None:
                plan.wide = int(d["wide"])
        except (KeyError, TypeError, ValueError, IndexError):
            raise ParameterMismatchError(
                "the other party sent a malformed statistics plan"
            ) from None
        idx = [*(plan.sum[:1] if plan.sum else ()), *(plan.var[:2] if plan.var else ())]
        idx += [plan.mask] if plan.mask != -1 else []
        if plan.wide is not None and not 0 <= plan.wide < wide:
            raise ParameterMismatchError("the other party's statistics plan is out of range")
        if any(not 0 <= i < width for i in idx):
            raise ParameterMismatchError("the other party's statistics plan is out of range")
        return plan


@dataclass
class ValueMatrix:
    """The value party's integer columns for the per-group sums, and their plans."""

    columns: list[npt.NDArray[np.int64]] = field(default_factory=list)
    plans: list[ColumnPlan] = field(default_factory=list)
    #: integer columns whose sums need Z_2^128 (:mod:`rainbridge.protocols.mpc.wide`)
    wide: list[npt.NDArray[np.int64]] = field(default_factory=list)

    def wide_matrix(self, n: int) -> npt.NDArray[np.int64]:
        return np.column_stack(self.wide) if self.wide else np.zeros((n, 0), np.int64)

    def add(self, values: npt.NDArray[np.int64]) -> int:
        self.columns.append(values)
        return len(self.columns) - 1

    def matrix(self, n: int) -> npt.NDArray[np.int64]:
        return np.column_stack(self.columns) if self.columns else np.zeros((n, 0), np.int64)


def value_matrix(
    cols: list[Column],
    stats: dict[str, set[str]],
    rows: int,
    dp_decimals: int | None = None,
    masks: bool = True,
) -> ValueMatrix:
    """Encode the value party's columns for the per-group sums (see the module docstring),
    each for the statistics ``stats[name]`` asked of it.

    Raises DataError, naming the column, when an integer column's sums could leave the
    exact range; with ``dp_decimals`` (differential privacy) every column is encoded at
    that decimal scale, as its noise is calibrated to it. Without ``masks`` (no NULL in any
    of the party's columns, which the other party knows from the hello) no presence column
    is added.
    """
    out = ValueMatrix()
    for col in cols:
        want_sum = bool({"sum", "mean"} & stats[col.name])
        want_var = bool({"var", "std"} & stats[col.name])
        mask = out.add(col.valid.astype(np.int64)) if masks and dp_decimals is None else -1
        plan = ColumnPlan(col.name, col.is_int, mask)
        if dp_decimals is not None:
            enc = Encoding(10, dp_decimals, False)
            s = encode(col.values.astype(np.float64), col.valid, enc)
            plan.sum = (out.add(s), enc)
            if want_var:
                plan.var = (plan.sum[0], out.add(s * s), enc)
            out.plans.append(plan)
            continue
        if not (want_sum or want_var):
            out.plans.append(plan)
            continue
        enc_s = choose(col.values, col.valid, rows)
        if enc_s is None:
            # integers whose sums could pass 2^62: summed exactly in Z_2^128 instead
            if want_sum:
                plan.wide = len(out.wide)
                out.wide.append(np.where(col.valid, col.values, 0).astype(np.int64))
            if want_var:
                plan.var = _approx_var_columns(out, col, rows)
            out.plans.append(plan)
            continue
        e = encode(col.values, col.valid, enc_s)
        if want_sum:
            plan.sum = (out.add(e), enc_s)
        if want_var:
            plan.var = _var_columns(out, col, e, enc_s, rows)
        out.plans.append(plan)
    return out


def _var_columns(
    out: ValueMatrix, col: Column, e: npt.NDArray[np.int64], enc: Encoding, rows: int
) -> tuple[int, int, Encoding]:
    """D and D² for the variance: exact when the encoding is and the squares fit, else a
    power-of-two encoding of the centered values (stochastic rounding)."""
    present = e[col.valid]
    if enc.exact and len(present):
        shift = int(np.rint(present.astype(np.float64).mean()))
        d = np.where(col.valid, e - np.int64(shift), 0)
        top = float(np.abs(d).max()) if len(d) else 0.0
        if top * top * max(rows, 1) < 2.0**SUM_BITS:
            return out.add(d), out.add(d * d), enc
    return _approx_var_columns(out, col, rows)


def _approx_var_columns(out: ValueMatrix, col: Column, rows: int) -> tuple[int, int, Encoding]:
    """D and D² of the values centered on their mean at a power of two (stochastic
    rounding): the variance within its stated bound, whatever the values' size."""
    v = col.values.astype(np.float64)
    mean = float(v[col.valid].mean()) if col.count else 0.0
    centered = np.where(col.valid, v - mean, 0.0)
    top = float(np.abs(centered).max()) if len(centered) else 0.0
    if top == 0.0:
        zero = np.zeros(len(v), dtype=np.int64)
        return out.add(zero), out.add(zero), Encoding(10, 0, True)
    # (|d|·2^f + 1)² · rows < 2^62
    f = math.floor((SUM_BITS - math.log2(max(rows, 1))) / 2 - math.log2(top)) - 1
    d = stochastic_round(np.ldexp(centered, f))
    d[~col.valid] = 0
    return out.add(d), out.add(d * d), Encoding(2, f, False)


def extremum_matrix(cols: list[Column]) -> tuple[npt.NDArray[np.int64], list[Encoding]]:
    """The columns encoded for MIN/MAX (|value| < 2^60): exact for integers and decimals,
    otherwise the float's own ordered bits (within a relative 2^-49 of the value itself).
    Raises DataError for integers beyond 2^60."""
    mats: list[npt.NDArray[np.int64]] = []
    encs: list[Encoding] = []
    for col in cols:
        enc = choose(col.values, col.valid, 1, bits=EXTREMUM_BITS)
        if enc is None:
            raise DataError(
                f"MIN/MAX per group of {col.name!r}: integers of 2^{EXTREMUM_BITS} or more "
                "are not supported; ask for them without GROUP BY (exact at any size)"
            )
        if not enc.exact:
            enc = Encoding(0, 0, False)
            v = np.where(col.valid, col.values.astype(np.float64), 0.0)
            mats.append(float_keys(v))
        else:
            mats.append(encode(col.values, col.valid, enc))
        encs.append(enc)
    return np.column_stack(mats), encs


def _num(value: Fraction, is_int: bool) -> int | float:
    if is_int and value.denominator == 1:
        return int(value)
    return float(value)


@dataclass
class GroupResult:
    """One group's revealed sums, decoded per the value party's plans."""

    label: Any
    count: int
    sums: list[int]
    wide: list[int] = field(default_factory=list)

    def present(self, plan: ColumnPlan, dp: bool) -> int:
        """The group's present (non-NULL) values of the column."""
        return self.count if dp or plan.mask == -1 else self.sums[plan.mask]

    def column(
        self, plan: ColumnPlan, stats: set[str], dp: bool
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The statistics of one value column in this group (None where SQL gives NULL),
        and the ones withheld with the reason: a result whose error bound exceeds the stated
        precision is never given."""
        out: dict[str, Any] = {}
        notes: dict[str, str] = {}
        present = self.present(plan, dp)
        if "count" in stats:
            out["count"] = present
        if plan.wide is not None:
            total_int = self.wide[plan.wide]
            if "sum" in stats:
                out["sum"] = total_int if present else None
            if "mean" in stats:
                out["mean"] = float(Fraction(total_int, present)) if present else None
        if plan.sum is not None:
            i, enc = plan.sum
            total = enc.decode(self.sums[i])
            err = enc.sum_error(present)
            if "sum" in stats:
                out["sum"] = _num(total, plan.is_int) if present else None
            if "mean" in stats:
                out["mean"] = float(total / present) if present else None
            if present and err > SUM_TOLERANCE * abs(float(total)) and not dp:
                for stat in {"sum", "mean"} & stats:
                    out[stat] = None
                    notes[stat] = (
                        f"{stat.upper()} of {plan.name!r} in group {_shown(self.label)}: the "
                        f"answer's error bound {err:.3g} exceeds {SUM_TOLERANCE:g} of it (values "
                        "of very different magnitudes in one column); aggregate it without "
                        "GROUP BY (exact)"
                    )
        if plan.var is not None:
            try:
                var = self._variance(plan, present, dp)
            except DataError as exc:
                var = None
                for stat in {"var", "std"} & stats:
                    notes[stat] = str(exc)
            if "var" in stats:
                out["var"] = var
            if "std" in stats:
                out["std"] = None if var is None else math.sqrt(max(var, 0.0))
        return out, notes

    def _variance(self, plan: ColumnPlan, present: int, dp: bool) -> float | None:
        assert plan.var is not None
        i, j, enc = plan.var
        c = present
        if c < 2:
            return None
        s1, s2 = self.sums[i], self.sums[j]
        unit2 = enc.unit * enc.unit
        var = Fraction(c * s2 - s1 * s1, c * (c - 1)) * unit2
        if dp:
            return max(float(var), 0.0)
        if not enc.exact:
            # errors of less than one unit, independent: |Δ Σ(d - d̄)²| ≤
            # 2·sqrt(ln(2/p)/2)·‖d - d̄‖·u + c·u² (Hoeffding), over (c - 1)
            u = float(enc.unit)
            spread = math.sqrt(max(float(var), 0.0) * (c - 1))
            bound = (2 * math.sqrt(_LOG_TERM / 2) * spread * u + c * u * u) / (c - 1)
            if bound > VAR_TOLERANCE * float(var):
                raise DataError(
                    f"VARIANCE of {plan.name!r} in group {_shown(self.label)}: the answer's error "
                    f"bound {bound:.3g} exceeds {VAR_TOLERANCE:g} of it (a group far narrower "
                    "than the column's spread); aggregate without GROUP BY or filter the rows"
                )
        return float(var)


def _shown(label: Any) -> str:
    return "NULL" if label is None else repr(label)


def extremum_value(v: int, enc: Encoding, is_int: bool) -> int | float:
    return _num(enc.decode(int(v)), is_int)
