"""``rainbridge node upgrade``: bring a stopped node's database to this version's schema."""

from __future__ import annotations

import socket

import click

from rainbridge.cli.common import dir_option, emit, fail_with, json_option
from rainbridge.errors import ConfigError, RainbridgeError


@click.command("upgrade")
@dir_option
@click.option(
    "--dry-run", is_flag=True, help="Say which revisions would be applied; change nothing."
)
@json_option
def node_upgrade(directory: str, dry_run: bool, as_json: bool) -> None:
    """Apply the schema revisions the node's database lacks (the node stopped).

    Stop the node and back up its database first. Prints the schema revision before and
    after; a database already at this version's revision is left as it is.
    """
    from rainbridge.node.config import NodeConfig
    from rainbridge.node.migrations import upgrade

    try:
        cfg = NodeConfig.load(directory)
        if not dry_run:
            _refuse_if_running(cfg.api_host, cfg.api_port, cfg.name)
        before, applied = upgrade(cfg.database_url, dry_run=dry_run)
    except RainbridgeError as exc:
        fail_with(exc)
    after = before.current if dry_run or before.empty else before.head
    out = {
        "node": cfg.name,
        "from": before.current,
        "to": after,
        "head": before.head,
        "applied": [] if dry_run else applied,
        "pending": applied if dry_run else [],
        "dry_run": dry_run,
    }
    if before.empty:
        text = f"node {cfg.name!r}: the database is empty; the node creates its tables at start"
    elif not applied:
        text = f"node {cfg.name!r}: schema {before.current}, up to date"
    elif dry_run:
        text = (
            f"node {cfg.name!r}: schema {before.current} -> {before.head} would apply "
            f"{', '.join(applied)} (dry run: nothing changed)"
        )
    else:
        text = f"node {cfg.name!r}: schema {before.current} -> {before.head} ({', '.join(applied)})"
    emit(out, as_json, text)


def _refuse_if_running(host: str, port: int, name: str) -> None:
    """An upgrade changes tables under a running node's feet: refuse while its API port
    answers (a connection is enough: the node may serve HTTPS with a pinned certificate)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError:
        return
    raise ConfigError(
        f"node {name!r} is running (its API answers at {host}:{port}): stop it, back up its "
        "database, then run `rainbridge node upgrade`"
    )
