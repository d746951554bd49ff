"""``rainbridge node config``: the effective configuration of a node directory (``node.toml``
and the environment's overrides), shown with each value's source, or checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rainbridge.cli.common import dir_option, emit, fail_with, json_option
from rainbridge.errors import RainbridgeError

if TYPE_CHECKING:
    from rainbridge.node.config import NodeConfig


@click.group("config")
def node_config() -> None:
    """Show or check the node's configuration (node.toml, then RAINBRIDGE_* variables)."""


def _load(directory: str) -> NodeConfig:
    from rainbridge.node.config import NodeConfig

    try:
        return NodeConfig.load(directory)
    except RainbridgeError as exc:
        fail_with(exc)


@node_config.command("show")
@dir_option
@json_option
def config_show(directory: str, as_json: bool) -> None:
    """Print every setting's effective value and where it came from: the file, an
    environment variable, or the default. A database URL's password is masked."""
    from rainbridge.node.config import CONFIG_FILE
    from rainbridge.node.config_file import SETTINGS, masked

    cfg = _load(directory)
    _warn_stray()
    settings = {
        s.dotted: {
            "value": masked(s, getattr(cfg, s.field)),
            "source": _source(cfg.sources.get(s.field, "default")),
            "env": s.env,
        }
        for s in SETTINGS
    }
    out = {"dir": cfg.dir, "file": str(cfg.path / CONFIG_FILE), "settings": settings}
    sources = {
        k: f"${v['env']}" if v["source"] == "env" else v["source"] for k, v in settings.items()
    }
    kw, sw = max(map(len, settings)), max(map(len, sources.values()))
    lines = [f"# {out['file']}", f"{'key':{kw}}  {'source':{sw}}  value"]
    for key, v in settings.items():
        lines.append(f"{key:{kw}}  {sources[key]:{sw}}  {_text(v['value'])}")
    emit(out, as_json, "\n".join(lines))


@node_config.command("check")
@dir_option
@json_option
def config_check(directory: str, as_json: bool) -> None:
    """Validate the configuration; exit 2 with the key at fault if it does not hold."""
    from rainbridge.node.config import CONFIG_FILE

    cfg = _load(directory)
    _warn_stray()
    path = str(cfg.path / CONFIG_FILE)
    emit({"ok": True, "file": path}, as_json, f"{path}: ok")


def _warn_stray() -> None:
    from rainbridge.node.config_file import stray_env

    for var in stray_env():
        click.echo(f"warning: ${var} is not a setting (a typo?); it is ignored", err=True)


def _source(origin: str) -> str:
    """``file``, ``default``, or ``env`` for a value an environment variable set."""
    return origin if origin in ("file", "default") else "env"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    if value == "":
        return "(empty)"
    return str(value)
