"""The database side of a node's backup and restore: URLs, PostgreSQL's tools and their
passwords (never on a command line), and the checks a restore makes of its target."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from rainbridge.errors import ConfigError


def parse_url(value: str, what: str) -> URL:
    try:
        return make_url(value)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{what}: not a database URL (e.g. postgresql+psycopg://USER@HOST/DB)"
        ) from None


def database_kind(url: URL) -> str:
    kind = url.get_backend_name()
    if kind in ("sqlite", "postgresql"):
        return kind
    if kind in ("mysql", "mariadb"):
        raise ConfigError(
            "the node database is MySQL/MariaDB: back it up with the server's own tools "
            "(mariadb-dump --single-transaction) while the node is stopped; "
            "`rainbridge node backup` takes SQLite and PostgreSQL"
        )
    raise ConfigError(f"database kind {kind!r}: backup takes SQLite and PostgreSQL")


def db_message(url: URL, exc: Exception) -> str:
    # never the driver's text: it may carry the URL's password
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return (
        f"cannot use the PostgreSQL database {where}: {type(exc).__name__}; "
        "check the URL and that the server is running"
    )


def find_pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore``: the newest under /usr/lib/postgresql, else on PATH (a
    newer tool reads an older server; the reverse is refused)."""
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_pg_major, reverse=True):
        if (root / name).is_file():
            return str(root / name)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"{name} not found (install PostgreSQL's client tools, e.g. postgresql-client)"
    )


def _pg_major(p: Path) -> int:
    try:
        return int(p.parent.name.split(".")[0])
    except ValueError:
        return 0


_PG_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "host": "PGHOST",
    "port": "PGPORT",
}


@contextlib.contextmanager
def pg_env(url: URL, work: Path) -> Iterator[dict[str, str]]:
    """The environment of a PostgreSQL client tool for ``url``: the password in a temporary
    passfile (mode 0600), never on a command line or in the environment."""
    env = dict(os.environ)
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    for k, var in _PG_QUERY_ENV.items():
        v = url.query.get(k)
        if isinstance(v, str):
            env[var] = v
    passfile: Path | None = None
    if url.password:
        fd, name = tempfile.mkstemp(prefix=".pgpass-", dir=work)
        passfile = Path(name)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{_pgpass_escape(str(url.password))}\n")
        env["PGPASSFILE"] = name
        env.pop("PGPASSWORD", None)
    try:
        yield env
    finally:
        if passfile is not None:
            passfile.unlink(missing_ok=True)


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def run_pg_tool(cmd: list[str], env: dict[str, str], url: URL, what: str) -> None:
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=24 * 3600)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if r.returncode != 0:
        err = r.stderr.strip()
        if url.password:
            err = err.replace(str(url.password), "***")
        raise ConfigError(f"{what} failed ({r.returncode}): {err[-800:]}")


def check_empty(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema "
                    "NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise ConfigError(db_message(url, exc)) from None
    finally:
        engine.dispose()
    if n:
        raise ConfigError(
            f"--db: database {url.database!r} is not empty ({n} tables); restore into a new, "
            "empty database"
        )


def pg_restore(url: URL, dump: Path, work: Path) -> None:
    tool = find_pg_tool("pg_restore")
    with pg_env(url, work) as env:
        run_pg_tool(
            [
                tool,
                "--single-transaction",  # all or nothing
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                "--no-password",
                "--dbname",
                str(url.database or ""),
                str(dump),
            ],
            env,
            url,
            "pg_restore",
        )


def drop_restored(url: URL) -> None:
    """Remove what a failed restore wrote into the (previously empty) database."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
    except SQLAlchemyError:
        pass  # the error being raised says more than this one
    finally:
        engine.dispose()
