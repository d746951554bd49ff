"""Commands of governance: users, grants, the catalogue, the ledger, metering, keys."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from rainbridge.cli.common import Api, api_command, dir_option, emit, fail, fail_with, json_option
from rainbridge.errors import RainbridgeError

# -- users ---------------------------------------------------------------------------------


@click.group("user")
def user() -> None:
    """API users and their roles (admin, owner, analyst, auditor)."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "owner", "analyst", "auditor"]))
@api_command
def user_add(name: str, role: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Create a user; its token is printed once (the node keeps only its hash)."""
    out = Api(directory, api_url).call("POST", "/v1/users", {"name": name, "role": role})
    emit(out, as_json, f"user {name!r} ({role}) created; token (shown once):\n{out['token']}")


@user.command("list")
@api_command
def user_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List users and roles."""
    rows = Api(directory, api_url).call("GET", "/v1/users")
    text = "\n".join(
        f"{r['name']:16} {r['role']:8} {'disabled' if r['disabled'] else ''}" for r in rows
    )
    emit(rows, as_json, text)


@user.command("disable")
@click.argument("name")
@api_command
def user_disable(name: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Disable a user: its token stops working at once."""
    out = Api(directory, api_url).call("POST", f"/v1/users/{name}/disable")
    emit(out, as_json, f"user {name!r} disabled")


# -- grants --------------------------------------------------------------------------------


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


@click.group("grant")
def grant() -> None:
    """Grants: which peer may use which dataset, how, for whom, how much, until when."""


@grant.command("add")
@click.argument("dataset")
@click.option("--peer", required=True, help="The party allowed to use the dataset.")
@click.option("--columns", required=True, help="Comma-separated columns, or '*'.")
@click.option("--components", required=True, help="Comma-separated component types, or '*'.")
@click.option("--receivers", required=True, help="Parties that may receive outputs, or '*'.")
@click.option("--max-calls", type=int, help="Quota: jobs that may use it.")
@click.option("--max-rows", type=int, help="Quota: rows that may be read in all.")
@click.option("--expires", help="Expiry, ISO date or time (UTC unless it says otherwise).")
@click.option(
    "--approval",
    type=click.Choice(["auto", "manual"]),
    default="auto",
    show_default=True,
    help="manual: hold every job for an owner's approval.",
)
@api_command
def grant_add(
    dataset: str,
    peer: str,
    columns: str,
    components: str,
    receivers: str,
    max_calls: int | None,
    max_rows: int | None,
    expires: str | None,
    approval: str,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Let PEER use DATASET."""
    body: dict[str, Any] = {
        "dataset": dataset,
        "peer": peer,
        "columns": _csv(columns),
        "components": _csv(components),
        "receivers": _csv(receivers),
        "max_calls": max_calls,
        "max_rows": max_rows,
        "approval": approval,
    }
    if expires:
        try:
            t = dt.datetime.fromisoformat(expires)
        except ValueError:
            fail(f"--expires {expires!r}: expected an ISO date or time", 2)
        body["expires_at"] = (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat()
    out = Api(directory, api_url).call("POST", "/v1/grants", body)
    emit(out, as_json, f"grant {out['id']}: {peer!r} may use {dataset!r}")


@grant.command("list")
@click.option("--dataset", help="Only this dataset's grants.")
@click.option("--peer", help="Only this peer's grants.")
@api_command
def grant_list(
    dataset: str | None, peer: str | None, directory: str, api_url: str | None, as_json: bool
) -> None:
    """List grants with their usage."""
    q = "&".join(f"{k}={v}" for k, v in (("dataset", dataset), ("peer", peer)) if v)
    rows = Api(directory, api_url).call("GET", "/v1/grants" + (f"?{q}" if q else ""))
    lines = []
    for g in rows:
        quota = f"calls {g['calls_used']}/{g['max_calls'] if g['max_calls'] is not None else '∞'}"
        state = "revoked" if g["revoked_at"] else "active"
        lines.append(
            f"{g['id']}  {g['dataset']:14} → {g['peer']:10} {','.join(g['components']):10} "
            f"{quota:14} {g['approval']:6} {state}"
        )
    emit(rows, as_json, "\n".join(lines) or "no grants")


@grant.command("revoke")
@click.argument("grant_id")
@api_command
def grant_revoke(grant_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Revoke a grant: new jobs are refused, running ones under it are stopped."""
    out = Api(directory, api_url).call("POST", f"/v1/grants/{grant_id}/revoke")
    emit(out, as_json, f"grant {grant_id} revoked")


# -- catalogue -----------------------------------------------------------------------------


@click.command("catalogue")
@click.argument("peer", required=False)
@api_command
def catalogue(peer: str | None, directory: str, api_url: str | None, as_json: bool) -> None:
    """Browse a peer's published datasets (metadata only), or this node's without PEER."""
    rows = Api(directory, api_url).call("GET", f"/v1/catalogue/{peer}" if peer else "/v1/catalogue")
    lines = []
    for d in rows:
        rows_txt = f"{d['num_rows']} rows" if "num_rows" in d else "rows not shown"
        lines.append(f"{d['name']} [{d['sensitivity']}] ({rows_txt}) {d.get('description', '')}")
        lines += [f"    {c}: {t}" for c, t in d.get("columns", {}).items()]
    emit(rows, as_json, "\n".join(lines) or "nothing published")


# -- ledger --------------------------------------------------------------------------------


@click.group("ledger")
def ledger() -> None:
    """The signed ledger (存证): show, verify, export for auditors."""


@ledger.command("show")
@click.option("--job", "job_id", help="Only this job's entries.")
@click.option("--limit", type=int, default=50, show_default=True)
@api_command
def ledger_show(
    job_id: str | None, limit: int, directory: str, api_url: str | None, as_json: bool
) -> None:
    """List ledger entries (the node's API; auditor or admin)."""
    q = f"?limit={limit}" + (f"&job_id={job_id}" if job_id else "")
    out = Api(directory, api_url).call("GET", "/v1/ledger" + q)
    lines = [
        f"{st['entry']['seq']:6} {st['entry']['at'][:19]} {st['entry']['kind']:22} "
        f"{st['entry']['actor']:18} {st['entry']['job'] or ''}"
        for st in out["entries"]
    ]
    emit(out, as_json, "\n".join(lines))


def _print_report(rep: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    elif rep["ok"]:
        click.echo(
            f"OK: ledger of {rep['node']}: {rep['entries']} entries, {rep['job_records']} "
            f"countersigned job records, head {rep['head'][:16]}…"
        )
    else:
        click.echo(f"FAILED: ledger of {rep['node'] or '?'}: {len(rep['problems'])} problem(s)")
        for p in rep["problems"]:
            click.echo(f"  - {p}")


@ledger.command("verify")
@dir_option
@click.option("--bundle", type=click.Path(file_okay=False), help="Verify an exported bundle.")
@click.option("--fingerprint", help="The node's certificate fingerprint, as pinned by peers.")
@json_option
def ledger_verify(
    directory: str, bundle: str | None, fingerprint: str | None, as_json: bool
) -> None:
    """Check every entry's hash, chain, signature, the job records and the signed head.

    Reads the node's database in --dir directly (the node may be running or stopped), or an
    exported --bundle. Exit code 0: intact; 8: tampering found.
    """
    from rainbridge.audit.verify_ledger import verify_bundle
    from rainbridge.node.ledger import verify_directory

    try:
        rep = (
            verify_bundle(bundle, fingerprint)
            if bundle
            else verify_directory(directory, fingerprint)
        )
    except RainbridgeError as exc:
        fail_with(exc)
    _print_report(rep.to_dict(), as_json)
    if not rep.ok:
        sys.exit(8)


@ledger.command("export")
@dir_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder.")
@json_option
def ledger_export(directory: str, out: str, as_json: bool) -> None:
    """Write a bundle (entries, head, certificates, verifier) an auditor checks alone."""
    from rainbridge.node.ledger import export_directory

    try:
        path, n = export_directory(directory, Path(out))
    except RainbridgeError as exc:
        fail_with(exc)
    emit(
        {"bundle": str(path), "entries": n},
        as_json,
        f"{n} entries exported to {path}\ncheck it with: python {path}/verify_ledger.py {path}",
    )


# -- metering ------------------------------------------------------------------------------


@click.group("metering")
def metering() -> None:
    """What jobs used, per peer, grant and component (计量)."""


@metering.command("report")
@click.option("--since", help="Start of the period (ISO date or time, inclusive).")
@click.option("--until", help="End of the period (exclusive).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (for billing).")
@api_command
def metering_report(
    since: str | None,
    until: str | None,
    as_csv: bool,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Usage in a period, summed by peer, grant and component type."""
    from rainbridge.node.metering import report_csv

    q = "&".join(f"{k}={v}" for k, v in (("since", since), ("until", until)) if v)
    rep = Api(directory, api_url).call("GET", "/v1/metering" + (f"?{q}" if q else ""))
    if as_csv:
        click.echo(report_csv(rep), nl=False)
        return
    lines = [
        f"{'peer':10} {'grant':16} {'component':10} {'calls':>5} {'rows':>10} "
        f"{'bytes':>12} {'cpu s':>8}"
    ]
    for r in rep["lines"]:
        lines.append(
            f"{r['peer']:10} {r['grant_id'] or '-':16} {r['component_type']:10} {r['calls']:5} "
            f"{r['rows']:10} {r['bytes']:12} {r['cpu_seconds']:8.2f}"
        )
    emit(rep, as_json, "\n".join(lines))
