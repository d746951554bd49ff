"""Schema migrations of the node's database, on SQLite and on a real PostgreSQL server.

A new database is made at the head and equals the one the revisions build; a database from
before migrations (the committed ``fixtures/old-node``) is the baseline; behind the head a
node refuses to start until ``rainbridge node upgrade``; ahead of it (newer software
downgraded) it is refused too; an old node directory upgrades, starts as a real process and
its ledger verifies with all its data there.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from node_helpers import make_config
from sqlalchemy import MetaData, create_engine, inspect, select, text

from rainbridge.cli import main
from rainbridge.errors import ConfigError
from rainbridge.node import migrations
from rainbridge.node.config import NodeConfig, free_port
from rainbridge.node.storage import Storage
from rainbridge.node.tables import Base

OLD_NODE = Path(__file__).parent / "fixtures" / "old-node"

PROBE = '''"""probe: a column the tests add

Revision ID: 9000_probe
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "9000_probe"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("probe", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("probe")
'''


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of URLs of new, empty databases of one kind."""
    count = iter(range(100))
    if request.param == "sqlite":
        yield lambda: f"sqlite:///{tmp_path / f'n{next(count)}.db'}"
    else:
        pg = request.getfixturevalue("pg_server")
        yield lambda: pg.url(pg.create_database("mig"))


def schema(url: str) -> dict[str, Any]:
    """Tables, columns (type, nullability), keys and indexes, as the database reports them."""
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for t in sorted(set(insp.get_table_names()) - {"alembic_version"}):
            out[t] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)
                ],
                "pk": insp.get_pk_constraint(t)["constrained_columns"],
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(t)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in insp.get_indexes(t)
                ),
                "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
            }
        return out
    finally:
        engine.dispose()


def version(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def test_a_new_database_is_made_at_the_head_equal_to_the_revisions(new_url: Any) -> None:
    made, migrated = new_url(), new_url()
    storage = Storage(made)
    storage.engine.dispose()
    assert version(made) == [migrations.head()]
    engine = create_engine(migrated)
    try:
        migrations.upgrade_from_empty(engine)
        # the tables in tables.py are the head's: a change without a revision fails here
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
    assert version(migrated) == [migrations.head()]
    assert schema(made) == schema(migrated)
    assert set(schema(made)) == set(Base.metadata.tables)


def test_a_database_from_before_migrations_is_the_baseline(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    shutil.copy(OLD_NODE / "node.db", db)
    url = f"sqlite:///{db}"
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()
    with create_engine(url).connect() as conn:
        st = migrations.state(conn)
    assert (st.current, st.unversioned) == (migrations.BASELINE, True)
    assert schema(url) == schema(_made_at_baseline(tmp_path))
    if migrations.head() == migrations.BASELINE:
        Storage(url)  # the node opens it and stamps it
    else:
        with pytest.raises(ConfigError, match="run `rainbridge node upgrade`"):
            Storage(url)
        assert "alembic_version" not in inspect(create_engine(url)).get_table_names()
        before, applied = migrations.upgrade(url)
        assert (before.current, applied[-1]) == (migrations.BASELINE, migrations.head())
    assert version(url) == [migrations.head()]
    assert [p.name for p in Storage(url).peers()] == ["tax", "telecom"]


def _made_at_baseline(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'baseline.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations._config(conn), migrations.BASELINE)
    finally:
        engine.dispose()
    return url


def test_a_database_ahead_of_this_version_is_refused(new_url: Any, tmp_path: Path) -> None:
    url = new_url()
    Storage(url).engine.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="9999_from_the_future, unknown to this version"):
        Storage(url)
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.db_url = url
    cfg.save()
    for args in (["node", "upgrade"], ["node", "start"], ["node", "upgrade", "--dry-run"]):
        r = CliRunner().invoke(main, [*args, "--dir", str(tmp_path / "bank")])
        assert r.exit_code == 2, r.output
        assert "upgraded by a newer version" in r.output
    assert version(url) == ["9999_from_the_future"]


def _one_more_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9000_probe.py").write_text(text.format(head=migrations.head()))
    migrations._script.cache_clear()
    migrations._revisions.cache_clear()
    monkeypatch.setattr(migrations, "SCRIPTS", scripts)


@pytest.fixture
def probe_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This version's revisions and one more (``9000_probe`` adds ``datasets.probe``)."""
    _one_more_revision(tmp_path, monkeypatch, PROBE)
    yield
    monkeypatch.undo()
    migrations._script.cache_clear()
    migrations._revisions.cache_clear()


@pytest.fixture
def failing_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One more revision that adds ``datasets.probe``, then a column that exists."""
    broken = PROBE.replace(
        'batch.add_column(sa.Column("probe", sa.String(16), nullable=True))',
        'batch.add_column(sa.Column("probe", sa.String(16), nullable=True))\n'
        '    op.add_column("peers", sa.Column("host", sa.String(16), nullable=True))',
    )
    assert broken != PROBE
    _one_more_revision(tmp_path, monkeypatch, broken)
    yield
    monkeypatch.undo()
    migrations._script.cache_clear()
    migrations._revisions.cache_clear()


def test_a_failed_upgrade_is_a_clear_error_and_postgresql_keeps_the_old_schema(
    new_url: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.db_url = new_url()
    cfg.save()
    Storage(cfg.db_url).engine.dispose()
    was = migrations.head()
    request.getfixturevalue("failing_revision")
    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", str(cfg.path)])
    assert r.exit_code == 2, r.output
    assert "the schema upgrade failed" in r.output
    if cfg.db_url.startswith("postgresql"):  # DDL in one transaction: nothing half done
        assert version(cfg.db_url) == [was]
        columns = {c["name"] for c in inspect(create_engine(cfg.db_url)).get_columns("datasets")}
        assert "probe" not in columns


def test_behind_the_head_a_node_refuses_to_start_until_upgraded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    url = cfg.database_url
    Storage(url).engine.dispose()  # made at this version's head
    was = migrations.head()
    request.getfixturevalue("probe_revision")  # then the software moves on by a revision
    assert migrations.head() == "9000_probe"

    with pytest.raises(ConfigError, match="run `rainbridge node upgrade`"):
        Storage(url)
    d = str(cfg.path)
    r = CliRunner().invoke(main, ["node", "start", "--dir", d])
    assert r.exit_code == 2 and "run `rainbridge node upgrade`" in r.output, r.output

    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", d, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"{was} -> 9000_probe would apply 9000_probe" in r.output
    assert version(url) == [was]

    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", d, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["from"], out["to"], out["applied"]) == (was, "9000_probe", ["9000_probe"])
    assert version(url) == ["9000_probe"]
    assert "probe" in {c["name"] for c in inspect(create_engine(url)).get_columns("datasets")}
    Storage(url)  # at the head now
    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", d])
    assert r.exit_code == 0 and "schema 9000_probe, up to date" in r.output, r.output


def test_an_unreachable_database_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://rb:s3cret@127.0.0.1:{free_port()}/node"
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.db_url = url
    cfg.save()
    for args in (["node", "upgrade"], ["node", "upgrade", "--dry-run"], ["node", "start"]):
        r = CliRunner().invoke(main, [*args, "--dir", str(cfg.path)])
        assert r.exit_code == 2, r.output
        assert "cannot open the node database (postgresql+psycopg)" in r.output
        assert "s3cret" not in r.output


def test_upgrade_of_a_directory_that_is_no_node_is_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "is not a node directory" in r.output, r.output


# -- an old node directory, upgraded and started as a real process ----------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", *args], capture_output=True, text=True, timeout=120
    )


def _old_node(tmp_path: Path, db_url: str) -> NodeConfig:
    d = tmp_path / "bank"
    shutil.copytree(OLD_NODE, d)
    d.chmod(0o700)
    cfg = NodeConfig.load(d)
    cfg.api_port, cfg.data_port, cfg.db_url = free_port(), free_port(), db_url
    cfg.save()
    return cfg


def _upgrade_start_verify(cfg: NodeConfig) -> None:
    d = str(cfg.path)
    if migrations.head() != migrations.BASELINE:  # behind: the node refuses to start
        early = _cli("node", "start", "--dir", d)
        assert early.returncode == 2, early.stderr
        assert "run `rainbridge node upgrade`" in early.stderr
    r = _cli("node", "upgrade", "--dir", d)
    assert r.returncode == 0, r.stderr
    assert f"schema {migrations.BASELINE}" in r.stdout
    fingerprint = json.loads((cfg.path / "ledger.head").read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "rainbridge.cli", "node", "start", "--dir", d],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        token = (cfg.path / "api.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr and proc.stderr.read().decode()
            try:
                if httpx.get(cfg.api_url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the upgraded node did not start"
            time.sleep(0.2)

        refused = _cli("node", "upgrade", "--dir", d)  # never under a running node
        assert refused.returncode == 2 and "is running" in refused.stderr, refused.stderr

        v = _cli("ledger", "verify", "--dir", d)
        assert v.returncode == 0 and v.stdout.startswith("OK: ledger of bank"), v
        assert fingerprint  # the signed head was copied with the directory
        peers = httpx.get(cfg.api_url + "/v1/peers", headers=auth).json()
        assert sorted(p["name"] for p in peers) == ["tax", "telecom"]
        datasets = httpx.get(cfg.api_url + "/v1/datasets", headers=auth).json()
        assert [(x["name"], x["num_rows"]) for x in datasets] == [("customers", 40)]
        jobs = httpx.get(cfg.api_url + "/v1/jobs", headers=auth).json()
        assert [(j["name"], j["status"]) for j in jobs] == [("old-psi", "succeeded")]
        assert jobs[0]["decisions"]["telecom"]["accept"] is True
        ledger = httpx.get(cfg.api_url + "/v1/ledger", headers=auth).json()
        kinds = {e["entry"]["kind"] for e in ledger["entries"]}
        assert len(ledger["entries"]) == 12
        assert {"ledger_created", "peer_added", "dataset_added", "job_succeeded"} <= kinds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert version(cfg.database_url) == [migrations.head()]


@pytest.mark.slow
def test_an_old_node_directory_upgrades_starts_and_its_ledger_verifies(tmp_path: Path) -> None:
    cfg = _old_node(tmp_path, f"sqlite:///{tmp_path / 'bank' / 'node.db'}")
    _upgrade_start_verify(cfg)


@pytest.mark.slow
def test_an_old_node_on_postgresql_upgrades_starts_and_its_ledger_verifies(
    tmp_path: Path, pg_server: Any
) -> None:
    """The old node's rows in a PostgreSQL database of the schema from before migrations
    (the baseline's tables, no ``alembic_version``)."""
    url = pg_server.url(pg_server.create_database("old"))
    engine = create_engine(url)
    old = create_engine(f"sqlite:///{OLD_NODE / 'node.db'}")
    try:
        with engine.begin() as conn:
            command.upgrade(migrations._config(conn), migrations.BASELINE)
            conn.execute(text("DROP TABLE alembic_version"))
            # the tables as they were (reflected), not as tables.py has them now
            source, target = MetaData(), MetaData()
            source.reflect(old)
            target.reflect(conn)
            with old.connect() as src:
                for table in source.sorted_tables:
                    rows = [dict(r._mapping) for r in src.execute(select(table))]
                    for row in rows:  # SQLite hands back naive datetimes: they are UTC
                        for k, v in row.items():
                            if isinstance(v, dt.datetime) and v.tzinfo is None:
                                row[k] = v.replace(tzinfo=dt.UTC)
                    if rows:
                        conn.execute(target.tables[table.name].insert(), rows)
    finally:
        engine.dispose()
        old.dispose()
    cfg = _old_node(tmp_path, url)
    (cfg.path / "node.db").unlink()  # nothing read from the SQLite file
    _upgrade_start_verify(cfg)


def test_a_failed_upgrade_on_sqlite_leaves_the_database_unchanged(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # SQLite's DDL is transactional too, once the driver does not commit before it
    cfg = make_config(tmp_path / "bank", "bank")
    Storage(cfg.database_url).engine.dispose()
    was = migrations.head()
    before = schema(cfg.database_url)
    request.getfixturevalue("failing_revision")
    r = CliRunner().invoke(main, ["node", "upgrade", "--dir", str(cfg.path)])
    assert r.exit_code == 2, r.output
    assert "the schema upgrade failed" in r.output
    assert version(cfg.database_url) == [was]
    assert schema(cfg.database_url) == before


def test_a_database_without_revision_that_lacks_baseline_columns_is_refused(
    tmp_path: Path,
) -> None:
    # an older node's database: its starts added new tables, never new columns
    db = tmp_path / "node.db"
    shutil.copy(OLD_NODE / "node.db", db)
    url = f"sqlite:///{db}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE grants DROP COLUMN revoked_at"))
    engine.dispose()
    before = schema(url)
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.db_url = url
    cfg.save()
    for args in (["node", "upgrade"], ["node", "upgrade", "--dry-run"]):
        r = CliRunner().invoke(main, [*args, "--dir", str(cfg.path)])
        assert r.exit_code == 2, r.output
        assert "lacks grants.revoked_at" in r.output
    with pytest.raises(ConfigError, match=r"lacks grants\.revoked_at"):
        Storage(url)
    assert schema(url) == before
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()
