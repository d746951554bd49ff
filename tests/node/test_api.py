"""The REST API of one node, in process: auth, typed errors, registration, job checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rainbridge.errors import ConfigError
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig, write_token
from rainbridge.node.keys import init_node_keys
from rainbridge.node.peers import parse_url
from rainbridge.node.service import NodeService


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    init_node_keys(tmp_path, "bank")
    token = write_token(tmp_path)
    cfg = NodeConfig(name="bank", dir=str(tmp_path))
    cfg.save()
    c = TestClient(create_app(NodeService(cfg), token))
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def test_token_required(client: TestClient) -> None:
    r = client.get("/v1/node", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    info = client.get("/v1/node").json()
    assert info["name"] == "bank" and len(info["fingerprint"]) == 64


def test_datasets(client: TestClient, tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("customer_id,age\na,1\nb,2\n")
    r = client.post(
        "/v1/datasets", json={"name": "customers", "path": str(csv), "id_column": "customer_id"}
    )
    assert r.status_code == 201 and r.json()["num_rows"] == 2
    r = client.post("/v1/datasets", json={"name": "bad", "path": str(csv), "id_column": "nope"})
    assert r.status_code == 400
    assert "c.csv" in r.json()["error"]["message"] and "'nope'" in r.json()["error"]["message"]
    assert [d["name"] for d in client.get("/v1/datasets").json()] == ["customers"]
    r = client.post("/v1/datasets", json={"name": "x", "path": str(csv), "extra": 1})
    assert r.status_code == 422


def test_job_checks_before_anything_is_sent(client: TestClient) -> None:
    spec = {
        "name": "j",
        "parties": ["bank", "telecom"],
        "components": [
            {
                "id": "psi",
                "type": "psi",
                "inputs": {
                    "bank": {"dataset": "customers", "id": "customer_id"},
                    "telecom": {"dataset": "subs", "id": "customer_id"},
                },
            }
        ],
    }
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 403 and "'telecom' is not a known peer" in r.json()["error"]["message"]
    spec["components"][0]["params"] = {"curve": "p256"}
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 400 and "params.curve" in r.json()["error"]["message"]
    assert client.get("/v1/jobs/nope").status_code == 404


def test_peer_add_refuses_bad_input(client: TestClient) -> None:
    r = client.post("/v1/peers", json={"name": "t", "url": "nowhere", "fingerprint": "ab" * 32})
    assert r.status_code == 400 and "HOST:PORT" in r.json()["error"]["message"]
    r = client.post("/v1/peers", json={"name": "t", "url": "127.0.0.1:1", "fingerprint": "xyz"})
    assert r.status_code == 400 and "64 hex" in r.json()["error"]["message"]
    r = client.post("/v1/peers", json={"name": "t", "url": "127.0.0.1:1", "fingerprint": "ab" * 32})
    assert r.status_code == 502  # nothing listens there


def test_parse_url() -> None:
    assert parse_url("tls://10.0.0.1:8701") == ("10.0.0.1", 8701)
    assert parse_url("[::1]:99") == ("::1", 99)
    with pytest.raises(ConfigError):
        parse_url("host:99999")


def test_errors_are_json_with_a_code(client: TestClient) -> None:
    r = client.post("/v1/datasets", json={"path": "x"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request" and "name" in r.json()["error"]["message"]
    r = client.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"
    r = client.get("/v1/node", headers={"Authorization": ""})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_unexpected_errors_are_logged_not_returned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_node_keys(tmp_path, "bank")
    token = write_token(tmp_path)
    service = NodeService(NodeConfig(name="bank", dir=str(tmp_path)))

    def boom() -> None:
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(service, "info", boom)
    c = TestClient(create_app(service, token), raise_server_exceptions=False)
    r = c.get("/v1/node", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "internal", "message": "internal error (see the node's log)"}
    }
    assert "secret detail" in caplog.text


def test_job_refused_locally_leaves_no_job_and_events_are_listed(
    client: TestClient, tmp_path: Path
) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("customer_id\na\n")
    client.post("/v1/datasets", json={"name": "customers", "path": str(csv)})
    spec = {
        "name": "solo",
        "parties": ["bank"],
        "components": [
            {"id": "psi", "type": "psi", "inputs": {"bank": {"dataset": "nope", "id": "x"}}}
        ],
    }
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code in (400, 403), r.json()
    assert client.get("/v1/jobs").json() == []
    kinds = [e["kind"] for e in client.get("/v1/events").json()]
    assert kinds == ["ledger_created", "dataset_added"]
    assert client.get("/openapi.json").status_code == 200
