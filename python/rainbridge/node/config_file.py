"""The node's configuration file, ``node.toml``: its tables and keys, each key's environment
variable, and how values are read, typed, written and shown.

Every setting is one :class:`Setting` in :data:`SETTINGS`, the only place where a TOML key
(``api.port``) meets a :class:`~rainbridge.node.config.NodeConfig` field (``api_port``) and an
environment variable (``RAINBRIDGE_API_PORT``: ``RAINBRIDGE_`` and the dotted key in capitals,
dots as underscores). Unknown keys and wrongly typed values are refused with the key named:
a typo must not silently leave a setting at its default.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomli_w

from rainbridge.errors import ConfigError

Kind = Literal["str", "int", "float", "list"]

ENV_PREFIX = "RAINBRIDGE_"
#: variables that already mean something else; no setting may be named like them
RESERVED_ENV = frozenset(
    {
        "RAINBRIDGE_MASTER_KEY",
        "RAINBRIDGE_TOKEN",
        "RAINBRIDGE_DIR",
        "RAINBRIDGE_API",
        "RAINBRIDGE_API_FINGERPRINT",
        "RAINBRIDGE_API_CA",
        "RAINBRIDGE_API_KEY_PASSWORD",
        "RAINBRIDGE_CONSOLE_DIR",
    }
)


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives in the file and which field it fills."""

    field: str
    table: str  # "" for a top-level key
    key: str
    kind: Kind
    help: str

    @property
    def dotted(self) -> str:
        return f"{self.table}.{self.key}" if self.table else self.key

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dotted.replace(".", "_").upper()


#: table → the comment written above it (the order is the file's)
TABLES: dict[str, str] = {
    "": "",
    "api": "the REST API and the console",
    "data_plane": "the mutual-TLS port peers connect to",
    "database": "the node's own state (jobs, grants, ledger index, users)",
    "data": "where datasets may be registered from",
    "jobs": "how long a job waits for its peers",
    "crypto": "the cryptographic suite and the master key that encrypts the node's keys",
    "limits": "the interconnection port's bounds",
    "log": "the node's log",
    "metrics": "Prometheus metrics",
    "compute": "where a party's work runs",
}

SETTINGS: tuple[Setting, ...] = (
    Setting("name", "", "name", "str", "this party's name, as peers know it"),
    Setting("api_host", "api", "host", "str", "address the API listens on"),
    Setting("api_port", "api", "port", "int", "its port"),
    Setting(
        "api_tls",
        "api",
        "tls",
        "str",
        "HTTPS: auto (off loopback, or with cert_file), on, or off (loopback only)",
    ),
    Setting(
        "api_cert", "api", "cert_file", "str", "an operator's certificate (PEM); empty: the node's"
    ),
    Setting(
        "api_key",
        "api",
        "key_file",
        "str",
        "its private key (PEM; password in $RAINBRIDGE_API_KEY_PASSWORD)",
    ),
    Setting("api_max_body", "api", "max_body", "int", "largest request body read, bytes (413)"),
    Setting("data_host", "data_plane", "host", "str", "address the data plane listens on"),
    Setting("data_port", "data_plane", "port", "int", "its port (give peers host:port)"),
    Setting(
        "db_url",
        "database",
        "url",
        "str",
        "SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; empty: SQLite in the "
        "node directory",
    ),
    Setting(
        "data_roots",
        "data",
        "roots",
        "list",
        "folders datasets may be registered from; empty: anywhere but the node directory",
    ),
    Setting("timeout", "jobs", "timeout", "float", "seconds a job waits for a peer's message"),
    Setting(
        "control_timeout",
        "jobs",
        "control_timeout",
        "float",
        "seconds a control request (propose, start, abort) may take at a peer",
    ),
    Setting(
        "crypto_suite",
        "crypto",
        "suite",
        "str",
        "standard (SHA-256, Ed25519, AES-GCM) or gm (SM3, SM2, SM4-GCM); fixed at init",
    ),
    Setting(
        "master_key_file",
        "crypto",
        "master_key_file",
        "str",
        "the master key's file when $RAINBRIDGE_MASTER_KEY is not set; empty: master.key here",
    ),
    Setting(
        "interop_max_message",
        "limits",
        "interop_max_message",
        "int",
        "largest interconnection message, bytes",
    ),
    Setting(
        "interop_max_pending_bytes",
        "limits",
        "interop_max_pending_bytes",
        "int",
        "bytes of unread interconnection messages held per peer",
    ),
    Setting(
        "interop_max_pending",
        "limits",
        "interop_max_pending",
        "int",
        "unread interconnection messages held per link",
    ),
    Setting("log_format", "log", "format", "str", "text or json (one object per line)"),
    Setting("log_level", "log", "level", "str", "debug, info, warning or error"),
    Setting("log_file", "log", "file", "str", "a file, rotated; empty: stderr"),
    Setting("log_max_bytes", "log", "max_bytes", "int", "size at which the file is rotated"),
    Setting("log_backups", "log", "backups", "int", "rotated files kept"),
    Setting("metrics_host", "metrics", "host", "str", "address of the token-less scrape port"),
    Setting(
        "metrics_port",
        "metrics",
        "port",
        "int",
        "its port; 0: metrics only on the API's /metrics (with a token)",
    ),
    Setting(
        "compute_engine",
        "compute",
        "engine",
        "str",
        "local (this machine) or ray (a Ray cluster inside this party's network)",
    ),
    Setting("compute_workers", "compute", "workers", "int", "tasks at once; 0: one per CPU"),
    Setting(
        "compute_ray_address",
        "compute",
        "ray_address",
        "str",
        "head of the Ray cluster (host:port, private network only); empty: Ray on this machine",
    ),
    Setting("compute_task_cpus", "compute", "task_cpus", "float", "CPUs Ray gives each task"),
    Setting(
        "compute_relay_host",
        "compute",
        "relay_host",
        "str",
        "this node's address that Ray tasks connect back to",
    ),
    Setting(
        "compute_work_dir",
        "compute",
        "work_dir",
        "str",
        "storage every Ray machine reaches, for bucket files; empty: the job's folder",
    ),
)

BY_FIELD: dict[str, Setting] = {s.field: s for s in SETTINGS}
_BY_TABLE: dict[str, dict[str, Setting]] = {
    t: {s.key: s for s in SETTINGS if s.table == t} for t in TABLES
}
_EXPECTED = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "list": "a list of strings",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def typed(s: Setting, value: Any) -> Any:
    """``value`` as read from TOML (or JSON) for ``s``, or ``ValueError`` naming the type."""
    ok: bool
    if s.kind == "str":
        ok = isinstance(value, str)
    elif s.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif s.kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # a whole number past any float (TOML's are unbounded)
                raise ValueError(f"expected a finite number, got {_shown(value)}") from None
            ok = math.isfinite(value)
    else:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = list(value) if ok else value
    if not ok:
        # a database URL is never echoed, even of the wrong type: it may hold a password
        shown = f"a {type(value).__name__} (hidden)" if s.field == "db_url" else _shown(value)
        raise ValueError(f"expected {_EXPECTED[s.kind]}, got {shown}")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """The settings in ``path`` as fields → typed values (keys left out are not in it)."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the node configuration: {exc}") from None
    values: dict[str, Any] = {}
    for name, item in doc.items():
        if name in _BY_TABLE[""]:
            _put(values, _BY_TABLE[""][name], item, path)
        elif name in TABLES and name:
            if not isinstance(item, dict):
                raise ConfigError(f"{path}: [{name}] must be a table, not {_shown(item)}")
            for key, v in item.items():
                s = _BY_TABLE[name].get(key)
                if s is None:
                    known = ", ".join(_BY_TABLE[name])
                    raise ConfigError(
                        f"{path}: unknown key {key!r} in table [{name}] (its keys: {known})"
                    )
                _put(values, s, v, path)
        else:
            tables = ", ".join(f"[{t}]" for t in TABLES if t)
            raise ConfigError(
                f"{path}: unknown key or table {name!r} at the top level (the top level holds "
                f"name and the tables {tables})"
            )
    return values


def _put(values: dict[str, Any], s: Setting, item: Any, path: Path) -> None:
    try:
        values[s.field] = typed(s, item)
    except ValueError as exc:
        raise ConfigError(f"{path}: {s.dotted}: {exc}") from None


def read_json(path: Path) -> dict[str, Any]:
    """The settings of a ``node.json`` (the flat field names of the dataclass)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the node configuration: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: invalid node configuration (expected a JSON object)")
    doc.pop("dir", None)  # older files may name it; the directory is where the file is
    values: dict[str, Any] = {}
    for name, item in doc.items():
        s = BY_FIELD.get(name)
        if s is None:
            raise ConfigError(f"{path}: unknown setting {name!r}")
        try:
            values[s.field] = typed(s, item)
        except ValueError as exc:
            raise ConfigError(f"{path}: {name}: {exc}") from None
    return values


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """Settings the environment overrides: field → (typed value, variable).

    An empty variable counts as unset. Whole numbers and numbers are parsed as such; a list
    is a JSON array (``["/a", "/b"]``, ``[]`` for none) or comma-separated (``/a,/b``).
    """
    env = os.environ if environ is None else environ
    out: dict[str, tuple[Any, str]] = {}
    for s in SETTINGS:
        raw = env.get(s.env, "")
        if raw == "":
            continue
        try:
            out[s.field] = (_parse_env(s, raw), s.env)
        except ValueError as exc:
            raise ConfigError(f"${s.env} (setting {s.dotted}): {exc}") from None
    return out


def stray_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables named like a table's setting that are none (``RAINBRIDGE_API_PROT``):
    most likely typos, which would otherwise leave the setting silently as it was."""
    env = os.environ if environ is None else environ
    known = {s.env for s in SETTINGS} | RESERVED_ENV
    prefixes = tuple(f"{ENV_PREFIX}{t.upper()}_" for t in TABLES if t)
    return sorted(v for v in env if v.startswith(prefixes) and v not in known)


def _parse_env(s: Setting, raw: str) -> Any:
    text = raw.strip()
    if s.kind == "str":
        return raw
    if s.kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError(f"expected a whole number, got {_shown(raw)}") from None
    if s.kind == "float":
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {_shown(raw)}") from None
        if not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {_shown(raw)}")
        return v
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON array of strings: {exc.msg}") from None
        return typed(s, items)
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        # blanks or commas alone: most likely a value lost on its way, which must not
        # silently replace the file's list by an empty one
        raise ValueError(f"names nothing, got {_shown(raw)} (an empty list is written [])")
    return items


def render(values: Mapping[str, Any]) -> str:
    """``node.toml``'s text for fields → values: every key, commented with its meaning and its
    environment variable."""
    lines = [
        "# Rainbridge node configuration (rainbridge node init writes it; edit it, then",
        "# restart the node). Each key may be overridden by the environment variable in its",
        "# comment; `rainbridge node config show` prints the effective settings.",
    ]
    for table, about in TABLES.items():
        lines.append("")
        if table:
            lines += [f"# {about}", f"[{table}]"]
        for s in _BY_TABLE[table].values():
            lines += textwrap.wrap(
                f"{s.help} (${s.env})", 96, initial_indent="# ", subsequent_indent="#   "
            )
            lines.append(tomli_w.dumps({s.key: values[s.field]}).rstrip("\n"))
    return "\n".join(lines) + "\n"


def write(path: Path, values: Mapping[str, Any]) -> None:
    """Write ``node.toml`` atomically, readable by its owner only (a database URL may carry a
    password)."""
    text = render(values)
    # a new file of its own (mode 0600, a unique name): never a file found there, whose mode
    # it would keep, nor one another process is writing at the same moment
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_SECRET_QUERY = ("password", "passwd", "pwd", "secret", "token")


def masked(s: Setting, value: Any) -> Any:
    """``value`` as it may be shown: a database URL without its password (or any query
    parameter that looks like one). Paths to key files are not secrets."""
    if s.field != "db_url" or not value:
        return value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return "(not a database URL; hidden)"
    query = {
        k: ("***" if any(w in k.lower() for w in _SECRET_QUERY) else v)
        for k, v in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)
