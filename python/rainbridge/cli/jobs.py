"""``rainbridge job``, ``run --local`` and ``components``: submit and follow jobs, simulate."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from rainbridge.cli.common import (
    EXIT_CODES,
    FINAL,
    PENDING_APPROVAL,
    UNSUCCESSFUL,
    Api,
    api_command,
    decision_text,
    emit,
    fail,
    fail_with,
    json_option,
)
from rainbridge.cli.summaries import component_types, describe_result
from rainbridge.errors import RainbridgeError

# -- jobs ---------------------------------------------------------------------------------


@click.group("job")
def job() -> None:
    """Submit jobs and follow them."""


def job_fraction(row: dict[str, Any]) -> float:
    """A job's overall progress: the mean over all its components (not yet begun = 0)."""
    prog = row.get("progress") or {}
    comps = row.get("components") or list(prog)
    if row.get("status") == "succeeded":
        return 1.0
    if not comps:
        return 0.0
    return sum(float(prog.get(c, 0.0)) for c in comps) / len(comps)


def _bar(row: dict[str, Any], width: int = 30) -> str:
    frac = job_fraction(row)
    filled = int(frac * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {frac:4.0%} {row['status']}"


def wait_for_job(api: Api, job_id: str, show: bool) -> dict[str, Any]:
    """Poll a job until it ends; draw a progress bar on a terminal."""
    last = ""
    while True:
        row = api.call("GET", f"/v1/jobs/{job_id}")
        if show:
            bar = _bar(row)
            if bar != last:
                click.echo(f"\r{bar:<48}", nl=False, err=True)
                last = bar
        if row["status"] in FINAL:
            if show:
                click.echo("", err=True)
            return dict(row)
        time.sleep(0.3)


@job.command("submit")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends.")
@api_command
def job_submit(
    job_file: str, wait: bool, directory: str, api_url: str | None, as_json: bool
) -> None:
    """Propose a job to every party; it runs once all accept.

    With --wait (the default) a progress bar follows it, and the exit code says how it ended.
    """
    from rainbridge.jobs.spec import load_job

    try:
        spec = load_job(job_file)
    except RainbridgeError as exc:
        fail_with(exc)
    api = Api(directory, api_url)
    row = api.call("POST", "/v1/jobs", {"spec": spec.to_dict()})
    if not as_json and row["status"] == "pending_approval":
        held = [p for p, d in row["decisions"].items() if d.get("reason") == PENDING_APPROVAL]
        click.echo(
            f"job {row['id']} is waiting for approval by the data owner at {', '.join(held)}",
            err=True,
        )
    elif not as_json:
        click.echo(f"job {row['id']} accepted by {', '.join(row['parties'])}", err=True)
    if wait:
        row = wait_for_job(api, row["id"], show=not as_json and sys.stderr.isatty())
    emit(
        row,
        as_json,
        f"job {row['id']}: {row['status']}" + (f" ({row['error']})" if row.get("error") else ""),
    )
    if wait and not as_json and row["status"] == "succeeded":
        _show_result(api, row)
    if row["status"] in UNSUCCESSFUL:
        sys.exit(EXIT_CODES["job_failed"])


@job.command("approve")
@click.argument("job_id")
@api_command
def job_approve(job_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Approve a job held under a grant in manual-approval mode (a data owner)."""
    row = Api(directory, api_url).call("POST", f"/v1/jobs/{job_id}/approve")
    emit(row, as_json, f"job {job_id}: approved here; now {row['status']}")


@job.command("decline")
@click.argument("job_id")
@click.option("--reason", default="", help="Told to the other parties.")
@api_command
def job_decline(
    job_id: str, reason: str, directory: str, api_url: str | None, as_json: bool
) -> None:
    """Refuse a job held for approval."""
    row = Api(directory, api_url).call("POST", f"/v1/jobs/{job_id}/decline", {"reason": reason})
    emit(row, as_json, f"job {job_id}: declined")


@job.command("status")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job until it ends.")
@api_command
def job_status(job_id: str, wait: bool, directory: str, api_url: str | None, as_json: bool) -> None:
    """Show a job's status, progress and the parties' decisions.

    With --wait the exit code says how the job ended, as for `job submit`: 6 if it did not
    succeed.
    """
    api = Api(directory, api_url)
    if wait:
        row = wait_for_job(api, job_id, show=not as_json and sys.stderr.isatty())
    else:
        row = api.call("GET", f"/v1/jobs/{job_id}")
    lines = [f"job {row['id']} ({row['name']}) {_bar(row)}"]
    for party, d in (row.get("decisions") or {}).items():
        lines.append(f"  {party:12} {decision_text(d)}")
    if row.get("error"):
        lines.append(f"  error: {row['error']}")
    emit(row, as_json, "\n".join(lines))
    if wait and not as_json and row["status"] == "succeeded":
        _show_result(api, row)
    if wait and row["status"] in UNSUCCESSFUL:
        sys.exit(EXIT_CODES["job_failed"])


def _show_result(api: Api, row: dict[str, Any]) -> None:
    """After a job succeeded: what it produced here, as ``job result`` prints it."""
    out = api.call("GET", f"/v1/jobs/{row['id']}/result")
    if out.get("status") == "succeeded":
        types = component_types(row.get("spec"))
        click.echo("\n".join(describe_result(out.get("result") or {}, types)))


@job.command("result")
@click.argument("job_id")
@api_command
def job_result(job_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Show what a finished job produced at this node."""
    api = Api(directory, api_url)
    out = api.call("GET", f"/v1/jobs/{job_id}/result")
    if out["status"] != "succeeded":
        if as_json:
            emit(out, True)
        else:
            click.echo(
                f"job {job_id} is {out['status']}"
                + (f": {out['error']}" if out.get("error") else ""),
                err=True,
            )
        sys.exit(EXIT_CODES["job_failed"] if out["status"] in UNSUCCESSFUL else 0)
    if as_json:
        emit(out, True)
        return
    # the spec names each component's type; the result holds only their summaries
    types = component_types(api.call("GET", f"/v1/jobs/{job_id}").get("spec"))
    click.echo("\n".join(describe_result(out["result"] or {}, types)))


@job.command("output")
@click.argument("job_id")
@click.argument("component")
@click.argument("output")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Save the file here.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows to print.")
@api_command
def job_output(
    job_id: str,
    component: str,
    output: str,
    out_path: str | None,
    limit: int,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """An output this node received from a job: its first rows, or the file (--out)."""
    api = Api(directory, api_url)
    path = f"/v1/jobs/{job_id}/outputs/{component}/{output}"
    if out_path:
        data = api.raw("GET", path + "?format=file")
        Path(out_path).write_bytes(data)
        emit({"path": out_path, "bytes": len(data)}, as_json, f"{len(data)} bytes -> {out_path}")
        return
    out = api.call("GET", f"{path}?limit={limit}")
    cols = out["columns"]
    lines = ["\t".join(cols)] + ["\t".join(str(r.get(c, "")) for c in cols) for r in out["rows"]]
    lines.append(f"({len(out['rows'])} of {out['total']} rows)")
    emit(out, as_json, "\n".join(lines))


@job.command("list")
@api_command
def job_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List recent jobs at this node."""
    rows = Api(directory, api_url).call("GET", "/v1/jobs")
    emit(rows, as_json, "\n".join(f"{r['id']}  {r['status']:10} {r['name']}" for r in rows))


@job.command("cancel")
@click.argument("job_id")
@api_command
def job_cancel(job_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Stop a job here and tell the other parties."""
    row = Api(directory, api_url).call("POST", f"/v1/jobs/{job_id}/cancel")
    emit(row, as_json, f"job {row['id']}: {row['status']}")


# -- local simulation and catalogue ---------------------------------------------------------


@click.command("run")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--local", is_flag=True, required=True, help="Every party in this process.")
@click.option("--dataset", "datasets", multiple=True, help="PARTY.DATASET=PATH (repeat).")
@click.option("--out", default="out", show_default=True, help="Outputs go to OUT/<party>/.")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PARTY:NAME=PATH",
    help="A party's part of a model from an earlier run, for a predict naming NAME (repeat).",
)
@json_option
def run_cmd(
    job_file: str,
    local: bool,
    datasets: tuple[str, ...],
    out: str,
    models: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run a job with every party in one process (no nodes): same components, same outputs."""
    from rainbridge.jobs.local import datasets_from_args, models_from_args, run_local
    from rainbridge.jobs.spec import load_job

    if not local:
        fail("only --local runs are done here; submit to a node with `rainbridge job submit`", 2)
    try:
        spec = load_job(job_file)
        data = datasets_from_args(spec, list(datasets))
        results = run_local(spec, data, out, models=models_from_args(spec, list(models)))
    except RainbridgeError as exc:
        fail_with(exc)
    if as_json:
        emit(results, True)
        return
    types = component_types(spec)
    for party, res in results.items():
        click.echo(f"{party}:")
        for line in describe_result(res, types):
            click.echo(f"  {line}")


@click.command("components")
@click.argument("name", required=False)
@json_option
def components(name: str | None, as_json: bool) -> None:
    """List the components a job can use; with NAME, that component's parameters (type,
    default, constraints, meaning) and outputs."""
    from rainbridge.components import get_component, list_components

    if name is None:
        items = [c.describe() for c in list_components()]
        emit(items, as_json, "\n".join(f"{c['type']:12} {c['summary']}" for c in items))
        return
    from rainbridge.cli.catalogue import describe_component

    try:
        component = get_component(name)
    except RainbridgeError as exc:
        fail_with(exc)
    emit(component.describe(), as_json, "\n".join(describe_component(component)))
