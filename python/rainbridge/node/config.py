"""A node's configuration: its name, directory, ports and database, kept in ``DIR/node.json``.

The directory also holds the node's private key, its API token and its job folders, so it is
created readable by its owner only (mode 0700); the token file is mode 0600.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rainbridge.errors import ConfigError
from rainbridge.node.api_tls import (
    api_certificate_pem,
    check_settings,
    pinned_context,
    uses_tls,
)

CONFIG_FILE = "node.json"
TOKEN_FILE = "api.token"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


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
        d = asdict(self)
        d.pop("dir")  # the directory is wherever the file is: nodes can be moved
        (self.path / CONFIG_FILE).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> NodeConfig:
        p = Path(directory) / CONFIG_FILE
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"{Path(directory)} is not a node directory (run `rainbridge node init`)"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read the node configuration: {exc}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: invalid node configuration (expected a JSON object)")
        d["dir"] = str(Path(directory).resolve())
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{p}: invalid node configuration: {exc}") from None
        cfg.check()
        return cfg

    def check(self) -> None:
        """Refuse values that would fail later in a less clear way."""
        check_name(self.name)
        for what, port in (("api_port", self.api_port), ("data_port", self.data_port)):
            if not isinstance(port, int) or not 0 <= port < 65536:
                raise ConfigError(f"{what} {port!r}: expected a port number (0 to 65535)")
        if not isinstance(self.metrics_port, int) or not 0 <= self.metrics_port < 65536:
            raise ConfigError(
                f"metrics_port {self.metrics_port!r}: expected a port number (0: none)"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format {self.log_format!r}: expected text or json")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level {self.log_level!r}: expected debug, info, warning or error"
            )
        if not isinstance(self.log_file, str):
            raise ConfigError(f"log_file {self.log_file!r}: expected a file path or empty")
        for what in ("log_max_bytes", "log_backups"):
            v = getattr(self, what)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{what} {v!r}: expected a whole number, 0 or more")
        for what, t in (("timeout", self.timeout), ("control_timeout", self.control_timeout)):
            if not isinstance(t, int | float) or t <= 0:
                raise ConfigError(f"{what} {t!r}: expected a positive number of seconds")
        for what in (
            "api_max_body",
            "interop_max_message",
            "interop_max_pending_bytes",
            "interop_max_pending",
        ):
            v = getattr(self, what)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{what} {v!r}: expected a positive whole number")
        if not isinstance(self.data_roots, list) or not all(
            isinstance(r, str) and r for r in self.data_roots
        ):
            raise ConfigError(f"data_roots {self.data_roots!r}: expected a list of folders")
        if self.crypto_suite not in ("standard", "gm"):
            raise ConfigError(f"crypto_suite {self.crypto_suite!r}: expected standard or gm")
        check_settings(self.api_tls, self.api_host, self.api_cert, self.api_key)

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
