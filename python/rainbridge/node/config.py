"""A node's configuration: its name, directory, ports and database, kept in ``DIR/node.toml``.

The file's tables and keys, and the environment variables that override them on every load
(``RAINBRIDGE_API_PORT`` for ``api.port``), are in :mod:`rainbridge.node.config_file`; this
module holds the settings as one dataclass with flat fields, which the rest of the node reads.
A directory that still holds the older ``node.json`` is migrated on its first load.

The directory also holds the node's private key, its API token and its job folders, so it is
created readable by its owner only (mode 0700); the token file and node.toml are mode 0600.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rainbridge.compute.engine import ENGINES, ComputeSettings, check_ray_address
from rainbridge.errors import ConfigError
from rainbridge.node.api_tls import (
    API_TLS_MODES,
    api_certificate_pem,
    check_settings,
    pinned_context,
    uses_tls,
)
from rainbridge.node.config_file import (
    BY_FIELD,
    SETTINGS,
    from_env,
    read_json,
    read_toml,
    typed,
    write,
)

CONFIG_FILE = "node.toml"
#: the configuration's earlier file: migrated to node.toml, then renamed node.json.migrated
LEGACY_CONFIG_FILE = "node.json"
TOKEN_FILE = "api.token"
#: where a party's work may run (``compute.engine``)
COMPUTE_ENGINES = ENGINES
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` now (for ``node init`` without explicit ports)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class NodeConfig:
    """Everything a node needs to start; written by ``rainbridge node init``."""

    name: str
    dir: str
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    data_host: str = "127.0.0.1"
    data_port: int = 8701
    db_url: str = ""
    #: seconds a protocol waits for a peer's message before the job fails
    timeout: float = 60.0
    #: seconds a control request (propose, start, abort) may take at a peer
    control_timeout: float = 15.0
    #: ``standard`` (SHA-256, Ed25519, AES-256-GCM) or ``gm`` (SM3, SM2, SM4-GCM)
    crypto_suite: str = "standard"
    #: where the master key is read from when $RAINBRIDGE_MASTER_KEY is not set
    #: (default: master.key in the node directory)
    master_key_file: str = ""
    #: folders datasets may be registered from (symlinks resolved); empty: anywhere but the
    #: node directory. A production node should name its data folders here.
    data_roots: list[str] = field(default_factory=list)
    #: HTTPS for the REST API and console: ``auto`` (off loopback, or with ``api_cert``),
    #: ``on`` or ``off`` (loopback only); see :mod:`rainbridge.node.api_tls`
    api_tls: str = "auto"
    #: an operator's certificate and key for the API (PEM); default: the node's own
    api_cert: str = ""
    api_key: str = ""
    #: the largest REST request body read (413 past it)
    api_max_body: int = 16 << 20
    #: interconnection port: the largest message, bytes held per peer, unread messages
    interop_max_message: int = 256 << 20
    interop_max_pending_bytes: int = 1 << 30
    interop_max_pending: int = 10_000
    #: the node's log: ``text`` or ``json`` (one object per line), at ``log_level``; to
    #: stderr, or to ``log_file`` rotated at ``log_max_bytes`` keeping ``log_backups`` files
    log_format: str = "text"
    log_level: str = "info"
    log_file: str = ""
    log_max_bytes: int = 50 << 20
    log_backups: int = 5
    #: Prometheus metrics: on the API at /metrics (admin or auditor token), and, when
    #: ``metrics_port`` is set, also without a token on ``metrics_host:metrics_port`` (a
    #: private scrape network; never a port other parties reach)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    #: where this party's work runs: one of :data:`COMPUTE_ENGINES` (see
    #: :class:`rainbridge.compute.ComputeSettings` for these settings)
    compute_engine: str = "local"
    compute_workers: int = 0
    compute_ray_address: str = ""
    compute_task_cpus: float = 1.0
    compute_relay_host: str = "127.0.0.1"
    compute_work_dir: str = ""
    #: where each setting came from, filled by :meth:`load`: ``file``, or the environment
    #: variable that overrode it; a setting not named here has its default
    sources: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: field → (the file's or default value, the environment's), so that :meth:`save` writes
    #: the file's value back, not an override
    _overridden: dict[str, tuple[Any, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.path / 'node.db'}"

    @property
    def api_uses_tls(self) -> bool:
        return uses_tls(self.api_tls, self.api_host, self.api_cert)

    @property
    def api_url(self) -> str:
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"{'https' if self.api_uses_tls else 'http'}://{host}:{self.api_port}"

    def api_verify(self) -> ssl.SSLContext | bool:
        """What a client of this node's API verifies (``httpx``'s ``verify``): over HTTPS,
        exactly the API's certificate."""
        if not self.api_uses_tls:
            return True
        return pinned_context(api_certificate_pem(self.path, self.api_cert))

    @property
    def data_url(self) -> str:
        return f"{self.data_host}:{self.data_port}"

    def save(self) -> None:
        """Write ``node.toml`` (every key, commented); a value the environment overrode is
        written as the file had it."""
        values = {s.field: getattr(self, s.field) for s in SETTINGS}
        for name, (file_value, env_value) in self._overridden.items():
            if values[name] == env_value:
                values[name] = file_value
        write(self.path / CONFIG_FILE, values)

    @classmethod
    def load(cls, directory: str | Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
        """The effective configuration: ``node.toml``, then the environment's overrides
        (``environ``, default ``os.environ``), checked.

        Raises
        ------
        ConfigError
            Not a node directory; the file is not TOML, has an unknown key or a value of the
            wrong type (the key is named); a variable does not parse (it and its key are
            named); a value is out of range.
        """
        d = Path(directory)
        p = d / CONFIG_FILE
        values = _file_values(d)
        overrides = from_env(environ)
        sources = {name: "file" for name in values}
        overridden: dict[str, tuple[Any, Any]] = {}
        for name, (value, var) in overrides.items():
            overridden[name] = (values.get(name, _default(name)), value)
            values[name] = value
            sources[name] = var
        if "name" not in values:
            raise ConfigError(f"{p}: name: missing (this party's name, at the top of the file)")
        cfg = cls(dir=str(d.resolve()), **values)
        cfg.sources = sources
        cfg._overridden = overridden
        try:
            cfg.check()
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        return cfg

    def overrides(self) -> list[str]:
        """The settings the environment set, as ``key ($VARIABLE)``."""
        return [
            f"{BY_FIELD[name].dotted} (${via})"
            for name, via in self.sources.items()
            if via not in ("file", "default")
        ]

    def compute_settings(self) -> ComputeSettings:
        """The ``[compute]`` table as the compute engines take it."""
        return ComputeSettings(
            engine=self.compute_engine,
            workers=self.compute_workers,
            ray_address=self.compute_ray_address,
            task_cpus=self.compute_task_cpus,
            relay_host=self.compute_relay_host,
            work_dir=self.compute_work_dir,
        )

    def _bad(self, name: str, expected: str) -> ConfigError:
        """The error for a field's value, named by its key (and its variable if it came from
        the environment); a database URL is never echoed (it may hold a password)."""
        value = getattr(self, name)
        shown = "(hidden)" if name == "db_url" else repr(value)
        return ConfigError(f"{self._key(name)} = {shown}: expected {expected}")

    def _key(self, name: str) -> str:
        via = self.sources.get(name, "")
        return BY_FIELD[name].dotted + (f" (from ${via})" if via not in ("", "file") else "")

    def check(self) -> None:
        """Refuse values that would fail later in a less clear way; every error names the key
        (``api.port``) and, for an override, its environment variable."""
        for s in SETTINGS:
            try:
                typed(s, getattr(self, s.field))
            except ValueError as exc:
                raise ConfigError(f"{self._key(s.field)}: {exc}") from None
        try:
            check_name(self.name)
        except ConfigError as exc:
            raise ConfigError(f"{self._key('name')}: {exc}") from None
        for name in ("api_port", "data_port"):
            if not 0 <= getattr(self, name) < 65536:
                raise self._bad(name, "a port number (0 to 65535)")
        if not 0 <= self.metrics_port < 65536:
            raise self._bad("metrics_port", "a port number (0: none)")
        for name in ("api_host", "data_host", "metrics_host"):
            if not getattr(self, name).strip():
                raise self._bad(name, "a host name or address")
        if self.log_format not in ("text", "json"):
            raise self._bad("log_format", "text or json")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise self._bad("log_level", "debug, info, warning or error")
        for name in ("log_max_bytes", "log_backups"):
            if getattr(self, name) < 0:
                raise self._bad(name, "a whole number, 0 or more")
        for name in ("timeout", "control_timeout"):
            if getattr(self, name) <= 0:
                raise self._bad(name, "a positive number of seconds")
        for name in (
            "api_max_body",
            "interop_max_message",
            "interop_max_pending_bytes",
            "interop_max_pending",
        ):
            if getattr(self, name) <= 0:
                raise self._bad(name, "a positive whole number")
        if not all(r.strip() for r in self.data_roots):
            raise self._bad("data_roots", "a list of folders (no empty names)")
        if self.crypto_suite not in ("standard", "gm"):
            raise self._bad("crypto_suite", "standard or gm")
        if self.compute_engine not in COMPUTE_ENGINES:
            raise self._bad("compute_engine", " or ".join(COMPUTE_ENGINES))
        if self.compute_workers < 0:
            raise self._bad("compute_workers", "0 (automatic) or a positive whole number")
        if not 0 < self.compute_task_cpus <= 1024:
            raise self._bad("compute_task_cpus", "a positive number of CPUs")
        if self.compute_ray_address:
            try:
                check_ray_address(self.compute_ray_address)
            except ConfigError as exc:
                raise ConfigError(f"{self._key('compute_ray_address')}: {exc}") from None
        if self.db_url:
            _check_db_url(self)
        if self.api_tls not in API_TLS_MODES:
            raise self._bad("api_tls", ", ".join(API_TLS_MODES))
        if bool(self.api_cert) != bool(self.api_key):
            raise ConfigError(
                f"{self._key('api_cert')} and {self._key('api_key')} go together: "
                "give both files or neither"
            )
        try:
            check_settings(self.api_tls, self.api_host, self.api_cert, self.api_key)
        except ConfigError as exc:
            raise ConfigError(f"{self._key('api_tls')}, {self._key('api_host')}: {exc}") from None

    def token(self) -> str:
        try:
            return (self.path / TOKEN_FILE).read_text().strip()
        except OSError:
            raise ConfigError(f"{self.path}: no API token (run `rainbridge node init`)") from None


def check_name(name: str) -> str:
    """A node, peer or dataset name: short, starting with a letter, no path characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"node name {name!r}: use letters, digits, '_', '.', '-', starting with a letter"
        )
    return name


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed, readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_token(directory: Path) -> str:
    """Generate the API bearer token and store it in ``directory`` with mode 0600."""
    token = secrets.token_urlsafe(32)
    p = directory / TOKEN_FILE
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _default(name: str) -> Any:
    f = NodeConfig.__dataclass_fields__[name]
    return f.default_factory() if callable(f.default_factory) else f.default


def _check_db_url(cfg: NodeConfig) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(cfg.db_url)
    except (ArgumentError, ValueError):
        raise cfg._bad(
            "db_url", "an SQLAlchemy URL such as postgresql+psycopg://user:password@host/db"
        ) from None


def _file_values(directory: Path) -> dict[str, Any]:
    """The settings the directory's file holds; a ``node.json`` is migrated to ``node.toml``
    first (same values; the old file kept as node.json.migrated), or, where the directory
    cannot be written, read as it is."""
    p = directory / CONFIG_FILE
    if p.exists():
        return read_toml(p)
    legacy = directory / LEGACY_CONFIG_FILE
    if not legacy.exists():
        raise ConfigError(f"{directory} is not a node directory (run `rainbridge node init`)")
    try:
        values = read_json(legacy)
    except ConfigError:
        if p.exists():  # migrated by another process since we looked
            return read_toml(p)
        raise
    if "name" not in values:
        raise ConfigError(f"{legacy}: name: missing")
    full = {s.field: values.get(s.field, _default(s.field)) for s in SETTINGS}
    try:
        write(p, full)
    except OSError as exc:
        _log.warning(
            "%s: cannot write %s (%s): reading the configuration from %s as it is",
            directory,
            CONFIG_FILE,
            exc.strerror or exc,
            LEGACY_CONFIG_FILE,
        )
        return values
    # another process loading the same directory may have migrated it at the same moment
    with contextlib.suppress(FileNotFoundError):
        legacy.rename(legacy.with_name(LEGACY_CONFIG_FILE + ".migrated"))
    _log.warning(
        "%s: the configuration moved from %s to %s (same values; the old file is kept as "
        "%s.migrated)",
        directory,
        LEGACY_CONFIG_FILE,
        CONFIG_FILE,
        LEGACY_CONFIG_FILE,
    )
    return read_toml(p)
