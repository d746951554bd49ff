"""Times in the node's state: the instant written is the instant read, shown in UTC with its
offset, on SQLite and on a PostgreSQL server whose time zone is not UTC."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rainbridge.node.storage import GrantRow, PeerRow, Storage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "sqlite":
        return Storage(f"sqlite:///{tmp_path / 'node.db'}")
    pg = request.getfixturevalue("pg_server")
    name = pg.create_database("tz")
    pg.psql(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Shanghai'")
    return Storage(pg.url(name))


def test_times_read_back_as_the_instants_written_in_utc(storage: Storage) -> None:
    before = dt.datetime.now(dt.UTC)
    storage.put_peer(PeerRow(name="telecom", host="h", port=1, fingerprint="f", cert_pem="c"))
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with storage.session() as s:
        s.add(
            GrantRow(
                id="g1",
                dataset="d",
                peer="telecom",
                columns=["*"],
                components=["*"],
                receivers=["*"],
                expires_at=expires,
            )
        )
    peer = storage.peer("telecom").to_dict()
    assert peer["added_at"].endswith("+00:00")
    assert before - dt.timedelta(seconds=5) <= dt.datetime.fromisoformat(peer["added_at"])
    with storage.session() as s:
        g = s.get(GrantRow, "g1")
        assert g is not None
        shown = g.to_dict()["expires_at"]
    assert shown == "2030-01-01T19:04:05+00:00"  # the same instant as 03:04:05+08:00
