"""HTTPS for the REST API: when it is on, what a client pins, and no token in clear off
loopback, on either side."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from node_helpers import make_config

from rainbridge.cli import main
from rainbridge.errors import ConfigError
from rainbridge.node.api import create_app
from rainbridge.node.api_tls import check_settings, client_verify, is_loopback, uses_tls
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("bank.example", False),  # a name is not resolved: treated as reachable from afar
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tls_is_on_off_loopback_and_with_an_operator_certificate() -> None:
    assert not uses_tls("auto", "127.0.0.1")
    assert uses_tls("auto", "0.0.0.0")
    assert uses_tls("auto", "127.0.0.1", "/etc/api.pem")
    assert uses_tls("on", "127.0.0.1")
    assert not uses_tls("off", "127.0.0.1")


@pytest.mark.parametrize(
    ("mode", "host", "cert", "key", "message"),
    [
        ("off", "0.0.0.0", "", "", "plain text"),
        ("off", "10.1.2.3", "", "", "plain text"),
        ("maybe", "127.0.0.1", "", "", "expected one of"),
        ("auto", "127.0.0.1", "/c.pem", "", "go together"),
        ("auto", "127.0.0.1", "", "/k.pem", "go together"),
        ("off", "127.0.0.1", "/c.pem", "/k.pem", "remove one"),
    ],
)
def test_settings_that_would_leak_tokens_are_refused(
    mode: str, host: str, cert: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_settings(mode, host, cert, key)


def test_a_node_toml_with_plain_http_off_loopback_does_not_load(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.api_host, cfg.api_tls = "0.0.0.0", "off"
    cfg.save()  # save writes what it is given; load checks
    with pytest.raises(ConfigError, match="plain text"):
        NodeConfig.load(cfg.path)
    cfg.api_tls = "auto"
    cfg.save()
    assert NodeConfig.load(cfg.path).api_url.startswith("https://0.0.0.0:")
    cfg.api_host, cfg.api_tls = "::1", "on"
    cfg.save()
    assert NodeConfig.load(cfg.path).api_url.startswith("https://[::1]:")


def test_the_server_refuses_a_token_in_clear_from_another_machine(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    app = create_app(NodeService(cfg), cfg.token())
    auth = {"Authorization": f"Bearer {cfg.token()}"}
    far = TestClient(app, client=("10.20.30.40", 50000))
    r = far.get("/v1/node", headers=auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "tls_required"
    # refused before the token or the body is looked at: a wrong token gets the same answer
    r = far.post("/v1/datasets", headers={"Authorization": "Bearer wrong"}, content=b"{" * 9)
    assert r.status_code == 403 and r.json()["error"]["code"] == "tls_required"
    far_https = TestClient(app, base_url="https://testserver", client=("10.20.30.40", 50000))
    assert far_https.get("/v1/node", headers=auth).status_code == 200
    near = TestClient(app, client=("127.0.0.1", 50000))
    assert near.get("/v1/node", headers=auth).status_code == 200
    # the console's files carry no token: served either way
    assert far.get("/").status_code in (200, 404)


def test_the_client_refuses_to_send_a_token_in_clear_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plain HTTP to 10\.0\.0\.7"):
        client_verify("http://10.0.0.7:8700")
    with pytest.raises(ConfigError, match=r"plain HTTP to bank\.example"):
        client_verify("http://bank.example:8700")
    with pytest.raises(ConfigError, match="expected an http"):
        client_verify("ftp://127.0.0.1:21")
    assert client_verify("http://127.0.0.1:8700") is None
    assert client_verify("http://[::1]:8700") is None
    cfg = make_config(tmp_path / "bank", "bank")
    r = CliRunner().invoke(
        main,
        ["node", "info", "--dir", str(cfg.path), "--api", "http://10.0.0.7:8700"],
    )
    assert r.exit_code == 2 and "plain HTTP" in r.output
