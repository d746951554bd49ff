"""The ``rainbridge`` command: run a node, manage peers, datasets and jobs, simulate locally.

Commands other than ``node init``, ``node start``, ``run --local`` and ``components`` talk
to a running node's REST API: at ``--api URL`` (or ``$RAINBRIDGE_API``), else at the address
in ``--dir``'s configuration; the bearer token comes from ``$RAINBRIDGE_TOKEN``, else from
``--dir``.

Exit codes (see :data:`EXIT_CODES`): 0 success; 1 unexpected; 2 bad configuration, job file
or arguments; 3 data problem; 4 refused (authorization, authentication, a party said no);
5 a peer, a channel or the node is unreachable or failed; 6 the job failed, was cancelled or
aborted; 7 not found.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from rainbridge.errors import RainbridgeError

#: exit code of each error code (``RainbridgeError.code``, as the API returns it)
EXIT_CODES = {
    "config": 2,
    "job_spec": 2,
    "parameter_mismatch": 2,
    "invalid_request": 2,
    "data": 3,
    "unauthorized": 4,
    "invalid_token": 4,
    "job_refused": 4,
    "authentication": 4,
    "channel": 5,
    "peer_disconnected": 5,
    "protocol_violation": 5,
    "timeout": 5,
    "unreachable": 5,
    "job_failed": 6,
    "not_found": 7,
}
#: statuses a job never leaves, and those of them that mean it did not succeed
FINAL = ("succeeded", "failed", "refused", "aborted", "cancelled")
UNSUCCESSFUL = ("failed", "refused", "aborted", "cancelled")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _exit_code(code: str) -> int:
    return EXIT_CODES.get(code, 1)


def _fail_with(exc: RainbridgeError) -> NoReturn:
    _fail(str(exc), _exit_code(exc.code))


def _emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text)


class Api:
    """A thin client of a running node's REST API.

    Parameters
    ----------
    directory : str
        The node's directory (its configuration gives the API address and the token).
    url : str or None
        The API's address; overrides the directory's configuration.
    """

    def __init__(self, directory: str, url: str | None = None) -> None:
        from rainbridge.node.config import NodeConfig

        self.config: NodeConfig | None = None
        token = os.environ.get("RAINBRIDGE_TOKEN", "").strip()
        try:
            if url is None or not token:
                self.config = NodeConfig.load(directory)
            self.url = (url or (self.config.api_url if self.config else "")).rstrip("/")
            self.token = token or (self.config.token() if self.config else "")
        except RainbridgeError as exc:
            if url is not None:
                _fail(f"{exc}; or set RAINBRIDGE_TOKEN to the node's API token", 2)
            _fail_with(exc)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            r = httpx.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=120,
            )
        except httpx.HTTPError:
            hint = (
                f" (start it with `rainbridge node start --dir {self.config.dir}`)"
                if self.config is not None
                else ""
            )
            _fail(f"no node answers at {self.url}{hint}", 5)
        try:
            data = r.json()
        except ValueError:
            _fail(f"the node answered {r.status_code} without JSON", 1)
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            code = str(err.get("code", ""))
            _fail(str(err.get("message", r.text)), _exit_code(code))
        return data


dir_option = click.option(
    "--dir",
    "directory",
    default=lambda: os.environ.get("RAINBRIDGE_DIR", "."),
    show_default="$RAINBRIDGE_DIR or .",
    help="The node's directory.",
)
api_option = click.option(
    "--api",
    "api_url",
    default=lambda: os.environ.get("RAINBRIDGE_API") or None,
    show_default="$RAINBRIDGE_API, else from --dir",
    help="The node's REST API, e.g. http://127.0.0.1:8700.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _api_command(f: Any) -> Any:
    """Options of every command that talks to a running node."""
    return dir_option(api_option(json_option(f)))


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
@click.option(
    "--api-host",
    default="127.0.0.1",
    show_default=True,
    help="REST API address (keep it on loopback unless a proxy guards it).",
)
@click.option("--api-port", type=int, default=0, help="REST API port (0: pick a free one).")
@click.option("--db", default="", help="SQLAlchemy URL (default: SQLite in the directory).")
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a job waits for a peer's message before it fails.",
)
@json_option
def node_init(
    name: str,
    directory: str,
    host: str,
    data_port: int,
    api_host: str,
    api_port: int,
    db: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Create a node: key, self-signed certificate, API token and configuration.

    Prints what a peer needs to pin this node: the data-plane address and the certificate's
    SHA-256 fingerprint.
    """
    from rainbridge.crypto.certs import create_identity
    from rainbridge.node.config import (
        CONFIG_FILE,
        NodeConfig,
        check_name,
        free_port,
        private_dir,
        write_token,
    )

    try:
        check_name(name)
        d = Path(directory).resolve()
        if (d / CONFIG_FILE).exists():
            _fail(f"{d} already holds a node", 2)
        cfg = NodeConfig(
            name=name,
            dir=str(d),
            api_host=api_host,
            api_port=api_port or free_port(api_host),
            data_host=host,
            data_port=data_port or free_port(host),
            db_url=db,
            timeout=timeout,
        )
        cfg.check()
        private_dir(d)
        ident = create_identity(d, name, hosts=("localhost", "127.0.0.1", host))
        write_token(d)
        cfg.save()
    except RainbridgeError as exc:
        _fail_with(exc)
    except OSError as exc:
        _fail(f"cannot create the node in {directory}: {exc.strerror or exc}", 2)
    if api_host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: the REST API will listen on {api_host}, not only on loopback; "
            "anyone who can reach it and holds the token controls the node",
            err=True,
        )
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
    """Run the node (REST API and data plane) until SIGINT or SIGTERM.

    On a stop signal, running jobs fail with "node stopped", the other parties are told, the
    workers are stopped and no partial output is left.
    """
    from rainbridge.node.config import NodeConfig
    from rainbridge.node.server import run

    try:
        cfg = NodeConfig.load(directory)
        click.echo(f"node {cfg.name!r}: API {cfg.api_url}, data plane {cfg.data_url}", err=True)
        run(cfg)
    except RainbridgeError as exc:
        _fail_with(exc)
    except OSError as exc:
        _fail(f"cannot start the node: {exc.strerror or exc}", 2)


@node.command("info")
@_api_command
def node_info(directory: str, api_url: str | None, as_json: bool) -> None:
    """Show the running node's name, fingerprint and data plane."""
    info = Api(directory, api_url).call("GET", "/v1/node")
    _emit(info, as_json, "\n".join(f"{k:12} {v}" for k, v in info.items()))


# -- peers --------------------------------------------------------------------------------


@main.group()
def peer() -> None:
    """Pin the peers this node works with."""


@peer.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The peer's data plane, HOST:PORT.")
@click.option("--fingerprint", required=True, help="SHA-256 of the peer's certificate.")
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False),
    help="The peer's certificate (PEM); fetched from --url if not given.",
)
@_api_command
def peer_add(
    name: str,
    url: str,
    fingerprint: str,
    cert: str | None,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Pin a peer: only a certificate with FINGERPRINT will be accepted as NAME."""
    body = {"name": name, "url": url, "fingerprint": fingerprint}
    if cert:
        body["cert_pem"] = Path(cert).read_text()
    out = Api(directory, api_url).call("POST", "/v1/peers", body)
    _emit(out, as_json, f"peer {name!r} pinned at {out['url']}")


@peer.command("list")
@_api_command
def peer_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List pinned peers."""
    rows = Api(directory, api_url).call("GET", "/v1/peers")
    _emit(
        rows, as_json, "\n".join(f"{r['name']:16} {r['url']:22} {r['fingerprint']}" for r in rows)
    )


# -- datasets -----------------------------------------------------------------------------


@main.group()
def dataset() -> None:
    """Register the data this node may compute on (read in place, never copied)."""


@dataset.command("add")
@click.argument("name")
@click.option("--path", required=True, help="A CSV or Parquet file (read in place).")
@click.option("--id", "id_column", help="The column that identifies a row.")
@_api_command
def dataset_add(
    name: str,
    path: str,
    id_column: str | None,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Register a dataset: its schema and row count are recorded, the file stays where it is."""
    out = Api(directory, api_url).call(
        "POST",
        "/v1/datasets",
        {"name": name, "path": str(Path(path).resolve()), "id_column": id_column},
    )
    _emit(out, as_json, f"dataset {name!r}: {out['num_rows']} rows, {len(out['columns'])} columns")


@dataset.command("list")
@_api_command
def dataset_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List registered datasets."""
    rows = Api(directory, api_url).call("GET", "/v1/datasets")
    _emit(rows, as_json, "\n".join(f"{r['name']:16} {r['num_rows']:>10} {r['path']}" for r in rows))


# -- jobs ---------------------------------------------------------------------------------


@main.group()
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


def _wait(api: Api, job_id: str, show: bool) -> dict[str, Any]:
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
@_api_command
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
        _fail_with(exc)
    api = Api(directory, api_url)
    row = api.call("POST", "/v1/jobs", {"spec": spec.to_dict()})
    if not as_json:
        click.echo(f"job {row['id']} accepted by {', '.join(row['parties'])}", err=True)
    if wait:
        row = _wait(api, row["id"], show=not as_json and sys.stderr.isatty())
    _emit(
        row,
        as_json,
        f"job {row['id']}: {row['status']}" + (f" ({row['error']})" if row.get("error") else ""),
    )
    if row["status"] in UNSUCCESSFUL:
        sys.exit(EXIT_CODES["job_failed"])


@job.command("status")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job until it ends.")
@_api_command
def job_status(job_id: str, wait: bool, directory: str, api_url: str | None, as_json: bool) -> None:
    """Show a job's status, progress and the parties' decisions."""
    api = Api(directory, api_url)
    if wait:
        row = _wait(api, job_id, show=not as_json and sys.stderr.isatty())
    else:
        row = api.call("GET", f"/v1/jobs/{job_id}")
    lines = [f"job {row['id']} ({row['name']}) {_bar(row)}"]
    for party, d in (row.get("decisions") or {}).items():
        said = "accepted" if d.get("accept") else f"refused: {d.get('reason')}"
        lines.append(f"  {party:12} {said}")
    if row.get("error"):
        lines.append(f"  error: {row['error']}")
    _emit(row, as_json, "\n".join(lines))


def _describe_result(result: dict[str, Any]) -> list[str]:
    lines = []
    for cid, comp in result.get("components", {}).items():
        facts = ", ".join(
            f"{k} {v}" for k, v in comp.items() if isinstance(v, int | float | str) and k != "type"
        )
        lines.append(f"{cid}: {facts}" if facts else cid)
        for name, o in comp.get("outputs", {}).items():
            lines.append(f"  {name}: {o.get('rows')} rows -> {o.get('path')}")
    lines.append(
        f"sent {result.get('bytes_sent', 0):,} B, received {result.get('bytes_received', 0):,} B"
    )
    return lines


@job.command("result")
@click.argument("job_id")
@_api_command
def job_result(job_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Show what a finished job produced at this node."""
    out = Api(directory, api_url).call("GET", f"/v1/jobs/{job_id}/result")
    if out["status"] != "succeeded":
        if as_json:
            _emit(out, True)
        else:
            click.echo(
                f"job {job_id} is {out['status']}"
                + (f": {out['error']}" if out.get("error") else ""),
                err=True,
            )
        sys.exit(EXIT_CODES["job_failed"] if out["status"] in UNSUCCESSFUL else 0)
    _emit(out, as_json, "\n".join(_describe_result(out["result"] or {})))


@job.command("list")
@_api_command
def job_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List recent jobs at this node."""
    rows = Api(directory, api_url).call("GET", "/v1/jobs")
    _emit(rows, as_json, "\n".join(f"{r['id']}  {r['status']:10} {r['name']}" for r in rows))


@job.command("cancel")
@click.argument("job_id")
@_api_command
def job_cancel(job_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Stop a job here and tell the other parties."""
    row = Api(directory, api_url).call("POST", f"/v1/jobs/{job_id}/cancel")
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

    if not local:
        _fail("only --local runs are done here; submit to a node with `rainbridge job submit`", 2)
    try:
        spec = load_job(job_file)
        data = datasets_from_args(spec, list(datasets))
        results = run_local(spec, data, out)
    except RainbridgeError as exc:
        _fail_with(exc)
    if as_json:
        _emit(results, True)
        return
    for party, res in results.items():
        for line in _describe_result(res):
            click.echo(f"{party}: {line}")


@main.command("components")
@json_option
def components(as_json: bool) -> None:
    """List the components a job can use, with their parameters."""
    from rainbridge.components import list_components

    items = [c.describe() for c in list_components()]
    _emit(items, as_json, "\n".join(f"{c['type']:12} {c['summary']}" for c in items))


if __name__ == "__main__":
    main()
