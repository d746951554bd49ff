"""The node database's schema versions: Alembic revisions packaged with Rainbridge.

Every revision is a file in ``versions/``; the newest is the *head*, the schema of the
tables in :mod:`rainbridge.node.tables`. A database records its revision in Alembic's
``alembic_version`` table:

- a new (empty) database is made at the head: the tables created from
  :mod:`rainbridge.node.tables` and stamped with the head's revision;
- a database made before migrations existed (the node's tables, no ``alembic_version``) is
  at :data:`BASELINE`, the first revision, whose schema it has;
- a database behind the head is refused until ``rainbridge node upgrade`` (:func:`upgrade`)
  applies the revisions it lacks, the node stopped;
- a database at a revision this version does not know was upgraded by a newer Rainbridge,
  and is refused too.

Alembic is configured in code (no ``alembic.ini``); on PostgreSQL an advisory lock
serialises nodes and upgrades that open the same database at once. Adding a revision:
``python -m rainbridge.node.migrations revision "what changes"`` (see docs/NODE.md).
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from rainbridge.errors import ConfigError
from rainbridge.node.tables import Base

__all__ = [
    "BASELINE",
    "SchemaState",
    "head",
    "open_schema",
    "revision",
    "state",
    "upgrade",
]

#: the first revision: the node's schema as it was before migrations existed
BASELINE = "0001_baseline"
#: where the revisions are (``env.py`` and ``versions/``)
SCRIPTS = Path(__file__).resolve().parent
#: the PostgreSQL advisory lock key held while a database's schema is checked or changed
_PG_LOCK = 0x5241494E  # "RAIN"


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this version of Rainbridge."""

    #: the database's revision (None: an empty database)
    current: str | None
    #: this version's head revision
    head: str
    #: True when the node's tables are there without ``alembic_version`` (before migrations)
    unversioned: bool = False

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def known(self) -> bool:
        return self.current is None or self.current in _revisions()

    @property
    def pending(self) -> list[str]:
        """The revisions an upgrade applies, oldest first."""
        if not self.known:
            return []
        script = _script()
        ups = script.iterate_revisions(self.head, self.current)
        return [r.revision for r in reversed(list(ups))]


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("file_template", "%%(rev)s")  # the revision id names its file
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


@functools.cache
def _revisions() -> frozenset[str]:
    return frozenset(r.revision for r in _script().walk_revisions())


def head() -> str:
    """This version's head revision."""
    heads = _script().get_heads()
    if len(heads) != 1:  # two revisions with one parent: a packaging mistake, never data
        raise RuntimeError(f"the node's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def state(conn: Connection) -> SchemaState:
    """Read the schema's state on ``conn`` (changes nothing)."""
    current = MigrationContext.configure(conn).get_current_heads()
    if len(current) > 1:
        raise ConfigError(
            f"the node's database records several schema revisions ({', '.join(current)}): "
            "restore it from a backup"
        )
    if current:
        return SchemaState(current[0], head())
    tables = set(inspect(conn).get_table_names())
    if tables & set(Base.metadata.tables):
        return SchemaState(BASELINE, head(), unversioned=True)
    return SchemaState(None, head())


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the schema lock (on PostgreSQL: an advisory
    lock, so two processes do not create or upgrade one database at once; SQLite's writer
    lock is taken by the first write)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        yield conn


@functools.cache
def _baseline_columns() -> dict[str, frozenset[str]]:
    """The baseline's tables and their columns (built once in a scratch SQLite database)."""
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), BASELINE)
            insp = inspect(conn)
            return {
                t: frozenset(c["name"] for c in insp.get_columns(t))
                for t in insp.get_table_names()
                if t != "alembic_version"
            }
    finally:
        engine.dispose()


def _check_baseline(conn: Connection) -> None:
    """A database without ``alembic_version`` is taken for the baseline only if it has the
    baseline's tables and columns: one made by an older Rainbridge (whose start added new
    tables, never new columns) or another program's is refused, not stamped."""
    insp = inspect(conn)
    have = set(insp.get_table_names())
    missing: list[str] = []
    for table, columns in sorted(_baseline_columns().items()):
        if table not in have:
            missing.append(table)
        else:
            got = {c["name"] for c in insp.get_columns(table)}
            missing += [f"{table}.{c}" for c in sorted(columns - got)]
    if missing:
        raise ConfigError(
            "the node's database has no schema revision and is not the first one: it lacks "
            f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''} (made by a "
            "Rainbridge older than schema revisions, or not a node's database); nothing "
            "was changed"
        )


def _behind(st: SchemaState) -> ConfigError:
    return ConfigError(
        f"the node's database is at schema revision {st.current}, this version of Rainbridge "
        f"needs {st.head}: stop the node, back up its database and run "
        "`rainbridge node upgrade`"
    )


def _ahead(st: SchemaState) -> ConfigError:
    return ConfigError(
        f"the node's database is at schema revision {st.current}, unknown to this version of "
        f"Rainbridge (its newest is {st.head}): it was upgraded by a newer version; run that "
        "version, or restore the backup made before the upgrade"
    )


def open_schema(engine: Engine) -> SchemaState:
    """Make sure the database on ``engine`` has this version's schema, or refuse.

    An empty database is created at the head; a database from before migrations at the
    baseline is stamped when the baseline is the head. Behind the head or at an unknown
    revision: :class:`ConfigError` (exit 2) saying what to do.
    """
    with _locked(engine) as conn:
        st = state(conn)
        if st.empty:
            Base.metadata.create_all(conn)
            command.stamp(_config(conn), st.head)
            return SchemaState(st.head, st.head)
        if not st.known:
            raise _ahead(st)
        if st.unversioned:
            _check_baseline(conn)
        if st.current != st.head:
            raise _behind(st)
        if st.unversioned:
            command.stamp(_config(conn), st.head)
        return st


def upgrade(url: str, dry_run: bool = False) -> tuple[SchemaState, list[str]]:
    """Apply the revisions the database at ``url`` lacks; returns its state before and the
    revisions applied (with ``dry_run``: that would be applied, none applied)."""
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            _transactional_ddl(engine)
        engine.connect().close()
    except Exception as exc:
        raise _unopenable(url, exc) from None
    try:
        with _locked(engine) as conn:
            st = state(conn)
            if not st.known:
                raise _ahead(st)
            if st.unversioned:
                _check_baseline(conn)
            pending = [] if st.empty else st.pending
            if dry_run:
                return st, pending
            if st.empty:  # nothing to upgrade: a node makes its tables on first start
                return st, []
            cfg = _config(conn)
            if st.unversioned:
                command.stamp(cfg, BASELINE)
            if pending:
                command.upgrade(cfg, st.head)
            return st, pending
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise ConfigError(
            f"the schema upgrade failed ({type(exc).__name__}: {first}); the database is "
            "left as it was"
        ) from None
    finally:
        engine.dispose()


def _transactional_ddl(engine: Engine) -> None:
    """SQLite's DDL is transactional, but its Python driver commits before each statement
    that is not DML: let SQLAlchemy begin the transaction itself, so a revision that fails
    halfway leaves nothing of itself behind (as on PostgreSQL)."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def _unopenable(url: str, exc: Exception) -> ConfigError:
    # the driver's message may carry the URL's password: name only the backend
    return ConfigError(
        f"cannot open the node database ({url.split(':', 1)[0]}): {type(exc).__name__}; "
        "check the URL and that the server is running"
    )


def upgrade_from_empty(engine: Engine) -> None:
    """Build the schema by applying every revision to an empty database (the other way to
    the head; tests check it equals :func:`open_schema`'s tables)."""
    with _locked(engine) as conn:
        command.upgrade(_config(conn), head())


def revision(message: str) -> Path:
    """Write a new revision: the changes of :mod:`rainbridge.node.tables` since the head,
    found by comparing the tables with a scratch SQLite database upgraded to the head.
    Review the file it writes: Alembic cannot see renames, and data may need moving."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
        try:
            upgrade_from_empty(engine)
            with engine.begin() as conn:
                slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
                number = len(_revisions()) + 1
                script = command.revision(
                    _config(conn),
                    message=message,
                    autogenerate=True,
                    rev_id=f"{number:04d}_{slug}",
                )
        finally:
            engine.dispose()
    _script.cache_clear()
    _revisions.cache_clear()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
