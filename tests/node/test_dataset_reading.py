"""How a node reads a registered dataset: the encoding and declared column types given at
`dataset add` (CLI and REST) are stored with it and applied at every later read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from rainbridge.cli import main
from rainbridge.data import DatasetRef, read_columns, read_ids
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService


def gbk_file(tmp_path: Path) -> Path:
    p = tmp_path / "gbk.csv"
    p.write_bytes("客户,邮编,金额\n张三,01234,5\n李四,99999,7\n".encode("gbk"))
    return p


@pytest.fixture
def cfg(tmp_path: Path) -> NodeConfig:
    r = CliRunner().invoke(
        main, ["node", "init", "--name", "bank", "--dir", str(tmp_path / "bank"), "--json"]
    )
    assert r.exit_code == 0, r.output
    return NodeConfig.load(tmp_path / "bank")


@pytest.fixture
def client(cfg: NodeConfig) -> TestClient:
    c = TestClient(create_app(NodeService(cfg), cfg.token()))
    c.headers["Authorization"] = f"Bearer {cfg.token()}"
    return c


def test_rest_dataset_add_with_encoding_and_types(
    client: TestClient, cfg: NodeConfig, tmp_path: Path
) -> None:
    csv = gbk_file(tmp_path)
    r = client.post("/v1/datasets", json={"name": "c", "path": str(csv), "id_column": "客户"})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "dataset 'c'" in msg and "--encoding gb18030" in msg
    body = {
        "name": "c",
        "path": str(csv),
        "id_column": "客户",
        "encoding": "gbk",
        "column_types": {"邮编": "string"},
    }
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["encoding"] == "gbk" and row["column_types"] == {"邮编": "string"}
    assert row["num_rows"] == 2 and row["columns"]["金额"] == "int64"
    # stored: a node opened again reads the file the same way
    ref = NodeService(cfg).storage.dataset_refs()["c"]
    assert ref.encoding == "gbk" and ref.column_types == {"邮编": "string"}
    assert read_ids(ref).to_pylist() == ["张三", "李四"]
    assert read_columns(ref, ["邮编"]).column("邮编").to_pylist() == ["01234", "99999"]
    # what a job's worker receives (the ref as a dict) carries it too
    assert DatasetRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    events = client.get("/v1/events").json()
    added = [e for e in events if "dataset_added" in json.dumps(e)]
    assert added and '"encoding": "gbk"' in json.dumps(added[-1], ensure_ascii=False)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"encoding": "klingon"}, "'klingon'"),
        ({"column_types": {"金额": "money"}}, "not one of"),
        ({"column_types": {"nope": "int64"}}, "'nope'"),
    ],
)
def test_rest_dataset_add_refuses_bad_reading_options(
    client: TestClient, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    body = {"name": "c", "path": str(gbk_file(tmp_path)), "encoding": "gbk", **extra}
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 400 and message in r.json()["error"]["message"]
    assert client.get("/v1/datasets").json() == []


def test_cli_dataset_add_with_encoding_and_column_types(
    cfg: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(create_app(NodeService(cfg), cfg.token()))

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        kw.pop("timeout", None)
        kw.pop("verify", None)
        return client.request(method, url[len(cfg.api_url) :], **kw)

    monkeypatch.setattr(httpx, "request", request)
    csv = gbk_file(tmp_path)
    args = ["dataset", "add", "c", "--path", str(csv), "--id", "客户", "--dir", cfg.dir]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and "--encoding gb18030" in r.output
    r = CliRunner().invoke(main, [*args, "--encoding", "gb18030", "--column-type", "邮编"])
    assert r.exit_code == 2 and "COLUMN=TYPE" in r.output
    r = CliRunner().invoke(
        main,
        [*args, "--encoding", "gb18030", "--column-type", "邮编=string", "--column-type",
         "金额=double", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["encoding"] == "gb18030"
    assert out["column_types"] == {"邮编": "string", "金额": "double"}
