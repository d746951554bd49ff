"""The CLI's node commands in process: init, and API calls with typed exit codes."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from rainbridge.cli import main
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService


def init(tmp_path: Path, *extra: str) -> dict[str, Any]:
    r = CliRunner().invoke(
        main, ["node", "init", "--name", "bank", "--dir", str(tmp_path / "bank"), "--json", *extra]
    )
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.output))


def test_init_writes_a_private_node_directory(tmp_path: Path) -> None:
    out = init(tmp_path)
    d = tmp_path / "bank"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "api.token").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "node.key").stat().st_mode) == 0o600
    cfg = NodeConfig.load(d)
    assert cfg.api_host == "127.0.0.1" and out["api"] == cfg.api_url
    assert len(out["fingerprint"]) == 64 and out["data_plane"] == cfg.data_url
    assert "dir" not in tomllib.loads((d / "node.toml").read_text())  # the node can be moved
    r = CliRunner().invoke(main, ["node", "init", "--name", "bank", "--dir", str(d)])
    assert r.exit_code == 2 and "already holds a node" in r.output


def test_init_refuses_bad_names_and_plain_http_off_loopback(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["node", "init", "--name", "../x", "--dir", str(tmp_path / "x")])
    assert r.exit_code == 2 and "node name" in r.output
    assert not (tmp_path / "x").exists()
    off = ["--api-host", "0.0.0.0", "--api-tls", "off"]
    r = CliRunner().invoke(
        main, ["node", "init", "--name", "b", "--dir", str(tmp_path / "b"), *off]
    )
    assert r.exit_code == 2 and "plain text" in r.output and not (tmp_path / "b").exists()
    r = CliRunner().invoke(
        main,
        ["node", "init", "--name", "b", "--dir", str(tmp_path / "b"), "--api-host", "0.0.0.0"],
    )
    assert r.exit_code == 0 and "https://0.0.0.0:" in r.output and "API pin" in r.output


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A node's API served in process; the CLI's HTTP calls are routed to it."""
    init(tmp_path)
    cfg = NodeConfig.load(tmp_path / "bank")
    client = TestClient(create_app(NodeService(cfg), cfg.token()))

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        if not url.startswith(cfg.api_url):
            raise httpx.ConnectError("nothing listens there")
        kw.pop("timeout", None)
        kw.pop("verify", None)
        return client.request(method, url[len(cfg.api_url) :], **kw)

    monkeypatch.setattr(httpx, "request", request)
    return str(tmp_path / "bank")


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_dataset_add_and_list(api: str, tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("customer_id,age\na,1\nb,2\n")
    r = cli("dataset", "add", "customers", "--path", str(csv), "--id", "customer_id", "--dir", api)
    assert r.exit_code == 0 and "2 rows, 2 columns" in r.output
    r = cli("dataset", "add", "bad", "--path", str(csv), "--id", "phone", "--dir", api)
    assert r.exit_code == 3 and "c.csv" in r.output and "'phone'" in r.output
    r = cli("dataset", "list", "--dir", api, "--json")
    assert [d["name"] for d in json.loads(r.output)] == ["customers"]


def test_api_url_and_token_from_the_environment(api: str, tmp_path: Path) -> None:
    cfg = NodeConfig.load(api)
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    env = {"RAINBRIDGE_API": cfg.api_url, "RAINBRIDGE_TOKEN": cfg.token()}
    r = cli("node", "info", "--dir", str(elsewhere), "--json", env=env)
    assert r.exit_code == 0 and json.loads(r.output)["name"] == "bank"
    r = cli("node", "info", "--dir", str(elsewhere), env={**env, "RAINBRIDGE_TOKEN": "wrong"})
    assert r.exit_code == 4 and "API token" in r.output
    r = cli("node", "info", "--dir", str(elsewhere), env={"RAINBRIDGE_API": cfg.api_url})
    assert r.exit_code == 2 and "RAINBRIDGE_TOKEN" in r.output


def test_exit_codes_for_missing_things(api: str, tmp_path: Path) -> None:
    r = cli("job", "status", "nope", "--dir", api)
    assert r.exit_code == 7 and "no job 'nope'" in r.output
    r = cli("node", "info", "--dir", api, "--api", "http://127.0.0.1:9")
    assert r.exit_code == 5 and "no node answers" in r.output
    r = cli("node", "info", "--dir", str(tmp_path / "nowhere"))
    assert r.exit_code == 2 and "not a node directory" in r.output
    job = tmp_path / "j.yaml"
    job.write_text("name: x\nparties: [bank]\ncomponents: []\n")
    r = cli("job", "submit", str(job), "--dir", api)
    assert r.exit_code == 2 and "components" in r.output
