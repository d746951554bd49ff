"""``rainbridge sql``: a SQL query across two parties' tables, run as a PSI + MPC job."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rainbridge.cli.common import EXIT_CODES, UNSUCCESSFUL, Api, api_command, emit, fail_with
from rainbridge.errors import RainbridgeError


def _fmt(v: Any, decimals: int) -> str:
    """A cell as printed: NULL as NULL, integers in full, reals rounded to ``decimals``
    (the printing alone: the answer itself is not rounded)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{decimals}f}" if abs(v) >= 10.0**-decimals or v == 0 else f"{v:.{decimals}g}"


@click.command("sql")
@click.argument("query")
@click.option(
    "--dealer",
    help="A third party that serves the MPC's randomness (fast). Without it the two parties "
    "make it themselves by OT extension (no third party, much slower).",
)
@click.option("--receiver", help="The data party that gets the answer (default: this node).")
@click.option(
    "--decimals",
    type=int,
    default=2,
    show_default=True,
    help="Decimal places printed for real values (the answer itself is exact or within its "
    "stated bound; --json prints it unrounded).",
)
@click.option("--min-group-size", type=int, default=1, show_default=True)
@click.option("--plan", "plan_only", is_flag=True, help="Print the planned job, do not run it.")
@api_command
def sql_cmd(
    query: str,
    dealer: str | None,
    receiver: str | None,
    decimals: int,
    min_group_size: int,
    plan_only: bool,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Answer QUERY over two parties' tables (party.dataset) without either seeing the
    other's rows: planned into a PSI and a secure-statistics job, checked against every
    party's grants, run, and printed as a table."""
    from rainbridge.cli.jobs import wait_for_job
    from rainbridge.jobs.sql import plan_sql, result_table

    api = None if plan_only and receiver else Api(directory, api_url)
    me = receiver or (api.call("GET", "/v1/node")["name"] if api else "")
    try:
        plan = plan_sql(
            query,
            dealer=dealer,
            receiver=me,
            decimals=decimals,
            min_group_size=min_group_size,
        )
    except RainbridgeError as exc:
        fail_with(exc)
    if plan_only:
        click.echo(json.dumps(plan.job, indent=2))
        return
    assert api is not None
    row = api.call("POST", "/v1/jobs", {"spec": plan.job})
    row = wait_for_job(api, row["id"], show=not as_json and sys.stderr.isatty())
    if row["status"] in UNSUCCESSFUL:
        click.echo(f"error: job {row['id']} {row['status']}: {row.get('error')}", err=True)
        sys.exit(EXIT_CODES["job_failed"])
    res = api.call("GET", f"/v1/jobs/{row['id']}/result")["result"]
    stats = res["components"]["stats"]
    rows_long = stats.get("result", [])
    if stats.get("result_truncated"):
        rows_long = _all_rows(api, row["id"], int(stats.get("result_rows", 0)))
    headers, rows = result_table(plan, rows_long)
    out: dict[str, Any] = {"job": row["id"], "columns": headers, "rows": rows}
    if stats.get("suppressed_groups"):
        out["suppressed_groups"] = stats["suppressed_groups"]
        note = (
            f"note: {stats['suppressed_groups']} group(s) withheld: "
            f"{stats.get('suppressed_reason', 'too small')}"
        )
        if not as_json:
            click.echo(note, err=True)
    cells = [[_fmt(v, decimals) for v in r] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)) for c in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    emit(out, as_json, "\n".join(lines))


def _all_rows(api: Api, job_id: str, total: int) -> list[dict[str, Any]]:
    """Every row of the stats output, read page by page from the node."""
    out: list[dict[str, Any]] = []
    while len(out) < total:
        page = api.call(
            "GET", f"/v1/jobs/{job_id}/outputs/stats/result?limit=100000&offset={len(out)}"
        )
        if not page["rows"]:
            break
        for r in page["rows"]:
            exact = r.get("exact")  # integers in full, as text: a float would round them
            value = int(exact) if isinstance(exact, str) and exact else r.get("value")
            out.append({**r, "value": value, "grouped": bool(r.get("grouped"))})
    if len(out) != total:
        raise click.ClickException(f"the node returned {len(out)} of {total} result rows")
    return out
