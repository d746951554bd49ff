"""``rainbridge mlq``: the consortium multi-lender query (实时多头) — join as a lender or the
merger, build the window's multiset, count an applicant's other applications."""

from __future__ import annotations

import click

from rainbridge.cli.common import Api, api_command, emit


@click.group("mlq")
def mlq() -> None:
    """Multi-lender counts: in how many other lenders did this ID apply recently."""


@mlq.command("join")
@click.argument("name")
@click.option("--lenders", required=True, help="Comma list of the lenders' node names.")
@click.option("--merger", required=True, help="The node that merges (holds no data).")
@click.option("--window-days", default=30, show_default=True)
@click.option("--dataset", help="A lender's applications (its ID column keys them).")
@click.option("--date-column", help="A lender's application date column.")
@click.option(
    "--rate",
    "rate_per_s",
    default=50.0,
    show_default=True,
    help="Counts/s another lender may ask of this one.",
)
@click.option(
    "--on-change",
    type=click.Choice(["refuse", "rebuild"]),
    default="refuse",
    show_default=True,
    help="When a lender's window changed since the build: refuse counts (naming the lender) "
    "or have the merger rebuild first (at the merger: whether it rebuilds on request).",
)
@api_command
def mlq_join(
    name: str,
    lenders: str,
    merger: str,
    window_days: int,
    dataset: str | None,
    date_column: str | None,
    rate_per_s: float,
    on_change: str,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Join service NAME as a lender (with --dataset and --date-column) or as its merger."""
    body = {
        "name": name,
        "lenders": [x.strip() for x in lenders.split(",") if x.strip()],
        "merger": merger,
        "window_days": window_days,
        "dataset": dataset,
        "date_column": date_column,
        "rate_per_s": rate_per_s,
        "on_change": on_change,
    }
    out = Api(directory, api_url).call("POST", "/v1/mlq/services", body)
    emit(out, as_json, f"{name}: joined as {out['role']} ({len(out['lenders'])} lenders)")


@mlq.command("services")
@api_command
def mlq_services(directory: str, api_url: str | None, as_json: bool) -> None:
    """Multi-lender services this node is in."""
    rows = Api(directory, api_url).call("GET", "/v1/mlq/services")
    text = "\n".join(
        f"{r['name']:20} {r['role']:7} lenders {','.join(r['lenders'])}  merger {r['merger']}  "
        f"{r['window_days']} days"
        + (f"  built {r['last_build']['end']}" if r.get("last_build") else "")
        for r in rows
    )
    emit(rows, as_json, text or "no multi-lender services")


@mlq.command("build")
@click.argument("name")
@click.option("--end", help="Last day of the window (YYYY-MM-DD; default today, UTC).")
@api_command
def mlq_build(
    name: str, end: str | None, directory: str, api_url: str | None, as_json: bool
) -> None:
    """At the merger: run the ring over every lender's window and publish the multiset."""
    out = Api(directory, api_url).call("POST", f"/v1/mlq/{name}/build", {"end": end})
    emit(
        out,
        as_json,
        f"{name}: window ending {out['end']}, {out['people']} people ({out['seconds']} s)",
    )


@mlq.command("count")
@click.argument("name")
@click.option("--id", "ident", required=True, help="The applicant's ID.")
@api_command
def mlq_count(name: str, ident: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """At a lender: in how many other lenders' windows the ID appears; nobody learns the ID."""
    out = Api(directory, api_url).call("POST", f"/v1/mlq/{name}/count", {"id": ident})
    emit(
        out,
        as_json,
        f"{ident}: {out['count']} other lender(s) in the last "
        f"{out['window_days']} days ({out['milliseconds']:.1f} ms)",
    )
