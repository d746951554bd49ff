"""How the CLI shows what a job produced at a party: one table row per component with its
headline metrics, each followed by its outputs, then the traffic. ``--json`` prints the
whole result instead; this is for people."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Kind = Literal["count", "metric", "seconds"]

#: the metrics a table shows, in order: (the summary's key, column title, how it is printed).
#: Other metrics stay in the report outputs and in ``--json``.
HEADLINES: tuple[tuple[str, str, Kind], ...] = (
    ("rows", "rows", "count"),
    ("intersection_size", "intersection", "count"),
    ("auc", "AUC", "metric"),
    ("ks", "KS", "metric"),
    ("accuracy", "accuracy", "metric"),
    ("rmse", "RMSE", "metric"),
    ("trees", "trees", "count"),
    ("rounds", "rounds", "count"),
    ("epochs_run", "epochs", "count"),
    ("seconds", "seconds", "seconds"),
)
#: printed in a cell the component has no value for
BLANK = "-"


def component_types(spec: Any) -> dict[str, str]:
    """Each component's type by id, from a job spec (its dict, as a node's job row holds it,
    or a :class:`~rainbridge.jobs.spec.JobSpec`); empty when the spec is not at hand."""
    comps = (
        spec.get("components") if isinstance(spec, Mapping) else getattr(spec, "components", None)
    )
    types: dict[str, str] = {}
    for c in comps if isinstance(comps, Sequence) and not isinstance(comps, str) else ():
        cid = c.get("id") if isinstance(c, Mapping) else getattr(c, "id", None)
        ctype = c.get("type") if isinstance(c, Mapping) else getattr(c, "type", None)
        if isinstance(cid, str) and isinstance(ctype, str):
            types[cid] = ctype
    return types


def headline(summary: Mapping[str, Any], key: str) -> Any:
    """The value of headline ``key`` in a component's summary, or None.

    The party's own rows come from the summary itself; metrics from its ``result`` (what
    the label party or the receiver computed), else the summary."""
    result = summary.get("result")
    metrics = result if isinstance(result, Mapping) else {}
    first, second = (summary, metrics) if key == "rows" else (metrics, summary)
    for source in (first, second):
        value = source.get(key)
        if value is not None and not isinstance(value, Mapping | list):
            return value
    return None


def format_value(value: Any, kind: Kind) -> str:
    """A headline as printed: AUC, KS and the other ratios with 4 decimals, seconds with 3
    (the summary's own precision), counts whole and with thousands separators. A count that
    is not whole is printed in full, never rounded."""
    if value is None:
        return BLANK
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if kind == "metric":
        return f"{value:.4f}"
    if kind == "seconds":
        return f"{value:.3f}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}"


def _table(rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def output_lines(outputs: Any, indent: str = "    ") -> list[str]:
    """One line per output a component wrote here: its name, rows and where it is."""
    if not isinstance(outputs, Mapping) or not outputs:
        return []
    cells = []
    for name, o in outputs.items():
        o = o if isinstance(o, Mapping) else {}
        rows = o.get("rows")
        count = format_value(rows, "count") if rows is not None else "?"
        where = str(o.get("path") or "(not kept here)")
        cells.append([str(name), f"{count} rows", f"-> {where}"])
    return [indent + line for line in _table(cells, {1})]


def describe_result(result: Any, types: Mapping[str, str] | None = None) -> list[str]:
    """The lines that show one party's result of a job (what ``run_party`` returns): a
    table of its components (id, type, the headlines any of them has, seconds), each row
    followed by that component's outputs, then the bytes the party sent and received.

    ``types`` gives each component's type (from the job's spec, :func:`component_types`);
    a component it does not name shows ``-``. Whatever the result holds, this never fails:
    what is not a summary is left out.
    """
    result = result if isinstance(result, Mapping) else {}
    comps = result.get("components")
    comps = comps if isinstance(comps, Mapping) else {}
    summaries = {str(cid): s for cid, s in comps.items() if isinstance(s, Mapping)}
    types = types or {}
    shown = [
        (key, title, kind)
        for key, title, kind in HEADLINES
        if any(headline(s, key) is not None for s in summaries.values())
    ]
    lines: list[str] = []
    if summaries:
        header = ["component", "type", *(title for _, title, _ in shown)]
        body = [
            [cid, types.get(cid, BLANK), *(format_value(headline(s, k), kd) for k, _, kd in shown)]
            for cid, s in summaries.items()
        ]
        table = _table([header, *body], set(range(2, len(header))))
        lines.append(table[0])
        for (_cid, s), line in zip(summaries.items(), table[1:], strict=True):
            lines.append(line)
            lines.extend(output_lines(s.get("outputs")))
    else:
        lines.append("no component ran at this party")
    sent = result.get("bytes_sent", 0)
    received = result.get("bytes_received", 0)
    traffic = f"sent {format_value(sent, 'count')} B, received {format_value(received, 'count')} B"
    if result.get("seconds") is not None:
        traffic += f" in {format_value(result['seconds'], 'seconds')} s"
    lines.append(traffic)
    return lines
