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
    c.app.state.service = service  # for tests that set up a job record directly
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


def test_a_job_output_is_read_page_by_page(client: TestClient, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rainbridge.node.storage import JobRow

    out = tmp_path / "stats.result.parquet"
    big = 2**70 + 1  # an exact integer result: its text keeps every digit
    pq.write_table(pa.table({"i": list(range(250)), "exact": [str(big)] * 250}), out)
    storage = client.app.state.service.storage
    storage.put_job(
        JobRow(
            id="j1", name="j", spec={}, digest="d", initiator="bank", status="succeeded",
            result={"components": {"stats": {"outputs": {"result": {"path": str(out)}}}}},
        )
    )  # fmt: skip
    pages = [
        client.get(f"/v1/jobs/j1/outputs/stats/result?limit=100&offset={o}").json()
        for o in (0, 100, 200, 300)
    ]
    assert [len(p["rows"]) for p in pages] == [100, 100, 50, 0]
    assert all(p["total"] == 250 for p in pages)
    assert [r["i"] for p in pages for r in p["rows"]] == list(range(250))
    assert int(pages[2]["rows"][0]["exact"]) == big
