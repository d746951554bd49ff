"""The node's tables through SQLAlchemy: round trips, decisions, events, typed misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainbridge.data import DatasetRef
from rainbridge.errors import ConfigError, NotFoundError
from rainbridge.node.keys import init_node_keys
from rainbridge.node.ledger import Ledger
from rainbridge.node.storage import JobRow, PeerRow, Storage


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    s = Storage(f"sqlite:///{tmp_path / 'node.db'}")
    Ledger(s, "bank", init_node_keys(tmp_path, "bank"), tmp_path)  # attaches itself
    return s


def test_log_needs_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ledger"):
        Storage(f"sqlite:///{tmp_path / 'x.db'}").log("peer_added", {})


def _job(job_id: str = "j1", status: str = "proposed") -> JobRow:
    return JobRow(
        id=job_id,
        name="align",
        spec={"parties": ["bank", "telecom"], "components": [{"id": "psi"}]},
        digest="d" * 64,
        initiator="bank",
        status=status,
        progress={},
    )


def test_peers_round_trip(storage: Storage) -> None:
    storage.put_peer(PeerRow(name="telecom", host="h", port=9, fingerprint="f", cert_pem="p"))
    storage.put_peer(PeerRow(name="telecom", host="h2", port=10, fingerprint="g", cert_pem="q"))
    (row,) = storage.peers()
    assert (row.host, row.port, row.fingerprint) == ("h2", 10, "g")  # re-pinning replaces
    assert storage.peer("telecom").to_dict()["url"] == "h2:10"
    with pytest.raises(NotFoundError, match="peer add"):
        storage.peer("tax")


def test_datasets_round_trip(storage: Storage) -> None:
    ref = DatasetRef("customers", "/data/c.csv", "csv", "customer_id", {"customer_id": "string"}, 3)
    storage.put_dataset(ref)
    assert storage.dataset_refs() == {"customers": ref}
    assert storage.datasets()[0].to_dict()["num_rows"] == 3


def test_jobs_decisions_and_events(storage: Storage) -> None:
    storage.put_job(_job())
    storage.decide("j1", "bank", True)
    storage.decide("j1", "telecom", False, "dataset 'x' is not registered")
    storage.update_job("j1", status="refused", error="telecom: no")
    d = storage.job_dict("j1")
    assert d["status"] == "refused" and d["components"] == ["psi"]
    assert d["decisions"] == {
        "bank": {"accept": True, "reason": None},
        "telecom": {"accept": False, "reason": "dataset 'x' is not registered"},
    }
    assert "spec" not in d and "spec" in storage.job_dict("j1", full=True)
    storage.log("job_refused", {"by": "telecom"}, "j1")
    storage.log("peer_added", {"peer": "tax"})
    kinds = [e["kind"] for e in storage.events()]
    assert kinds == ["ledger_created", "job_refused", "peer_added"]
    assert [e["detail"] for e in storage.events("j1")] == [{"by": "telecom"}]
    assert [j["id"] for j in storage.job_dicts()] == ["j1"]


def test_job_misses_are_typed(storage: Storage) -> None:
    assert storage.find_job("nope") is None
    with pytest.raises(NotFoundError):
        storage.job("nope")
    with pytest.raises(NotFoundError):
        storage.update_job("nope", status="failed")
    storage.put_job(_job())
    with pytest.raises(AttributeError):
        storage.update_job("j1", no_such_column=1)


def test_state_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    Storage(url).put_job(_job())
    assert Storage(url).job("j1").name == "align"


def test_unusable_database_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the node database") as info:
        Storage("postgresql+nosuchdriver://user:secret@localhost/db")
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError):
        Storage(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'node.db'}")
