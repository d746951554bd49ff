"""The node's state on a real PostgreSQL server: what SQLite never meets."""

from __future__ import annotations

from typing import Any

from rainbridge.node.storage import PeerRow, Storage


def test_connections_the_server_dropped_are_replaced(pg_server: Any) -> None:
    name = pg_server.create_database("drop")
    storage = Storage(pg_server.url(name))
    storage.put_peer(PeerRow(name="telecom", host="h", port=1, fingerprint="f", cert_pem="c"))
    # the pool keeps its connection; the server ends it (a restart, an idle timeout)
    ended = pg_server.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    assert int(ended) >= 1
    assert [p.name for p in storage.peers()] == ["telecom"]
