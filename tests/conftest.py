"""Session fixtures shared by every suite: real database servers, started on demand.

``pg_server`` and ``mariadb_server`` start a throwaway PostgreSQL cluster / MariaDB server
the first time a test asks for one and stop it when the session ends (see
:mod:`dbservers`). Where a server's package is not installed the test is skipped with the
reason — except when ``RAINBRIDGE_REQUIRE_DB_SERVERS=1`` (as ``make test`` sets), where a
missing server fails the test instead of hiding it. ``node_database`` puts every node the
tests make on PostgreSQL with ``RAINBRIDGE_TEST_DB=postgresql`` (see :mod:`node_databases`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dbservers import MariaDBServer, PostgresServer, find_mariadb, find_postgres
from node_databases import node_database  # noqa: F401  (the SQLite/PostgreSQL switch)


def _missing(why: str) -> None:
    if os.environ.get("RAINBRIDGE_REQUIRE_DB_SERVERS") == "1":
        pytest.fail(f"a database server the tests need is missing: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (``create_database()`` for a fresh one)."""
    root, why = find_postgres()
    if root is None:
        _missing(why)
    assert root is not None
    server = PostgresServer(root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A real MariaDB server for the session (``create_database()`` for a fresh one)."""
    binary, why = find_mariadb()
    if binary is None:
        _missing(why)
    assert binary is not None
    server = MariaDBServer(binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    """A real Ray instance on this machine (2 CPUs), shared by the tests of a module.

    Tests of the ``ray`` compute engine run their tasks on it; an engine finds Ray already
    initialised and joins it instead of starting its own. Stopped after the module: its
    processes hold ports (and open connections from the ephemeral range) that a later
    test's node, started on a port found free earlier, must not meet.
    """
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        namespace="rainbridge-tests",
    )
    try:
        yield ray
    finally:
        ray.shutdown()
