"""The ``rainbridge`` command: run a node, manage peers, datasets and jobs, simulate locally.

Exit codes: 0 success; 1 unexpected; 2 bad configuration, job file or arguments; 3 data
problem; 4 refused (authorization, authentication); 5 a peer or channel failed; 6 the job
failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from rainbridge.errors import (
    AuthenticationError,
    AuthorizationError,
    ChannelError,
    ConfigError,
    DataError,
    RainbridgeError,
)

EXIT = {ConfigError: 2, DataError: 3, AuthorizationError: 4, AuthenticationError: 4,
        ChannelError: 5}  # fmt: skip


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _exit_code(exc: RainbridgeError) -> int:
    for cls, code in EXIT.items():
        if isinstance(exc, cls):
            return code
    return 1


def _emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text)


class Api:
    """A thin client of a running node's REST API."""

    def __init__(self, directory: str) -> None:
        from rainbridge.node.config import NodeConfig

        self.config = NodeConfig.load(directory)
        self.token = os.environ.get("RAINBRIDGE_TOKEN") or self.config.token()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            r = httpx.request(
                method,
                self.config.api_url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=120,
            )
        except httpx.HTTPError:
            _fail(
                f"node {self.config.name!r} is not running at {self.config.api_url} "
                f"(start it with `rainbridge node start --dir {self.config.dir}`)",
                5,
            )
        try:
            data = r.json()
        except ValueError:
            _fail(f"node answered {r.status_code} without JSON", 1)
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            code = {400: 2, 401: 4, 403: 4, 404: 2, 409: 4, 502: 5, 504: 5}.get(r.status_code, 1)
            _fail(str(err.get("message", r.text)), code)
        return data


dir_option = click.option(
    "--dir",
    "directory",
    default=lambda: os.environ.get("RAINBRIDGE_DIR", "."),
    show_default="$RAINBRIDGE_DIR or .",
    help="The node's directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
@click.version_option(package_name="rainbridge")
def main() -> None:
    """Rainbridge: privacy-preserving computation between institutions' nodes."""


# -- node ---------------------------------------------------------------------------------


@main.group()
def node() -> None:
    """Create and run this party's node."""


@node.command("init")
@click.option("--name", required=True, help="This party's name, as peers will know it.")
@dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Data-plane address.")
@click.option("--data-port", type=int, default=0, help="Data-plane port (0: pick a free one).")
@click.option("--api-port", type=int, default=0, help="REST API port (0: pick a free one).")
@click.option("--db", default="", help="SQLAlchemy URL (default: SQLite in the directory).")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@json_option
def node_init(
    name: str,
    directory: str,
    host: str,
    data_port: int,
    api_port: int,
    db: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Create a node: key, self-signed certificate, API token and configuration."""
    from rainbridge.crypto.certs import create_identity
    from rainbridge.node.config import NodeConfig, check_name, free_port, write_token

    try:
        check_name(name)
        d = Path(directory).resolve()
        if (d / "node.json").exists():
            _fail(f"{d} already holds a node", 2)
        d.mkdir(parents=True, exist_ok=True)
        ident = create_identity(d, name, hosts=("localhost", "127.0.0.1", host))
        write_token(d)
        cfg = NodeConfig(
            name=name,
            dir=str(d),
            data_host=host,
            data_port=data_port or free_port(),
            api_port=api_port or free_port(),
            db_url=db,
            timeout=timeout,
        )
        cfg.save()
    except RainbridgeError as exc:
        _fail(str(exc), _exit_code(exc))
    out = {
        "name": name,
        "dir": str(d),
        "fingerprint": ident.fingerprint,
        "data_plane": cfg.data_url,
        "api": cfg.api_url,
    }
    _emit(
        out,
        as_json,
        f"node {name!r} created in {d}\n"
        f"  data plane  {cfg.data_url}   (give peers this address and the fingerprint)\n"
        f"  fingerprint {ident.fingerprint}\n"
        f"  REST API    {cfg.api_url}   (token in {d / 'api.token'})\n"
        f"start it with: rainbridge node start --dir {d}",
    )


@node.command("start")
@dir_option
def node_start(directory: str) -> None:
    """Run the node (REST API and data plane) until interrupted."""
    from rainbridge.node.config import NodeConfig
    from rainbridge.node.server import run

    try:
        cfg = NodeConfig.load(directory)
        click.echo(f"node {cfg.name!r}: API {cfg.api_url}, data plane {cfg.data_url}", err=True)
        run(cfg)
    except RainbridgeError as exc:
        _fail(str(exc), _exit_code(exc))
    except OSError as exc:
        _fail(f"cannot start the node: {exc}", 2)


@node.command("info")
@dir_option
@json_option
def node_info(directory: str, as_json: bool) -> None:
    """Show the running node's name, fingerprint and data plane."""
    info = Api(directory).call("GET", "/v1/node")
    _emit(info, as_json, "\n".join(f"{k:12} {v}" for k, v in info.items()))


# -- peers --------------------------------------------------------------------------------


@main.group()
def peer() -> None:
    """Pin the peers this node works with."""


@peer.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The peer's data plane, HOST:PORT.")
@click.option("--fingerprint", required=True, help="SHA-256 of the peer's certificate.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Peer certificate.")
@dir_option
@json_option
def peer_add(
    name: str, url: str, fingerprint: str, cert: str | None, directory: str, as_json: bool
) -> None:
    """Pin a peer: only its certificate will be accepted under NAME."""
    body = {"name": name, "url": url, "fingerprint": fingerprint}
    if cert:
        body["cert_pem"] = Path(cert).read_text()
    out = Api(directory).call("POST", "/v1/peers", body)
    _emit(out, as_json, f"peer {name!r} pinned at {out['url']}")


@peer.command("list")
@dir_option
@json_option
def peer_list(directory: str, as_json: bool) -> None:
    """List pinned peers."""
    rows = Api(directory).call("GET", "/v1/peers")
    _emit(
        rows, as_json, "\n".join(f"{r['name']:16} {r['url']:22} {r['fingerprint']}" for r in rows)
    )


# -- datasets -----------------------------------------------------------------------------


@main.group()
def dataset() -> None:
    """Register the data this node may compute on (read in place, never copied)."""


@dataset.command("add")
@click.argument("name")
@click.option("--path", required=True, help="A CSV or Parquet file.")
@click.option("--id", "id_column", help="The column that identifies a row.")
@dir_option
@json_option
def dataset_add(name: str, path: str, id_column: str | None, directory: str, as_json: bool) -> None:
    """Register a dataset: its schema and row count are recorded."""
    out = Api(directory).call(
        "POST",
        "/v1/datasets",
        {"name": name, "path": str(Path(path).resolve()), "id_column": id_column},
    )
    _emit(out, as_json, f"dataset {name!r}: {out['num_rows']} rows, {len(out['columns'])} columns")


@dataset.command("list")
@dir_option
@json_option
def dataset_list(directory: str, as_json: bool) -> None:
    """List registered datasets."""
    rows = Api(directory).call("GET", "/v1/datasets")
    _emit(rows, as_json, "\n".join(f"{r['name']:16} {r['num_rows']:>10} {r['path']}" for r in rows))


# -- jobs ---------------------------------------------------------------------------------


@main.group()
def job() -> None:
    """Submit jobs and follow them."""


def _bar(row: dict[str, Any]) -> str:
    prog = row.get("progress") or {}
    frac = sum(prog.values()) / len(prog) if prog else 0.0
    filled = int(frac * 30)
    return f"\r[{'#' * filled}{'.' * (30 - filled)}] {frac:4.0%} {row['status']:10}"


def _wait(api: Api, job_id: str, quiet: bool) -> dict[str, Any]:
    while True:
        row = api.call("GET", f"/v1/jobs/{job_id}")
        if not quiet:
            click.echo(_bar(row), nl=False, err=True)
        if row["status"] in ("succeeded", "failed", "refused", "aborted", "cancelled"):
            if not quiet:
                click.echo("", err=True)
            return dict(row)
        time.sleep(0.3)


@job.command("submit")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--wait/--no-wait", default=True, help="Follow the job with a progress bar.")
@dir_option
@json_option
def job_submit(job_file: str, wait: bool, directory: str, as_json: bool) -> None:
    """Propose a job to every party; run it once all accept."""
    from rainbridge.jobs.spec import load_job

    try:
        spec = load_job(job_file)
    except RainbridgeError as exc:
        _fail(str(exc), _exit_code(exc))
    api = Api(directory)
    row = api.call("POST", "/v1/jobs", {"spec": spec.to_dict()})
    if not as_json:
        click.echo(f"job {row['id']} accepted by {', '.join(row['parties'])}", err=True)
    if wait:
        row = _wait(api, row["id"], as_json)
    _emit(
        row,
        as_json,
        f"job {row['id']}: {row['status']}" + (f" ({row['error']})" if row.get("error") else ""),
    )
    if row["status"] in ("failed", "refused", "aborted"):
        sys.exit(6)


@job.command("status")
@click.argument("job_id")
@dir_option
@json_option
def job_status(job_id: str, directory: str, as_json: bool) -> None:
    """Show a job's status and progress."""
    row = Api(directory).call("GET", f"/v1/jobs/{job_id}")
    text = _bar(row).lstrip("\r") + (f"\n  error: {row['error']}" if row.get("error") else "")
    _emit(row, as_json, f"job {row['id']} ({row['name']}) {text}")


@job.command("result")
@click.argument("job_id")
@dir_option
@json_option
def job_result(job_id: str, directory: str, as_json: bool) -> None:
    """Show what a finished job produced at this node."""
    out = Api(directory).call("GET", f"/v1/jobs/{job_id}/result")
    if as_json or out["status"] != "succeeded":
        _emit(out, True)
        if out["status"] != "succeeded":
            sys.exit(6)
        return
    for cid, comp in out["result"]["components"].items():
        line = f"{cid}: intersection {comp.get('intersection_size')}"
        click.echo(line)
        for name, o in comp.get("outputs", {}).items():
            click.echo(f"  {name}: {o['rows']} rows -> {o['path']}")


@job.command("list")
@dir_option
@json_option
def job_list(directory: str, as_json: bool) -> None:
    """List recent jobs at this node."""
    rows = Api(directory).call("GET", "/v1/jobs")
    _emit(rows, as_json, "\n".join(f"{r['id']}  {r['status']:10} {r['name']}" for r in rows))


@job.command("cancel")
@click.argument("job_id")
@dir_option
@json_option
def job_cancel(job_id: str, directory: str, as_json: bool) -> None:
    """Stop a job here and tell the other parties."""
    row = Api(directory).call("POST", f"/v1/jobs/{job_id}/cancel")
    _emit(row, as_json, f"job {row['id']}: {row['status']}")


# -- local simulation and catalogue ---------------------------------------------------------


@main.command("run")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--local", is_flag=True, required=True, help="Every party in this process.")
@click.option("--dataset", "datasets", multiple=True, help="PARTY.DATASET=PATH (repeat).")
@click.option("--out", default="out", show_default=True, help="Outputs go to OUT/<party>/.")
@json_option
def run_cmd(job_file: str, local: bool, datasets: tuple[str, ...], out: str, as_json: bool) -> None:
    """Run a job with every party in one process (no nodes): same components, same outputs."""
    from rainbridge.jobs.local import datasets_from_args, run_local
    from rainbridge.jobs.spec import load_job

    try:
        spec = load_job(job_file)
        data = datasets_from_args(spec, list(datasets))
        results = run_local(spec, data, out)
    except RainbridgeError as exc:
        _fail(str(exc), _exit_code(exc))
    if as_json:
        _emit(results, True)
        return
    for party, res in results.items():
        for cid, comp in res["components"].items():
            click.echo(f"{party}: {cid}: intersection {comp.get('intersection_size')}")
            for name, o in comp.get("outputs", {}).items():
                click.echo(f"  {name}: {o['rows']} rows -> {o['path']}")


@main.command("components")
@json_option
def components(as_json: bool) -> None:
    """List the components a job can use, with their parameters."""
    from rainbridge.components import list_components

    items = [c.describe() for c in list_components()]
    _emit(items, as_json, "\n".join(f"{c['type']:12} {c['summary']}" for c in items))


if __name__ == "__main__":
    main()
