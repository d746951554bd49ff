"""``rainbridge node``, ``peer`` and ``dataset``: run a node, pin peers, register data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from rainbridge.cli.common import (
    EXIT_UNREACHABLE,
    Api,
    api_command,
    dir_option,
    emit,
    fail,
    fail_with,
    json_option,
)
from rainbridge.errors import RainbridgeError

# -- node ---------------------------------------------------------------------------------


@click.group("node")
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
    help="REST API and console address; off loopback they are served over HTTPS.",
)
@click.option("--api-port", type=int, default=0, help="REST API port (0: pick a free one).")
@click.option(
    "--api-tls",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="HTTPS for the REST API: auto = off loopback or with --api-cert; off = loopback only.",
)
@click.option(
    "--api-cert",
    default="",
    help="The API's certificate (PEM, e.g. from your CA); default: the node's own.",
)
@click.option("--api-key", default="", help="The key of --api-cert (PEM).")
@click.option("--db", default="", help="SQLAlchemy URL (default: SQLite in the directory).")
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a job waits for a peer's message before it fails.",
)
@click.option(
    "--crypto-suite",
    type=click.Choice(["standard", "gm"]),
    default="standard",
    show_default=True,
    help="standard: SHA-256/Ed25519/AES-GCM; gm (国密): SM3/SM2/SM4-GCM.",
)
@click.option(
    "--master-key-file",
    default=None,
    help="Where the master key lives (default DIR/master.key; $RAINBRIDGE_MASTER_KEY wins).",
)
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    metavar="FOLDER",
    help="A folder datasets may be registered from (repeat). Without any, any path but the "
    "node directory; a production node should name its data folders.",
)
@json_option
def node_init(
    name: str,
    directory: str,
    host: str,
    data_port: int,
    api_host: str,
    api_port: int,
    api_tls: str,
    api_cert: str,
    api_key: str,
    db: str,
    timeout: float,
    crypto_suite: str,
    master_key_file: str | None,
    data_roots: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a node: keys, self-signed certificate, API token and configuration.

    Keys are encrypted at rest under a master key: ``$RAINBRIDGE_MASTER_KEY`` if set, else
    the file ``--master-key-file`` (created if missing; default DIR/master.key).

    Prints what a peer needs to pin this node: the data-plane address and the certificate's
    SHA-256 fingerprint.
    """
    from rainbridge.crypto.certs import fingerprint_pem
    from rainbridge.node.api_tls import api_certificate_pem
    from rainbridge.node.config import (
        CONFIG_FILE,
        LEGACY_CONFIG_FILE,
        NodeConfig,
        check_name,
        free_port,
        private_dir,
        write_token,
    )
    from rainbridge.node.keys import init_node_keys

    try:
        check_name(name)
        d = Path(directory).resolve()
        if (d / CONFIG_FILE).exists() or (d / LEGACY_CONFIG_FILE).exists():
            fail(f"{d} already holds a node", 2)
        cfg = NodeConfig(
            name=name,
            dir=str(d),
            api_host=api_host,
            api_port=api_port or free_port(api_host),
            data_host=host,
            data_port=data_port or free_port(host),
            db_url=db,
            timeout=timeout,
            crypto_suite=crypto_suite,
            master_key_file=master_key_file or "",
            data_roots=[str(Path(r).expanduser().resolve()) for r in data_roots],
            api_tls=api_tls,
            api_cert=str(Path(api_cert).expanduser().resolve()) if api_cert else "",
            api_key=str(Path(api_key).expanduser().resolve()) if api_key else "",
        )
        cfg.check()
        private_dir(d)
        ident = init_node_keys(
            d, name, crypto_suite, cfg.master_key_file, hosts=("localhost", "127.0.0.1", host)
        ).identity
        write_token(d)
        cfg.save()
        api_fingerprint = fingerprint_pem(api_certificate_pem(d, cfg.api_cert))
    except RainbridgeError as exc:
        fail_with(exc)
    except OSError as exc:
        fail(f"cannot create the node in {directory}: {exc.strerror or exc}", 2)
    out = {
        "name": name,
        "dir": str(d),
        "fingerprint": ident.fingerprint,
        "data_plane": cfg.data_url,
        "api": cfg.api_url,
        "api_fingerprint": api_fingerprint if cfg.api_uses_tls else None,
    }
    api_pin = (
        f"  API pin     {api_fingerprint}   (RAINBRIDGE_API_FINGERPRINT for remote clients)\n"
        if cfg.api_uses_tls
        else ""
    )
    emit(
        out,
        as_json,
        f"node {name!r} created in {d}\n"
        f"  data plane  {cfg.data_url}   (give peers this address and the fingerprint)\n"
        f"  fingerprint {ident.fingerprint}\n"
        f"  REST API    {cfg.api_url}   (token in {d / 'api.token'})\n"
        f"{api_pin}"
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
    from rainbridge.node.config_file import stray_env
    from rainbridge.node.server import run

    try:
        cfg = NodeConfig.load(directory)
        click.echo(f"node {cfg.name!r}: API {cfg.api_url}, data plane {cfg.data_url}", err=True)
        if overrides := cfg.overrides():
            click.echo(f"settings from the environment: {', '.join(overrides)}", err=True)
        for var in stray_env():
            click.echo(f"warning: ${var} is not a setting (a typo?); it is ignored", err=True)
        run(cfg)
    except RainbridgeError as exc:
        fail_with(exc)
    except OSError as exc:
        fail(f"cannot start the node: {exc.strerror or exc}", 2)


@node.command("info")
@api_command
def node_info(directory: str, api_url: str | None, as_json: bool) -> None:
    """Show the running node's name, fingerprint and data plane."""
    info = Api(directory, api_url).call("GET", "/v1/node")
    emit(info, as_json, "\n".join(f"{k:12} {v}" for k, v in info.items()))


@node.command("rotate-keys")
@api_command
def node_rotate_keys(directory: str, api_url: str | None, as_json: bool) -> None:
    """New TLS and ledger keys, without a restart; pinned peers are told and re-pin.

    The old certificate is kept so that entries it signed still verify.
    """
    out = Api(directory, api_url).call("POST", "/v1/keys/rotate")
    told = ", ".join(f"{p}: {'ok' if ok is True else ok}" for p, ok in out["peers_told"].items())
    emit(out, as_json, f"new fingerprint {out['new']} (was {out['old']}); peers: {told or '-'}")


# -- peers --------------------------------------------------------------------------------


@click.group("peer")
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
@api_command
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
    emit(out, as_json, f"peer {name!r} pinned at {out['url']}")


@peer.command("list")
@api_command
def peer_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List pinned peers."""
    rows = Api(directory, api_url).call("GET", "/v1/peers")
    emit(rows, as_json, "\n".join(f"{r['name']:16} {r['url']:22} {r['fingerprint']}" for r in rows))


@peer.command("ping")
@click.argument("name")
@api_command
def peer_ping(name: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Whether a pinned peer answers over the data plane, and how fast (exit code 5 when it
    does not)."""
    out = Api(directory, api_url).call("GET", f"/v1/peers/{name}/ping")
    text = (
        f"{name}: online, {out['milliseconds']} ms"
        if out["online"]
        else f"{name}: offline ({out['reason']})"
    )
    emit(out, as_json, text)
    if not out["online"]:
        sys.exit(EXIT_UNREACHABLE)


@peer.command("revoke")
@click.argument("name")
@api_command
def peer_revoke(name: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Unpin a peer at once: its connections are refused and its running jobs stopped."""
    out = Api(directory, api_url).call("POST", f"/v1/peers/{name}/revoke")
    emit(out, as_json, f"peer {name!r} revoked")


# -- datasets -----------------------------------------------------------------------------


@click.group("dataset")
def dataset() -> None:
    """Register the data this node may compute on (read in place, never copied)."""


@dataset.command("add")
@click.argument("name")
@click.option("--path", help="A CSV or Parquet file (read in place).")
@click.option(
    "--sql-url",
    help="A database to read in place instead of a file: postgresql://USER:PASSWORD@HOST:PORT/DB "
    "or mysql://…, with --table or --query (default: $RAINBRIDGE_SQL_URL, which keeps the "
    "password off the command line). Stored sealed, shown masked.",
)
@click.option("--table", help="The database table to read (TABLE or SCHEMA.TABLE).")
@click.option("--query", help="One SELECT to read instead of a table (read-only).")
@click.option("--id", "id_column", help="The column that identifies a row.")
@click.option("--owner", default="", help="Its owner (default: the API user).")
@click.option(
    "--sensitivity",
    type=click.Choice(["public", "internal", "confidential", "secret"]),
    default="internal",
    show_default=True,
)
@click.option("--description", default="", help="What it holds (shown in the catalogue).")
@click.option(
    "--encoding",
    help="A CSV file's text encoding, e.g. gb18030, gbk, big5, latin-1 (default: utf-8).",
)
@click.option(
    "--column-type",
    "column_types",
    multiple=True,
    metavar="COLUMN=TYPE",
    help="Declare a CSV column's type (repeat): string, int64, int32, double, float32, bool, "
    "date32, timestamp[s|ms|us]. Others are inferred when computed on, kept as written "
    "when passed through.",
)
@api_command
def dataset_add(
    name: str,
    path: str | None,
    sql_url: str | None,
    table: str | None,
    query: str | None,
    id_column: str | None,
    owner: str,
    sensitivity: str,
    description: str,
    encoding: str | None,
    column_types: tuple[str, ...],
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Register a dataset: its schema and row count are recorded, the file (or the database
    table or query) stays where it is."""
    if (table or query) and not sql_url and not path:
        sql_url = os.environ.get("RAINBRIDGE_SQL_URL") or None
    if (path is None) == (sql_url is None):
        fail("give --path FILE, or --sql-url URL with --table or --query", 2)
    if sql_url is not None and (table is None) == (query is None):
        fail("--sql-url reads a --table or a --query: give one of them", 2)
    if path is not None and (table or query):
        fail("--table and --query go with --sql-url, not --path", 2)
    declared: dict[str, str] = {}
    for item in column_types:
        col, eq, typ = item.rpartition("=")
        if not eq or not col or not typ:
            fail(f"--column-type {item!r}: expected COLUMN=TYPE", 2)
        if col in declared:
            fail(f"--column-type: column {col!r} is declared twice", 2)
        declared[col] = typ
    out = Api(directory, api_url).call(
        "POST",
        "/v1/datasets",
        {
            "name": name,
            **(
                {"path": str(Path(path).resolve())}
                if path is not None
                else {"sql_url": sql_url, "table": table, "query": query}
            ),
            "id_column": id_column,
            "owner": owner,
            "sensitivity": sensitivity,
            "description": description,
            "encoding": encoding,
            "column_types": declared,
        },
    )
    emit(out, as_json, f"dataset {name!r}: {out['num_rows']} rows, {len(out['columns'])} columns")


@dataset.command("list")
@api_command
def dataset_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List registered datasets."""
    rows = Api(directory, api_url).call("GET", "/v1/datasets")
    emit(rows, as_json, "\n".join(f"{r['name']:16} {r['num_rows']:>10} {r['path']}" for r in rows))


@dataset.command("publish")
@click.argument("name")
@click.option("--columns", required=True, help="Comma-separated columns peers may see.")
@click.option("--description", help="Replace the description.")
@click.option("--show-rows", is_flag=True, help="Show the row count to peers.")
@click.option("--unpublish", is_flag=True, help="Withdraw it from the catalogue.")
@api_command
def dataset_publish(
    name: str,
    columns: str,
    description: str | None,
    show_rows: bool,
    unpublish: bool,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Publish a dataset's metadata to peers' catalogue browsing (never its rows)."""
    body = {
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
        "description": description,
        "publish_rows": show_rows,
        "published": not unpublish,
    }
    out = Api(directory, api_url).call("POST", f"/v1/datasets/{name}/publish", body)
    state = "published" if out["published"] else "unpublished"
    emit(out, as_json, f"dataset {name!r} {state}: {', '.join(out['published_columns'])}")


@dataset.command("policy")
@click.argument("name")
@click.option(
    "--min-group-size",
    type=int,
    help="Grouped results over it must have groups at least this large (k-anonymity).",
)
@click.option(
    "--dp-budget",
    type=float,
    help="Total epsilon that statistics released to other parties may spend (then required).",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="COLUMN=LEVEL",
    help="Set the column policy of COLUMN (repeatable): join, aggregate, compare or "
    "plaintext. The other columns keep theirs (see --replace); columns the policy does not "
    "list may not be used with other parties.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Make the --column options the whole column policy, dropping the columns they omit.",
)
@click.option("--clear-columns", is_flag=True, help="Remove the column policy.")
@api_command
def dataset_policy(
    name: str,
    min_group_size: int | None,
    dp_budget: float | None,
    columns: tuple[str, ...],
    replace: bool,
    clear_columns: bool,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Set the owner's rules for results computed over a dataset.

    Column policy levels: ``join`` (only matched as a join key), ``aggregate`` (only inside
    released aggregates), ``compare`` (aggregates and WHERE conditions), ``plaintext``
    (anything, including GROUP BY labels). ``--column`` changes the named columns only;
    with ``--replace`` the named columns become the whole policy.
    """
    if replace and not columns:
        fail("--replace sets the column policy to the --column options: give some", 2)
    if min_group_size is None and dp_budget is None and not columns and not clear_columns:
        fail("give --min-group-size, --dp-budget, --column or --clear-columns", 2)
    if clear_columns and columns:
        fail("--clear-columns removes the column policy; to set a new one use --replace", 2)
    given: dict[str, str] = {}
    for item in columns:
        col, eq, level = item.partition("=")
        if not eq or not col or not level:
            fail(f"--column wants COLUMN=LEVEL, got {item!r}", 2)
        given[col] = level
    body: dict[str, Any] = {"min_group_size": min_group_size, "dp_budget": dp_budget}
    if clear_columns:
        body["columns"] = {}
    elif given and replace:
        body["columns"] = given
    elif given:  # the named columns change, the others keep their levels (merged at the node)
        body["column_updates"] = given
    out = Api(directory, api_url).call("POST", f"/v1/datasets/{name}/policy", body)
    budget = f"ε {out['dp_spent']:g} of {out['dp_budget']:g} spent" if out["dp_budget"] else "no DP"
    cols = out.get("column_policy") or {}
    shown = ", ".join(f"{c}={lv}" for c, lv in cols.items()) if cols else "no column policy"
    emit(out, as_json, f"dataset {name!r}: groups of {out['min_group_size']}+, {budget}, {shown}")
