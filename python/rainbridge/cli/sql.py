"""``rainbridge sql``: a SQL query across two parties' tables, run as a PSI + MPC job."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rainbridge.cli.common import EXIT_CODES, UNSUCCESSFUL, Api, api_command, emit, fail_with
from rainbridge.errors import RainbridgeError


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() else f"{v:,.4f}"
    return "" if v is None else str(v)


@click.command("sql")
@click.argument("query")
@click.option(
    "--dealer",
    help="A third party that serves the MPC's randomness (fast). Without it the two parties "
    "make it themselves by OT extension (no third party, much slower).",
)
@click.option("--receiver", help="The data party that gets the answer (default: this node).")
@click.option("--decimals", type=int, default=2, show_default=True, help="Value precision.")
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
    headers, rows = result_table(plan, stats.get("result", []))
    out = {"job": row["id"], "columns": headers, "rows": rows}
    widths = [max(len(h), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(_fmt(v).rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    emit(out, as_json, "\n".join(lines))
