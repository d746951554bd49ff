"""Throwaway database servers for the tests: a real PostgreSQL cluster and a real MariaDB
server, each in its own temporary directory on a free loopback port, started by the
fixtures in ``tests/conftest.py`` and stopped at the end of the session.

Debian's packages provide the servers (``make setup`` installs ``postgresql`` and
``mariadb-server`` where it can). Where a server's binaries are missing, :func:`find_postgres`
/ :func:`find_mariadb` say why and the fixtures skip the tests that need them.

Servers refuse to run as root, so as root they run as the packages' system users
(``postgres``, ``mysql``) through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_PG_ROOTS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(user: str) -> list[str]:
    """The command prefix that runs a server as ``user`` when the tests run as root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def _os_user(server_user: str) -> str:
    """Who a server runs as: its system user under root, else whoever runs the tests."""
    return server_user if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())[0]


def _give(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)


def find_postgres() -> tuple[Path | None, str]:
    """PostgreSQL's server binaries, or why there are none."""
    for root in _PG_ROOTS:
        if (root / "initdb").exists() and (root / "pg_ctl").exists():
            if os.geteuid() == 0:
                try:
                    pwd.getpwnam("postgres")
                except KeyError:
                    return None, "running as root and there is no 'postgres' system user"
            return root, ""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent, ""
    return None, "PostgreSQL's server is not installed (Debian package postgresql)"


def find_mariadb() -> tuple[Path | None, str]:
    """MariaDB's server binary, or why there is none."""
    for name in ("mariadbd", "mysqld"):
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            p = Path(d) / name
            if p.exists():
                if not shutil.which("mariadb-install-db") and not shutil.which("mysql_install_db"):
                    return None, "mariadb-install-db is missing (Debian package mariadb-server)"
                if os.geteuid() == 0:
                    try:
                        pwd.getpwnam("mysql")
                    except KeyError:
                        return None, "running as root and there is no 'mysql' system user"
                return p, ""
    return None, "MariaDB's server is not installed (Debian package mariadb-server)"


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of its own: ``initdb`` in a temporary directory, ``pg_ctl``
    on a free port, trust authentication on loopback for the user ``rainbridge``."""

    bin: Path
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rb-pg-")))
    port: int = field(default_factory=_free_port)
    user: str = "rainbridge"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def start(self) -> PostgresServer:
        os.chmod(self.base, 0o755)
        _give(self.base, "postgres")
        run = _as_user("postgres")
        subprocess.run(
            [
                *run,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with open(self.data / "postgresql.conf", "a") as f:
            # small and fast: a test cluster needs neither durability nor many connections
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
                "shared_buffers = 64MB\n"
            )
        subprocess.run(
            [
                *run,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.base / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        return self

    def stop(self) -> None:
        subprocess.run(
            [
                *_as_user("postgres"),
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        r = subprocess.run(
            [
                str(self.bin / "psql") if (self.bin / "psql").exists() else "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return r.stdout

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name


@dataclass
class MariaDBServer:
    """A MariaDB server of its own: ``mariadb-install-db`` in a temporary directory,
    ``mariadbd`` on a free loopback port; the user ``rainbridge`` with a password."""

    bin: Path
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rb-maria-")))
    port: int = field(default_factory=_free_port)
    user: str = "rainbridge"
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    def start(self) -> MariaDBServer:
        os.chmod(self.base, 0o755)
        (self.base / "data").mkdir()
        _give(self.base, "mysql")
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        assert install is not None
        subprocess.run(
            [
                *_as_user("mysql"),
                install,
                f"--datadir={self.base / 'data'}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                f"--user={_os_user('mysql')}",
                "--no-defaults",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        self.proc = subprocess.Popen(
            [
                *_as_user("mysql"),
                str(self.bin),
                "--no-defaults",
                f"--datadir={self.base / 'data'}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=300",
                f"--log-error={self.base / 'error.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.base / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd exited at start:\n{log}")
            try:
                self.sql("SELECT 1", as_root=True)
                break
            except subprocess.CalledProcessError:
                time.sleep(0.3)
        else:
            raise RuntimeError("mariadbd did not become ready in 60 s")
        self.sql(
            f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
            f"CREATE USER '{self.user}'@'localhost' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL ON *.* TO '{self.user}'@'127.0.0.1';"
            f"GRANT ALL ON *.* TO '{self.user}'@'localhost';",
            as_root=True,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "", driver: str = "mysql+pymysql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def sql(self, sql: str, database: str = "", as_root: bool = False) -> str:
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        if as_root:
            # the root account authenticates by the socket's peer credentials: run as mysql
            # (the install made that account for the user it ran as, by socket credentials)
            cmd = [*_as_user("mysql"), client, f"--socket={self.socket}", f"-u{_os_user('mysql')}"]
        else:
            cmd = [client, "-h127.0.0.1", f"-P{self.port}", f"-u{self.user}", f"-p{self.password}"]
        if database:
            cmd.append(database)
        r = subprocess.run(
            [*cmd, "-N", "-B", "-e", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return r.stdout

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name


def _has_c_utf8() -> bool:
    r = subprocess.run(["locale", "-a"], capture_output=True, text=True)
    return any(x.lower().replace("-", "") in ("c.utf8",) for x in r.stdout.split())
