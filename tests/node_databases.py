"""Where the tests' nodes keep their state: the one switch between SQLite and PostgreSQL.

By default every node a test makes uses SQLite in its directory, as a real node does. With
``RAINBRIDGE_TEST_DB=postgresql`` (``make test-pg``) every node uses a fresh database of its
own on the session's throwaway PostgreSQL cluster (the ``pg_server`` fixture):

- in-process nodes (``NodeService(NodeConfig(...))``, ``node init`` through ``CliRunner``):
  a node configuration without an explicit ``db_url`` resolves to its directory's database
  on the cluster, created on first use, and saving it records that URL, so the CLI
  processes a test starts on its directory use the same database;
- node processes of :class:`rainbridge.demo.federation.Federation`: its database server is
  the cluster (``$RAINBRIDGE_DEMO_DB_SERVER``), so it creates one database per node and passes
  it to ``node init --db``.

Nodes that tests start with their own ``node init`` subprocess keep SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

#: the value of ``$RAINBRIDGE_TEST_DB``: ``sqlite`` (default) or ``postgresql``
TEST_DB = os.environ.get("RAINBRIDGE_TEST_DB", "") or "sqlite"


def on_postgresql() -> bool:
    return TEST_DB == "postgresql"


@pytest.fixture(scope="session", autouse=True)
def node_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """In PostgreSQL mode, put every node the tests make on the session's cluster."""
    if TEST_DB == "sqlite":
        yield
        return
    if TEST_DB != "postgresql":
        pytest.fail(f"RAINBRIDGE_TEST_DB={TEST_DB!r}: expected sqlite or postgresql")
    from rainbridge.node.config import NodeConfig

    server = request.getfixturevalue("pg_server")
    databases: dict[str, str] = {}
    lock = threading.Lock()  # nodes may be made from several threads

    def database_url(self: NodeConfig) -> str:
        if self.db_url:
            return self.db_url
        key = str(Path(self.dir).resolve())
        with lock:
            if key not in databases:
                databases[key] = server.url(server.create_database("node"))
            return databases[key]

    save = NodeConfig.save

    def save_with_database(self: NodeConfig) -> None:
        if not self.db_url:
            self.db_url = database_url(self)
        save(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NodeConfig, "database_url", property(database_url))
        mp.setattr(NodeConfig, "save", save_with_database)
        mp.setenv("RAINBRIDGE_DEMO_DB_SERVER", server.url("postgres"))
        yield
