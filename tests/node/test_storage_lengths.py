"""A string longer than its column is refused alike on SQLite and PostgreSQL, naming the
column, and nothing is stored (PostgreSQL raised a driver error; SQLite kept it all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainbridge.data import DatasetRef
from rainbridge.errors import DataError
from rainbridge.node.storage import PeerRow, Storage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "sqlite":
        return Storage(f"sqlite:///{tmp_path / 'node.db'}")
    pg = request.getfixturevalue("pg_server")
    return Storage(pg.url(pg.create_database("len")))


def test_an_overlong_id_column_is_refused_naming_the_column(storage: Storage) -> None:
    long = "c" * 300
    ref = DatasetRef("customers", "/data/c.csv", "csv", long, {long: "string"}, 3)
    with pytest.raises(DataError, match=r"datasets\.id_column: 300 characters, at most 255"):
        storage.put_dataset(ref)
    assert storage.datasets() == []


def test_an_overlong_value_in_an_update_is_refused(storage: Storage) -> None:
    storage.put_peer(PeerRow(name="telecom", host="h", port=1, fingerprint="f", cert_pem="c"))
    with pytest.raises(DataError, match=r"peers\.host: 256 characters, at most 255"):
        storage.put_peer(
            PeerRow(name="telecom", host="h" * 256, port=1, fingerprint="f", cert_pem="c")
        )
    assert storage.peer("telecom").host == "h"
