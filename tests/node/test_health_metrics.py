"""/healthz, /readyz and /metrics of a real node app: no token for the probes, readiness
that names what is wrong, and metrics read from storage at scrape time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from node_helpers import make_config, pin, spec
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from rainbridge.node.api import create_app
from rainbridge.node.service import NodeService
from rainbridge.node.storage import GrantRow, JobPartyRow, JobRow


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeService, TestClient, str]]:
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.data_port = 0  # an ephemeral port: tests run side by side
    service = NodeService(cfg)
    token = (cfg.path / "api.token").read_text().strip()
    with TestClient(create_app(service)) as client:
        yield service, client, token
        client.portal.call(service.stop)


def scrape(client: TestClient, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_probes_need_no_token(node: tuple[NodeService, TestClient, str]) -> None:
    service, client, _ = node
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # the data plane is not open yet: not ready, and the check says which
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "not_ready",
        "checks": {"database": "ok", "data_plane": "not_listening", "ledger": "ok"},
    }
    client.portal.call(service.dataplane.start)
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"database": "ok", "data_plane": "ok", "ledger": "ok"},
    }


def test_readyz_names_a_broken_database(
    node: tuple[NodeService, TestClient, str], tmp_path: Path
) -> None:
    service, client, _ = node
    client.portal.call(service.dataplane.start)
    assert client.get("/readyz").status_code == 200
    # the database file becomes one SQLite cannot open (a directory)
    service.storage.engine.dispose()
    service.storage.engine = create_engine(f"sqlite:///{tmp_path}")
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["checks"] == {"database": "failed", "data_plane": "ok", "ledger": "ok"}
    assert str(tmp_path) not in r.text and "sqlite" not in r.text.lower()
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readyz_names_a_missing_table(node: tuple[NodeService, TestClient, str]) -> None:
    service, client, _ = node
    client.portal.call(service.dataplane.start)
    # job_parties first: PostgreSQL keeps a table another's foreign key refers to
    JobPartyRow.__table__.drop(service.storage.engine)  # type: ignore[attr-defined]
    JobRow.__table__.drop(service.storage.engine)  # type: ignore[attr-defined]
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["database"] == "failed"


def test_metrics_need_a_token_of_a_role_that_may(node: tuple[NodeService, TestClient, str]) -> None:
    service, client, _ = node
    r = client.get("/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    service.users.ensure("alice", "analyst", "analyst-token")
    r = client.get("/metrics", headers={"Authorization": "Bearer analyst-token"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "unauthorized"
    service.users.ensure("carol", "auditor", "auditor-token")
    assert scrape(client, "auditor-token")[("rainbridge_datasets", ())] == 0


def test_metrics_count_what_storage_holds(
    node: tuple[NodeService, TestClient, str], tmp_path: Path
) -> None:
    service, client, token = node
    before = scrape(client, token)
    assert before[("rainbridge_datasets", ())] == 0
    assert before[("rainbridge_peers_pinned", ())] == 0
    assert before[("rainbridge_workers_running", ())] == 0
    assert before[("rainbridge_pir_services", ())] == 0
    assert before[("rainbridge_grants", (("state", "active"),))] == 0
    info = [k for k in before if k[0] == "rainbridge_info"]
    assert info == [
        (
            "rainbridge_info",
            (
                ("crypto_suite", "standard"),
                ("name", "bank"),
                ("version", service.info()["version"]),
            ),
        )
    ]
    assert not [k for k in before if k[0] == "rainbridge_jobs"]

    csv = tmp_path / "c.csv"
    csv.write_text("customer_id,age\na,1\nb,2\n")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post(
        "/v1/datasets",
        json={"name": "customers", "path": str(csv), "id_column": "customer_id"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    pin(service, "telecom", service.identity)
    grant = {
        "dataset": "customers",
        "peer": "telecom",
        "columns": ["customer_id"],
        "components": ["psi"],
        "receivers": ["telecom"],
    }
    assert client.post("/v1/grants", json=grant, headers=auth).status_code == 201
    gone = client.post("/v1/grants", json=grant, headers=auth).json()["id"]
    assert client.post(f"/v1/grants/{gone}/revoke", headers=auth).status_code == 200
    soon = {**grant, "expires_at": "2100-01-01T00:00:00Z"}
    expiring = client.post("/v1/grants", json=soon, headers=auth).json()["id"]
    with service.storage.session() as db:  # a grant whose time has come (none is made so)
        db.get_one(GrantRow, expiring).expires_at = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)

    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    jobs = [
        ("j1", "succeeded", 3.0, "psi"),
        ("j2", "succeeded", 5.0, "psi"),
        ("j3", "running", 1.0, "psi"),
        ("j4", "failed", 2.0, "no_such_component"),
    ]
    for job_id, status, took, kind in jobs:
        s = spec({"bank": "customers", "telecom": "t"})
        s["components"][0]["type"] = kind
        service.storage.put_job(
            JobRow(
                id=job_id,
                name="j",
                spec=s,
                digest="0" * 64,
                initiator="bank",
                status=status,
                created_at=t0,
                updated_at=t0 + dt.timedelta(seconds=took),
            )
        )

    after = scrape(client, token)
    assert after[("rainbridge_datasets", ())] == 1
    assert after[("rainbridge_peers_pinned", ())] == 1
    assert after[("rainbridge_grants", (("state", "active"),))] == 1
    assert after[("rainbridge_grants", (("state", "revoked"),))] == 1
    assert after[("rainbridge_grants", (("state", "expired"),))] == 1
    # the dataset, the grants and their revocation are ledger entries
    assert after[("rainbridge_ledger_entries", ())] >= before[("rainbridge_ledger_entries", ())] + 4
    assert after[("rainbridge_ledger_entries", ())] == len(service.storage.ledger_rows())
    jobs_by = {k[1]: v for k, v in after.items() if k[0] == "rainbridge_jobs"}
    assert jobs_by == {
        (("component_type", "psi"), ("status", "succeeded")): 2,
        (("component_type", "psi"), ("status", "running")): 1,
        (("component_type", "other"), ("status", "failed")): 1,
    }
    succeeded = (("status", "succeeded"),)
    assert after[("rainbridge_job_duration_seconds_count", succeeded)] == 2
    assert after[("rainbridge_job_duration_seconds_sum", succeeded)] == pytest.approx(8.0)
    failed = (("status", "failed"),)
    assert after[("rainbridge_job_duration_seconds_sum", failed)] == pytest.approx(2.0)
    assert not [
        k
        for k in after
        if k[0].startswith("rainbridge_job_duration") and k[1] == (("status", "running"),)
    ]
    # no job ID, dataset name or path among the labels
    labels = " ".join(v for k in after for _, v in k[1])
    assert "j1" not in labels and "customers" not in labels and str(tmp_path) not in labels


def test_each_app_has_its_own_registry(node: tuple[NodeService, TestClient, str]) -> None:
    service, client, token = node
    with TestClient(create_app(service)) as other:
        assert scrape(other, token)[("rainbridge_datasets", ())] == 0
    assert scrape(client, token)[("rainbridge_datasets", ())] == 0
