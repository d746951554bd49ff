"""The ``binning`` component: bins, WOE and IV of features against another party's label
(特征分箱 / IV 筛选), over two parties' aligned tables (a PSI intersection both received).

Each feature's owner bins it alone — equal-frequency (quantile) bins, or ``chimerge``: start
from ``init_bins`` quantile bins and merge the adjacent pair with the smallest chi-square
until ``bins`` remain, on the counts the receiver sees. The positive and negative counts per
bin of another party's feature come from a contingency table of the owner's bin indices and
the label party's labels computed by MPC (:func:`rainbridge.protocols.mpc.stats.crosstab`):
neither side sees the other's rows. The label party's own features are counted locally.

What is revealed to the ``result``'s receiver: per bin, the row count and the number of
positives and negatives (and from them WOE and IV). Bin edges are the feature owner's
data: they appear only when the receiver owns the feature; otherwise bins are numbered.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.components.spec import ComponentSpec
from rainbridge.components.twoparty import (
    LabelledParams,
    check_roles,
    matrix,
    open_session,
    serve_dealer,
)
from rainbridge.data import read_columns
from rainbridge.errors import DataError
from rainbridge.protocols.mpc.stats import crosstab

MAX_SUMMARY_ROWS = 1000


class BinningParams(LabelledParams):
    """Parameters of the ``binning`` component."""

    method: Literal["quantile", "chimerge"] = Field(
        default="quantile", description="equal-frequency bins, or ChiMerge on the label"
    )
    bins: int = Field(default=10, ge=2, le=100, description="bins per feature (at most)")
    init_bins: int = Field(default=50, ge=2, le=200, description="chimerge's starting bins")
    min_iv: float | None = Field(default=None, ge=0, description="select features with IV ≥")


def quantile_edges(x: Any, bins: int) -> Any:
    """Distinct equal-frequency edges (ties can leave fewer bins)."""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    return edges


def bin_index(x: Any, edges: Any) -> Any:
    """Bin of each value: edges[i] ≤ x < edges[i+1], the last bin closed."""
    k = len(edges) - 1
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(k - 1, 0))


def chimerge(pos: Any, neg: Any, target: int) -> list[list[int]]:
    """Groups of adjacent bins: merge the adjacent pair with the smallest chi-square."""
    groups = [[i] for i in range(len(pos))]
    p, q = list(map(float, pos)), list(map(float, neg))
    while len(groups) > target:
        best, where = None, 0
        for i in range(len(groups) - 1):
            chi = _chi2(p[i], q[i], p[i + 1], q[i + 1])
            if best is None or chi < best:
                best, where = chi, i
        groups[where] += groups.pop(where + 1)
        p[where] += p.pop(where + 1)
        q[where] += q.pop(where + 1)
    return groups


def _chi2(a: float, b: float, c: float, d: float) -> float:
    n = a + b + c + d
    if n == 0:
        return 0.0
    rows, cols = (a + b, c + d), (a + c, b + d)
    chi = 0.0
    for obs, r, col in ((a, rows[0], cols[0]), (b, rows[0], cols[1]),
                        (c, rows[1], cols[0]), (d, rows[1], cols[1])):  # fmt: skip
        exp = r * col / n
        if exp > 0:
            chi += (obs - exp) ** 2 / exp
    return chi


def woe_iv(pos: Any, neg: Any) -> tuple[Any, Any]:
    """WOE per bin and IV contribution per bin (0.5 added to empty cells)."""
    pos = np.asarray(pos, dtype=float)
    neg = np.asarray(neg, dtype=float)
    p = np.where(pos == 0, 0.5, pos) / max(pos.sum(), 1.0)
    q = np.where(neg == 0, 0.5, neg) / max(neg.sum(), 1.0)
    woe = np.log(p / q)
    return woe, (p - q) * woe


class BinningComponent(Component):
    type_name = "binning"
    summary = "Bins, WOE and IV of features against another party's label (MPC)"
    Params = BinningParams
    outputs = ("result",)

    def check(self, spec: ComponentSpec) -> None:
        super().check(spec)
        params = self.parse_params(spec.params)
        assert isinstance(params, BinningParams)
        data = check_roles(spec, "binning")
        params.check_parties(data)
        out = spec.outputs.get("result")
        if out is None or len(out.receivers) != 1 or out.receivers[0] not in data:
            raise ComponentParamError(
                "binning needs a 'result' output with one receiver, a data party", ("outputs",)
            )
        if params.method == "chimerge" and params.init_bins < params.bins:
            raise ComponentParamError("init_bins must be at least bins", ("params", "init_bins"))

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        params = self.parse_params(spec.params)
        assert isinstance(params, BinningParams)
        return params.uses(party)

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        params = self.parse_params(spec.params)
        assert isinstance(params, BinningParams)
        return params.used(party)

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, BinningParams)
        served = await serve_dealer(ctx)
        if served is not None:
            return served
        is_label = ctx.party == params.label.party
        mine = params.features.get(ctx.party, [])
        ref = ctx.inputs[ctx.party]
        wanted = list(dict.fromkeys([params.id_of(ctx.party), *mine,
                                     *([params.label.column] if is_label else [])]))  # fmt: skip
        missing = [c for c in wanted if c not in ref.columns]
        if missing:
            raise DataError(f"binning input of {ctx.party!r} has no column {missing[0]!r}")
        table = read_columns(ref, wanted)
        session = await open_session(ctx, table, params.id_of(ctx.party), {}, "binning", params.ot)
        mpc, me = session.mpc, session.me
        receiver_name = ctx.spec.outputs["result"].receivers[0]
        receiver = me if ctx.party == receiver_name else 1 - me
        label_idx = me if is_label else 1 - me
        y = None
        if is_label:
            y = matrix(table, [params.label.column])[:, 0]
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"label column {params.label.column!r} must hold 0 and 1 only")
        n = table.num_rows
        first = params.init_bins if params.method == "chimerge" else params.bins
        rows: list[dict[str, Any]] = []
        for owner in sorted(params.features):
            owner_idx = me if ctx.party == owner else 1 - me
            for col in params.features[owner]:
                edges: Any = None
                keys: Any = None
                # the number of bins shapes the computation: the owner announces it
                if ctx.party == owner:
                    x = matrix(table, [col])[:, 0]
                    edges = quantile_edges(x, first) if n else np.array([0.0, 0.0])
                    keys = bin_index(x, edges)
                    k = len(edges) - 1
                    await mpc.ch.send_json("binning/bins", {"bins": k})
                else:
                    got = await mpc.ch.recv_json("binning/bins")
                    k = int(got.get("bins", 0)) if isinstance(got, dict) else 0
                    if not 1 <= k <= 200:
                        raise DataError("the other party announced an invalid bin count")
                if owner_idx == label_idx:  # the label party's own feature: local counts
                    counts = None
                    if ctx.party == owner:
                        assert y is not None and keys is not None
                        counts = np.stack(
                            [np.bincount(keys[y == 0], minlength=k),
                             np.bincount(keys[y == 1], minlength=k)], axis=1,
                        )  # fmt: skip
                    shared = await mpc.input(counts, owner_idx, (k, 2), integer=True)
                    table_counts = await mpc.reveal(shared, to=receiver)
                else:
                    label_keys = y.astype(np.int64) if y is not None else None
                    table_counts = await crosstab(
                        mpc,
                        row_party=owner_idx,
                        keys=keys if ctx.party == owner else label_keys,
                        shape=(n, k, 2),
                        receiver=receiver,
                    )
                if table_counts is None:
                    continue
                neg, pos = np.asarray(table_counts)[:, 0], np.asarray(table_counts)[:, 1]
                groups = [[i] for i in range(k)]
                if params.method == "chimerge":
                    groups = chimerge(pos, neg, params.bins)
                pos_g = np.array([pos[g].sum() for g in groups])
                neg_g = np.array([neg[g].sum() for g in groups])
                woe, iv_bins = woe_iv(pos_g, neg_g)
                iv = float(iv_bins.sum())
                for b, g in enumerate(groups):
                    label = str(b)
                    if edges is not None and ctx.party == receiver_name:
                        last = g[-1] == k - 1
                        label = f"[{edges[g[0]]:g}, {edges[g[-1] + 1]:g}{']' if last else ')'}"
                    rows.append({
                        "feature": col, "party": owner, "bin": label,
                        "count": float(pos_g[b] + neg_g[b]), "positives": float(pos_g[b]),
                        "negatives": float(neg_g[b]), "woe": float(woe[b]),
                        "iv_bin": float(iv_bins[b]), "iv": iv,
                    })  # fmt: skip
        await mpc.close()
        ctx.progress(1.0)
        summary: dict[str, Any] = {"rows": n, "receiver": receiver_name}
        if ctx.party == receiver_name:
            ivs = {(r["party"], r["feature"]): r["iv"] for r in rows}
            summary["iv"] = {f"{p}.{f}": v for (p, f), v in ivs.items()}
            if params.min_iv is not None:
                summary["selected"] = [
                    f"{p}.{f}" for (p, f), v in ivs.items() if v >= params.min_iv
                ]
            result = pa.Table.from_pylist(rows, schema=pa.schema([
                ("feature", pa.string()), ("party", pa.string()), ("bin", pa.string()),
                ("count", pa.float64()), ("positives", pa.float64()),
                ("negatives", pa.float64()), ("woe", pa.float64()), ("iv_bin", pa.float64()),
                ("iv", pa.float64()),
            ]))  # fmt: skip
            summary["outputs"] = {"result": ctx.write_output("result", result)}
            summary["result"] = rows[:MAX_SUMMARY_ROWS]
        return summary
