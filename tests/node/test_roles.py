"""API access control: users, roles, tokens, and every write attributed in the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from node_helpers import make_config

from node_databases import on_postgresql
from rainbridge.node.api import create_app
from rainbridge.node.service import NodeService
from rainbridge.node.users import PERMISSIONS, ROLES


@pytest.fixture
def admin(tmp_path: Path) -> TestClient:
    cfg = make_config(tmp_path / "bank", "bank")
    c = TestClient(create_app(NodeService(cfg)))
    c.headers["Authorization"] = f"Bearer {cfg.token()}"
    return c


def as_user(admin: TestClient, name: str, role: str) -> TestClient:
    r = admin.post("/v1/users", json={"name": name, "role": role})
    assert r.status_code == 201, r.json()
    c = TestClient(admin.app)
    c.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return c


def test_an_analyst_cannot_change_grants_or_users(admin: TestClient, csv_file: Path) -> None:
    admin.post(
        "/v1/datasets",
        json={"name": "customers", "path": str(csv_file), "id_column": "customer_id"},
    )
    analyst = as_user(admin, "ana", "analyst")
    grant = {
        "dataset": "customers",
        "peer": "telecom",
        "columns": ["*"],
        "components": ["psi"],
        "receivers": ["telecom"],
    }
    r = analyst.post("/v1/grants", json=grant)
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": "unauthorized",
        "message": "user 'ana' (analyst) may not grants write; roles allowed: admin, owner",
    }
    assert analyst.post("/v1/users", json={"name": "x", "role": "admin"}).status_code == 403
    assert analyst.get("/v1/ledger").status_code == 403
    assert analyst.get("/v1/grants").status_code == 403
    assert analyst.get("/v1/jobs").status_code == 200
    owner = as_user(admin, "olivia", "owner")
    r = owner.post("/v1/grants", json=grant)
    assert r.status_code == 201, r.json()
    assert analyst.post(f"/v1/grants/{r.json()['id']}/revoke").status_code == 403
    # the owner's write is attributed to her in the ledger
    entries = admin.get("/v1/ledger").json()["entries"]
    (added,) = [e["entry"] for e in entries if e["entry"]["kind"] == "grant_added"]
    assert added["actor"] == "user:olivia"
    kinds = {e["entry"]["kind"]: e["entry"]["actor"] for e in entries}
    assert kinds["user_added"] == "user:admin" and kinds["dataset_added"] == "user:admin"


def test_an_auditor_reads_and_verifies_but_changes_nothing(admin: TestClient) -> None:
    auditor = as_user(admin, "audrey", "auditor")
    assert auditor.get("/v1/ledger/verify").json()["ok"] is True
    assert auditor.get("/v1/metering?format=csv").text.startswith("peer,grant_id,")
    assert auditor.get("/v1/grants").status_code == 200
    for method, path, body in (
        ("POST", "/v1/jobs", {"spec": {}}),
        ("POST", "/v1/datasets", {"name": "x", "path": "/x"}),
        ("POST", "/v1/keys/rotate", None),
        ("POST", "/v1/peers", {"name": "p", "url": "h:1", "fingerprint": "00"}),
    ):
        r = auditor.request(method, path, json=body)
        assert r.status_code == 403, (path, r.json())


def test_tokens_unknown_disabled_or_missing_are_one_error(admin: TestClient) -> None:
    bob = as_user(admin, "bob", "analyst")
    assert bob.get("/v1/me").json()["role"] == "analyst"
    assert admin.post("/v1/users/bob/disable").status_code == 200
    anonymous = TestClient(admin.app)
    for auth in (bob.headers["Authorization"], None, "x", "Bearer "):
        headers = {"Authorization": auth} if auth is not None else {}
        r = anonymous.get("/v1/me", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert admin.post("/v1/users", json={"name": "bob", "role": "owner"}).status_code == 400
    assert admin.post("/v1/users", json={"name": "eve", "role": "root"}).status_code == 422


@pytest.mark.skipif(on_postgresql(), reason="reads the node's SQLite file")
def test_tokens_are_stored_hashed(admin: TestClient, tmp_path: Path) -> None:
    token = admin.post("/v1/users", json={"name": "carol", "role": "owner"}).json()["token"]
    db = (tmp_path / "bank" / "node.db").read_bytes()
    assert token.encode() not in db


def test_every_action_has_known_roles() -> None:
    for action, roles in PERMISSIONS.items():
        assert roles <= set(ROLES) and "admin" in roles, action


def test_a_disabled_bootstrap_admin_stays_disabled_after_a_restart(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    node = NodeService(cfg)
    node.users.add("root", "admin")
    node.users.disable("admin")
    again = NodeService(cfg)  # a restart reads api.token again
    (admin,) = [u for u in again.users.list() if u.name == "admin"]
    assert admin.disabled
