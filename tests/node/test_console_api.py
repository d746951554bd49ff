"""What the web console needs of the API: the component catalogue with parameter schemas,
a job's outputs as rows or the file, a peer's liveness, and the built console at /."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from node_helpers import make_config

from rainbridge.node import api as api_mod
from rainbridge.node.service import NodeService


@pytest.fixture()
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    console = tmp_path / "console"
    console.mkdir()
    (console / "index.html").write_text("<!doctype html><div id=root></div>")
    monkeypatch.setenv("RAINBRIDGE_CONSOLE_DIR", str(console))
    cfg = make_config(tmp_path / "bank", "bank")
    service = NodeService(cfg)
    c = TestClient(api_mod.create_app(service))
    c.headers["Authorization"] = f"Bearer {cfg.token()}"
    return c


def test_components_carry_parameter_schemas(client: TestClient) -> None:
    rows = client.get("/v1/components").json()
    by = {r["type"]: r for r in rows}
    assert {"psi", "train_sgb", "evaluate"} <= set(by)
    assert "properties" in by["psi"]["params"] and by["psi"]["outputs"] == ["intersection"]


def test_the_console_is_served_and_the_api_wins(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "root" in r.text
    assert client.get("/v1/components").headers["content-type"].startswith("application/json")
    assert client.get("/v1/jobs/nope/outputs/a/b").status_code == 404
    assert client.get("/v1/peers/nobody/ping").status_code == 404
    anon = TestClient(client.app)
    assert anon.get("/v1/components").status_code == 401


def test_console_dir_is_none_until_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAINBRIDGE_CONSOLE_DIR", str(tmp_path / "missing"))
    assert api_mod.console_dir() is None
