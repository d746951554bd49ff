"""``rainbridge interop``: PSI with another platform over the interconnection standard."""

from __future__ import annotations

from pathlib import Path

import click

from rainbridge.cli.common import Api, api_command, emit


@click.group("interop")
def interop() -> None:
    """Interconnection (互联互通): peers on other platforms, ECDH-PSI with them."""


@interop.command("peer-add")
@click.argument("name")
@click.option("--url", required=True, help="The peer's gRPC Push endpoint, HOST:PORT.")
@click.option(
    "--rank",
    type=click.IntRange(0, 1),
    required=True,
    help="The peer's rank (rank 0 decides the handshake); this node takes the other.",
)
@click.option("--listen", required=True, help="Where this node's Push server listens.")
@click.option("--channel", default="root", show_default=True)
@click.option(
    "--counter-start",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="First P2P message counter (the standard: 0; some deployments: 1).",
)
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(exists=True, dir_okay=False),
    help="The peer's certificate (PEM): mutual TLS, pinned as the only root.",
)
@click.option("--tls-name", help="A name in the peer's certificate, if its address is not.")
@api_command
def peer_add(
    name: str,
    url: str,
    rank: int,
    listen: str,
    channel: str,
    counter_start: int,
    cert_file: str | None,
    tls_name: str | None,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Add a peer that speaks the interconnection standard."""
    body = {
        "name": name,
        "url": url,
        "rank": rank,
        "listen": listen,
        "channel": channel,
        "counter_start": counter_start,
        "tls_name": tls_name,
        "cert_pem": Path(cert_file).read_text() if cert_file else None,
    }
    out = Api(directory, api_url).call("POST", "/v1/interop/peers", body)
    emit(
        out,
        as_json,
        f"{name}: rank {out['rank']} at {out['url']}, {'mutual TLS' if out['tls'] else 'no TLS'}",
    )


@interop.command("peers")
@api_command
def peers(directory: str, api_url: str | None, as_json: bool) -> None:
    """Interconnection peers."""
    rows = Api(directory, api_url).call("GET", "/v1/interop/peers")
    text = "\n".join(
        f"{r['name']:16} rank {r['rank']} {r['url']:24} listen {r['listen']}" for r in rows
    )
    emit(rows, as_json, text or "no interconnection peers")


@interop.command("psi")
@click.option("--peer", required=True, help="An interconnection peer.")
@click.option("--dataset", required=True, help="This node's dataset (its ID column joins).")
@click.option(
    "--receivers", type=click.Choice(["both", "us", "peer"]), default="both", show_default=True
)
@click.option("--columns", default="", help="Own columns to add to the output (comma list).")
@click.option(
    "--suites",
    default="curve25519,sm2",
    show_default=True,
    help="Suites to offer or accept, preferred first.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
)
@api_command
def psi(
    peer: str,
    dataset: str,
    receivers: str,
    columns: str,
    suites: str,
    output_format: str,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """ECDH-PSI with PEER over the standard (start it on both sides)."""
    body = {
        "peer": peer,
        "dataset": dataset,
        "receivers": receivers,
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
        "suites": [s.strip() for s in suites.split(",") if s.strip()],
        "output_format": output_format,
    }
    out = Api(directory, api_url).call("POST", "/v1/interop/psi", body)
    size = out["intersection_size"]
    where = out.get("output", {}).get("path", "no output here")
    emit(
        out,
        as_json,
        f"{peer} ({out['suite']}): "
        f"{'size not revealed' if size is None else f'{size} common'}; {where}",
    )
