"""A federation of real node processes on loopback, driven through the ``rainbridge`` CLI.

Used by the demo and by the integration tests: each node is a separate process with its own
directory, certificate, database and data, and every step goes through the same commands a
user types. Each node's database is SQLite in its directory, or, with a database server
(``db_server``, default ``$RAINBRIDGE_DEMO_DB_SERVER``: a SQLAlchemy URL such as
``postgresql+psycopg://user@host:5432/postgres``), a new database of its own there, created
by the federation and given to ``node init --db``.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rainbridge.errors import ConfigError
from rainbridge.node.config import NodeConfig, free_port


def _default_db_server() -> str:
    return os.environ.get("RAINBRIDGE_DEMO_DB_SERVER", "")


@dataclass
class NodeProc:
    name: str
    dir: Path
    info: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    #: where this start's lines begin in ``log`` (it is appended to across restarts)
    log_from: int = 0

    @property
    def api(self) -> str:
        return str(self.info["api"])

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client of this node's API verifies: its certificate, pinned, over
        HTTPS (``httpx.get(node.api + path, verify=node.verify)``)."""
        return NodeConfig.load(self.dir).api_verify()


@dataclass
class Federation:
    """Nodes under ``base``; call :meth:`start`, then use :meth:`cli`, then :meth:`stop`."""

    base: Path
    names: list[str]
    timeout: float = 30.0
    #: ``node init --api-tls``: ``on`` serves every node's API over HTTPS, even on loopback
    api_tls: str = "auto"
    #: a database server (SQLAlchemy URL, its database one the user may connect to) on which
    #: each node gets a new database; empty: SQLite in each node's directory
    db_server: str = field(default_factory=_default_db_server)
    nodes: dict[str, NodeProc] = field(default_factory=dict)

    def cli(
        self, *args: str, node: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "rainbridge.cli", *args]
        if node is not None:
            cmd += ["--dir", str(self.nodes[node].dir)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def cli_json(self, *args: str, node: str | None = None) -> Any:
        return json.loads(self.cli(*args, "--json", node=node).stdout)

    def init(self) -> None:
        for n in self.names:
            self._init_one(n)

    def _init_one(self, n: str) -> None:
        d = self.base / n
        info = json.loads(
            self.cli(
                "node",
                "init",
                "--name",
                n,
                "--dir",
                str(d),
                "--timeout",
                str(self.timeout),
                "--api-tls",
                self.api_tls,
                *(["--db", self.create_database(n)] if self.db_server else []),
                "--json",
            ).stdout
        )
        self.nodes[n] = NodeProc(n, d, info)

    def create_database(self, node: str) -> str:
        """A new, empty database for ``node`` on :attr:`db_server`; returns its URL."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        try:
            server = make_url(self.db_server)
            # CREATE DATABASE runs outside a transaction, on the database the URL names
            engine = create_engine(server, isolation_level="AUTOCOMMIT")
        except (ArgumentError, ValueError, ImportError) as exc:
            raise ConfigError(f"db_server: not a database URL ({type(exc).__name__})") from None
        name = f"rb_{node.lower().replace('-', '_').replace('.', '_')}_{uuid.uuid4().hex[:8]}"
        try:
            with engine.connect() as conn:
                quoted = engine.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
        except SQLAlchemyError as exc:
            # the driver's message may carry the URL's password: name only the backend
            raise ConfigError(
                f"cannot create a database for node {node!r} on the database server "
                f"({server.drivername}): {type(exc).__name__}"
            ) from None
        finally:
            engine.dispose()
        return server.set(database=name).render_as_string(hide_password=False)

    def start(self) -> None:
        if not self.nodes:
            self.init()
        for node in self.nodes.values():
            self._start_one(node)
        for node in self.nodes.values():
            self._wait_ready(node)

    def _move_ports(self, node: NodeProc) -> None:
        """Give a node that has not started yet new free ports for its API and data plane."""
        cfg = NodeConfig.load(node.dir)
        cfg.api_port = free_port(cfg.api_host)
        cfg.data_port = free_port(cfg.data_host)
        cfg.save()
        node.info["api"] = cfg.api_url
        node.info["data_plane"] = cfg.data_url

    def _start_one(self, node: NodeProc) -> None:
        node.log = node.dir / "node.log"
        node.log_from = node.log.stat().st_size if node.log.exists() else 0
        with open(node.log, "ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "rainbridge.cli", "node", "start", "--dir", str(node.dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the node and its workers form one process group
            )

    def add_nodes(self, names: list[str]) -> None:
        """Start more nodes in a running federation, pinned with every node (both ways)."""
        new = [n for n in names if n not in self.nodes]
        for n in new:
            self._init_one(n)
            self._start_one(self.nodes[n])
        for n in new:
            self._wait_ready(self.nodes[n])
        self.names = [*self.names, *new]
        for a in self.names:
            for b in self.names:
                if a != b and (a in new or b in new):
                    nb = self.nodes[b]
                    self.cli(
                        "peer",
                        "add",
                        b,
                        "--url",
                        nb.info["data_plane"],
                        "--fingerprint",
                        nb.info["fingerprint"],
                        node=a,
                    )

    def _wait_ready(self, node: NodeProc, moves: int = 2) -> None:
        token = (node.dir / "api.token").read_text().strip()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                said = node.log.read_text()[node.log_from :] if node.log else ""
                if moves and "Address already in use" in said:
                    # ``node init`` found the ports free, but another process took one
                    # before the node bound it: new free ports, and start again
                    self._move_ports(node)
                    self._start_one(node)
                    return self._wait_ready(node, moves - 1)
                raise RuntimeError(f"node {node.name} exited: {said[-2000:]}")
            try:
                r = httpx.get(
                    node.api + "/v1/node",
                    headers={"Authorization": f"Bearer {token}"},
                    verify=node.verify,
                )
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node {node.name} did not start")

    def pin_all(self) -> None:
        """Every node pins every other (mutual pinning, as a real federation does)."""
        for a, _na in self.nodes.items():
            for b, nb in self.nodes.items():
                if a != b:
                    self.cli(
                        "peer",
                        "add",
                        b,
                        "--url",
                        nb.info["data_plane"],
                        "--fingerprint",
                        nb.info["fingerprint"],
                        node=a,
                    )

    def add_dataset(
        self,
        party: str,
        name: str,
        path: str | Path,
        id_column: str = "customer_id",
        grant_to: list[str] | None = None,
        components: str = "psi",
    ) -> dict[str, Any]:
        """Register a dataset at ``party`` and grant its use to the other nodes (or
        ``grant_to``): every column, ``components``, any receiver, no quota."""
        out = self.cli_json(
            "dataset", "add", name, "--path", str(path), "--id", id_column, node=party
        )
        for peer in self.names if grant_to is None else grant_to:
            if peer != party:
                self.cli(
                    "grant",
                    "add",
                    name,
                    "--peer",
                    peer,
                    "--columns",
                    "*",
                    "--components",
                    components,
                    "--receivers",
                    "*",
                    node=party,
                )
        return dict(out)

    def kill(self, name: str) -> None:
        """Kill a node and its workers at once (SIGKILL to its process group)."""
        node = self.nodes[name]
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait()

    def __enter__(self) -> Federation:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
