"""The demo federation's nodes on a database server: one new database per node, or a clear
error naming only the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from rainbridge.demo.federation import Federation
from rainbridge.errors import ConfigError
from rainbridge.node.config import free_port


def test_each_node_gets_a_new_database_on_the_server(pg_server: Any, tmp_path: Path) -> None:
    f = Federation(tmp_path, ["bank", "telecom"], db_server=pg_server.url("postgres"))
    a, b = f.create_database("bank"), f.create_database("bank")
    assert a != b and "/rb_bank_" in a
    for url in (a, b):
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == url.rsplit("/", 1)[1]
        engine.dispose()


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://rb:s3cret@127.0.0.1:{free_port()}/postgres"
    f = Federation(tmp_path, ["bank"], db_server=url)
    with pytest.raises(ConfigError, match=r"node 'bank' .*\(postgresql\+psycopg\)") as e:
        f.init()
    assert "s3cret" not in str(e.value)
    with pytest.raises(ConfigError, match="not a database URL"):
        Federation(tmp_path, ["bank"], db_server="not a url").create_database("bank")
