"""A node's REST API with SQL datasets (in process): registration, its refusals as HTTP
errors, the credentials sealed in storage and opened again by a new service on the same
directory, grants and column policies on a SQL dataset as on a file, and the password in no
answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rainbridge.data import read_ids, sql_source
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig, write_token
from rainbridge.node.keys import init_node_keys
from rainbridge.node.service import NodeService
from rainbridge.node.storage import DatasetRow


def _client(directory: Path) -> tuple[TestClient, NodeService]:
    token = (directory / "api.token").read_text().strip()
    service = NodeService(NodeConfig.load(directory))
    c = TestClient(create_app(service, token))
    c.headers["Authorization"] = f"Bearer {token}"
    return c, service


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    init_node_keys(tmp_path, "bank")
    write_token(tmp_path)
    NodeConfig(name="bank", dir=str(tmp_path)).save()
    return tmp_path


def test_rest_registration_sealing_and_refusals(
    node_dir: Path, mariadb_server: Any, tmp_path: Path
) -> None:
    db = mariadb_server.create_database("sqlnode")
    mariadb_server.sql(
        "CREATE TABLE subs (customer_id varchar(10), plan varchar(8), spend double);"
        "INSERT INTO subs VALUES ('a', 'gold', 1.5), ('b', 'basic', 2.5), ('c', NULL, NULL)",
        db,
    )
    url = mariadb_server.url(db)
    password = mariadb_server.password
    c, service = _client(node_dir)
    r = c.post(
        "/v1/datasets",
        json={"name": "subs", "sql_url": url, "table": "subs", "id_column": "customer_id"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == "sql" and body["num_rows"] == 3
    assert body["source"]["url"] == body["path"] and ":***@" in body["path"]
    assert "sealed" not in body["source"]
    # stored sealed: the row's source holds no clear password
    with service.storage.session() as s:
        row = s.get(DatasetRow, "subs")
        assert row is not None and row.source is not None
        stored = json.dumps(row.source)
    assert password not in stored and row.source["sealed"]
    # grants and column policies as on a file
    r = c.post(
        "/v1/grants",
        json={"dataset": "subs", "peer": "telecom", "columns": ["customer_id", "plan"],
              "components": ["psi"], "receivers": ["bank"]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    r = c.post("/v1/datasets/subs/policy", json={"columns": {"customer_id": "join"}})
    assert r.status_code == 200, r.text
    r = c.post("/v1/datasets/subs/policy", json={"columns": {"salary": "join"}})
    assert r.status_code == 400 and "salary" in r.text
    # refusals, typed, without the password
    cases = [
        ({"sql_url": url, "table": "nope"}, 400, "data"),
        ({"sql_url": url, "query": "DELETE FROM subs"}, 400, "config"),
        ({"sql_url": url}, 400, "config"),
        ({"sql_url": url, "table": "subs", "path": str(tmp_path / "x.csv")}, 400, "config"),
        ({"sql_url": url, "table": "subs", "encoding": "gbk"}, 400, "config"),
        ({"sql_url": url.replace(password, "nope"), "table": "subs"}, 400, "data"),
        ({"sql_url": "oracle://u:" + password + "@h/db", "table": "t"}, 400, "config"),
    ]
    for extra, status, code in cases:
        r = c.post("/v1/datasets", json={"name": "x", "id_column": "customer_id", **extra})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (extra, r.text)
        assert password not in r.text
    listed = c.get("/v1/datasets").text + c.get("/v1/catalogue").text
    assert password not in listed and '"sealed"' not in listed
    ledger = json.dumps(service.storage.ledger_rows(), default=str)
    assert password not in ledger and "subs" in ledger
    # a new service on the same directory (a restarted node) opens the sealed URL again
    key = body["source"]["credential"]
    sql_source._URLS.pop(key)
    _, again = _client(node_dir)
    ref = again.storage.dataset_refs()["subs"]
    assert read_ids(ref).to_pylist() == ["a", "b", "c"]


@pytest.mark.parametrize("suite", ["standard", "gm"])
def test_a_sealed_url_opens_only_for_its_dataset(
    suite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sealed URL copied to another dataset's row, or under another credential key or
    master key, does not open; the refusal is typed and never shows the password."""
    from rainbridge.errors import ConfigError
    from rainbridge.node.credentials import SourceCredentials

    monkeypatch.setenv("RAINBRIDGE_MASTER_KEY", "11" * 32)
    creds = SourceCredentials(tmp_path, suite)
    url = "postgresql://owner:pa55-w0rd@db.example:5432/sales"
    sealed = creds.seal("customers", "k1", url)
    assert "pa55-w0rd" not in sealed
    assert creds.unseal("customers", "k1", sealed) == url
    for dataset, key, blob in (
        ("orders", "k1", sealed),
        ("customers", "k2", sealed),
        ("customers", "k1", sealed[:-4] + "AAAA"),
        ("customers", "k1", "not base64!"),
    ):
        with pytest.raises(ConfigError, match=f"dataset '{dataset}'") as exc:
            creds.unseal(dataset, key, blob)
        assert "pa55-w0rd" not in str(exc.value)
    monkeypatch.setenv("RAINBRIDGE_MASTER_KEY", "22" * 32)
    with pytest.raises(ConfigError, match="do not open"):
        SourceCredentials(tmp_path, suite).unseal("customers", "k1", sealed)
