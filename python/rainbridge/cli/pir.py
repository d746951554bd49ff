"""``rainbridge pir``: PIR services (匿踪查询) — publish and update one at the server's
node, query or copy a peer's from the client's node."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from rainbridge.cli.common import Api, api_command, emit, fail


@click.group("pir")
def pir() -> None:
    """Keyword PIR: look IDs up in a peer's table without revealing them."""


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@pir.command("publish")
@click.argument("name")
@click.option("--dataset", required=True, help="A registered dataset; its ID column keys it.")
@click.option("--labels", default="", help="Comma list of columns clients may learn.")
@click.option("--modes", default="private,bucket", show_default=True,
              help="Comma list of private, bucket, lattice.")  # fmt: skip
@click.option("--k", default=256, show_default=True, help="Bucket mode: IDs per bucket.")
@click.option("--rate", "rate_per_s", default=50.0, show_default=True, help="Queries/s a client.")
@click.option("--burst", default=100, show_default=True)
@click.option(
    "--max-reply-mib",
    default=256,
    show_default=True,
    type=click.IntRange(1, 1 << 14),
    help="Bucket mode: the most MiB of rows one answer may carry (sent in 1 MiB pages); "
    "larger queries are refused before any work.",
)
@click.option(
    "--max-hint-mib",
    default=16,
    show_default=True,
    type=click.IntRange(1, 1 << 10),
    help="Lattice mode: the most MiB of the hint each client downloads once (larger: smaller "
    "queries; about 88 for 10^8 rows).",
)
@api_command
def pir_publish(
    name: str,
    dataset: str,
    labels: str,
    modes: str,
    k: int,
    rate_per_s: float,
    burst: int,
    max_reply_mib: int,
    max_hint_mib: int,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Seal a dataset's label columns by its IDs as service NAME (a fresh OPRF key)."""
    body = {
        "name": name,
        "dataset": dataset,
        "labels": _csv_list(labels),
        "modes": _csv_list(modes),
        "k": k,
        "rate_per_s": rate_per_s,
        "burst": burst,
        "max_reply_bytes": max_reply_mib << 20,
        "max_hint_bytes": max_hint_mib << 20,
    }
    out = Api(directory, api_url).call("POST", "/v1/pir/services", body)
    emit(
        out,
        as_json,
        f"{name}: {out['rows']} rows, version {out['version']}, key {out['key_id']}, "
        f"bucket-mode answers up to {out['max_reply_bytes'] / (1 << 20):g} MiB",
    )


@pir.command("services")
@api_command
def pir_services(directory: str, api_url: str | None, as_json: bool) -> None:
    """PIR services this node serves."""
    rows = Api(directory, api_url).call("GET", "/v1/pir/services")
    text = "\n".join(
        f"{r['name']:24} {r['rows']:>10} rows  v{r['version']}  {','.join(r['modes'])}  "
        f"labels: {', '.join(r['labels']) or '-'}  "
        f"max reply {r.get('max_reply_bytes', 0) / (1 << 20):g} MiB"
        f"{'' if r.get('verifiable') else '  unverifiable (OPRF mode 0: publish it again)'}"
        for r in rows
    )
    emit(rows, as_json, text or "no PIR services")


@pir.command("update")
@click.argument("name")
@click.option(
    "--upsert",
    "upsert_path",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV or Parquet of rows to add or change (ID column and every label), read with the "
    "published table's column types.",
)
@click.option("--encoding", help="The --upsert CSV file's text encoding (default UTF-8).")
@click.option("--delete", "deletes", multiple=True, help="An ID to delete (repeatable).")
@api_command
def pir_update(
    name: str,
    upsert_path: str | None,
    encoding: str | None,
    deletes: tuple[str, ...],
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """A new version of service NAME; clients' replicas catch up by the delta."""
    if not upsert_path and not deletes:
        fail("nothing to update: give --upsert FILE and/or --delete ID", 2)
    api = Api(directory, api_url)
    rows: list[dict[str, Any]] = []
    if upsert_path:
        services = {s["name"]: s for s in api.call("GET", "/v1/pir/services")}
        if name not in services:
            fail(f"no PIR service {name!r} at this node", 7)
        rows = _read_rows(Path(upsert_path), services[name]["id_column"], encoding)
    out = api.call(
        "POST", f"/v1/pir/services/{name}/update", {"upsert": rows, "delete": list(deletes)}
    )
    emit(out, as_json, f"{name}: version {out['version']}, {out['rows']} rows")


def _read_rows(path: Path, id_column: str, encoding: str | None) -> list[dict[str, Any]]:
    """The file's rows as text, exactly as written ("007" stays "007", an empty cell is
    NULL): the node reads each label with the published table's type, as a CSV cell of that
    type is read. A Parquet file's values go as JSON (dates and times as ISO text)."""
    from rainbridge.data import detect_format, iter_batches

    fmt = detect_format(path)
    out: list[dict[str, Any]] = []
    for batch in iter_batches(path, fmt, id_column=id_column, text=True, encoding=encoding):
        out += [{k: _json_value(v) for k, v in r.items()} for r in batch.to_pylist()]
    for r in out:
        if r.get(id_column) is not None and not isinstance(r[id_column], str):
            r[id_column] = str(r[id_column])  # a Parquet file's integer IDs
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            fail("a binary label that is not UTF-8 text cannot be sent in an update", 3)
    if isinstance(v, Decimal):
        return str(v)
    return v


@pir.command("query")
@click.argument("name")
@click.option("--peer", required=True, help="The node serving NAME.")
@click.option("--id", "ids", multiple=True, help="An ID to look up (repeatable).")
@click.option("--file", "id_file", type=click.Path(exists=True, dir_okay=False),
              help="A file of IDs, one per line (unbalanced PSI: the whole set).")  # fmt: skip
@click.option("--mode", type=click.Choice(["private", "bucket", "lattice"]), default="private",
              show_default=True)  # fmt: skip
@api_command
def pir_query(
    name: str,
    peer: str,
    ids: tuple[str, ...],
    id_file: str | None,
    mode: str,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Look IDs up in PEER's service NAME; PEER learns nothing about them (private mode)."""
    wanted = list(ids)
    if id_file:
        wanted += [x.strip() for x in Path(id_file).read_text().splitlines() if x.strip()]
    if not wanted:
        fail("give --id ID (repeatable) or --file FILE", 2)
    api = Api(directory, api_url)
    results: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for lo in range(0, len(wanted), 4096):
        out = api.call(
            "POST", f"/v1/pir/{name}/query",
            {"peer": peer, "ids": wanted[lo : lo + 4096], "mode": mode},
        )  # fmt: skip
        results += out["results"]
    out = {**out, "results": results}
    found = [r for r in results if r["found"]]
    lines = [f"{r['id']}: {r['label'] if r['label'] else 'present'}" for r in found]
    lines.append(f"{len(found)} of {len(results)} found ({mode} mode)")
    emit(out, as_json, "\n".join(lines))


@pir.command("sync")
@click.argument("name")
@click.option("--peer", required=True)
@click.option(
    "--mode",
    type=click.Choice(["private", "lattice"]),
    default="private",
    show_default=True,
    help="private: the sealed table's replica; lattice: the hint.",
)
@api_command
def pir_sync(
    name: str, peer: str, mode: str, directory: str, api_url: str | None, as_json: bool
) -> None:
    """Copy PEER's sealed table of NAME (or its lattice hint), or catch up by its changes."""
    out = Api(directory, api_url).call("POST", f"/v1/pir/{name}/sync", {"peer": peer, "mode": mode})
    if mode == "lattice":
        text = (
            f"{name}@{peer}: hint version {out['version']}, {out['kind']}, "
            f"{out['bytes']:,} bytes ({out['messages']} messages, {out['seconds']} s)"
        )
    else:
        text = (
            f"{name}@{peer}: version {out['version']}, {out['rows']} rows "
            f"({out['messages']} messages, {out['seconds']} s)"
        )
    emit(out, as_json, text)
