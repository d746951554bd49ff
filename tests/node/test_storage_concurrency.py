"""The node's state under concurrent writers, on SQLite and on a real PostgreSQL server.

The data plane serves peers' requests from several threads: a grant's quota must hold
exactly however many requests arrive at once, and no count may be lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rainbridge.errors import AuthorizationError
from rainbridge.node.grants import use_grant
from rainbridge.node.storage import GrantRow, Storage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "sqlite":
        return Storage(f"sqlite:///{tmp_path / 'node.db'}")
    pg = request.getfixturevalue("pg_server")
    return Storage(pg.url(pg.create_database("cc")))


def _at_once(threads: int, calls: int, call: Callable[[], None]) -> tuple[int, int, list[str]]:
    """``calls`` calls in each of ``threads`` threads started together: (done, refused, other
    errors)."""
    done: list[int] = []
    refused: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait()
        for _ in range(calls):
            try:
                call()
                done.append(1)
            except AuthorizationError:
                refused.append(1)
            except Exception as exc:  # any other error fails the test, with its name
                errors.append(repr(exc)[:300])

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(done), len(refused), errors


def _grant(storage: Storage, **quota: int) -> None:
    with storage.session() as s:
        s.add(
            GrantRow(
                id="g1",
                dataset="customers",
                peer="telecom",
                columns=["*"],
                components=["*"],
                receivers=["*"],
                **quota,
            )
        )


def _use(storage: Storage, rows: int = 1) -> Callable[[], None]:
    def call() -> None:
        use_grant(
            storage,
            dataset="customers",
            peer="telecom",
            component_type="pir",
            columns=[],
            receivers=[],
            rows=rows,
            what="query customers",
        )

    return call


def test_a_call_quota_holds_exactly_under_concurrent_requests(storage: Storage) -> None:
    _grant(storage, max_calls=10)
    done, refused, errors = _at_once(12, 3, _use(storage))
    assert errors == []
    assert (done, refused) == (10, 26)
    with storage.session() as s:
        g = s.get(GrantRow, "g1")
        assert g is not None and (g.calls_used, g.rows_used) == (10, 10)


def test_no_count_is_lost_without_a_quota(storage: Storage) -> None:
    _grant(storage)
    done, refused, errors = _at_once(8, 5, _use(storage, rows=3))
    assert (done, refused, errors) == (40, 0, [])
    with storage.session() as s:
        g = s.get(GrantRow, "g1")
        assert g is not None and (g.calls_used, g.rows_used) == (40, 120)


def test_a_row_quota_holds_exactly_under_concurrent_requests(storage: Storage) -> None:
    _grant(storage, max_rows=100)
    done, refused, errors = _at_once(10, 3, _use(storage, rows=7))
    assert errors == []
    assert (done, refused) == (14, 16)  # 14 * 7 = 98 rows; a 15th would pass 100
    with storage.session() as s:
        g = s.get(GrantRow, "g1")
        assert g is not None and g.rows_used == 98
