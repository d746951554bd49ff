"""A node's configuration: its name, directory, ports and database, kept in ``DIR/node.json``."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from rainbridge.errors import ConfigError

CONFIG_FILE = "node.json"
TOKEN_FILE = "api.token"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def free_port(host: str = "127.0.0.1") -> int:
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

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.path / 'node.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def data_url(self) -> str:
        return f"{self.data_host}:{self.data_port}"

    def save(self) -> None:
        d = asdict(self)
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
        d["dir"] = str(Path(directory).resolve())
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{p}: invalid node configuration: {exc}") from None

    def token(self) -> str:
        try:
            return (self.path / TOKEN_FILE).read_text().strip()
        except OSError:
            raise ConfigError(f"{self.path}: no API token (run `rainbridge node init`)") from None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"node name {name!r}: use letters, digits, '_', '.', '-', starting with a letter"
        )
    return name


def write_token(directory: Path) -> str:
    token = secrets.token_urlsafe(32)
    p = directory / TOKEN_FILE
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
