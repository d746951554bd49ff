"""Limits set in node.toml reach what they bound: the REST body limit, the interconnection
link's message and buffer limits; nonsense values are refused when the node loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from node_helpers import make_config

from rainbridge.errors import ConfigError
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.config_file import BY_FIELD
from rainbridge.node.service import NodeService


def _with(cfg: NodeConfig, **changes: object) -> NodeConfig:
    """The node reloaded after ``changes`` were written into its node.toml (as they are:
    a string where a number belongs stays a string)."""
    for name, value in changes.items():
        setattr(cfg, name, value)
    cfg.save()
    return NodeConfig.load(cfg.path)


def test_the_body_limit_comes_from_the_configuration(tmp_path: Path) -> None:
    cfg = _with(make_config(tmp_path / "bank", "bank"), api_max_body=4096)
    client = TestClient(create_app(NodeService(cfg), cfg.token()))
    auth = {"Authorization": f"Bearer {cfg.token()}", "Content-Type": "application/json"}
    body = json.dumps({"name": "u", "role": "analyst", "pad": "x" * 5000})
    r = client.post("/v1/users", headers=auth, content=body)
    assert r.status_code == 413 and "4096 bytes" in r.json()["error"]["message"]
    r = client.post("/v1/users", headers=auth, content=json.dumps({"name": "u", "role": "analyst"}))
    assert r.status_code in (200, 201), r.text


def test_interconnection_links_take_the_configured_limits(tmp_path: Path) -> None:
    cfg = _with(
        make_config(tmp_path / "bank", "bank"),
        interop_max_message=1 << 20,
        interop_max_pending_bytes=4 << 20,
        interop_max_pending=64,
    )
    node = NodeService(cfg)
    node.interop.add_ic_peer(name="partner", url="127.0.0.1:9", rank=1, listen="127.0.0.1:0")
    link = node.interop.ic_link(node.interop.ic_peer("partner"), 0)
    assert (link.max_message, link.max_pending_bytes, link.max_pending) == (1 << 20, 4 << 20, 64)


@pytest.mark.parametrize(
    "change",
    [
        {"api_max_body": 0},
        {"api_max_body": "16M"},
        {"interop_max_message": -1},
        {"interop_max_pending_bytes": 1.5},
        {"interop_max_pending": True},
    ],
)
def test_nonsense_limits_are_refused_on_load(tmp_path: Path, change: dict[str, object]) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    key = BY_FIELD[next(iter(change))].dotted  # api_max_body is api.max_body in the file
    with pytest.raises(ConfigError, match=re.escape(key)):
        _with(cfg, **change)
