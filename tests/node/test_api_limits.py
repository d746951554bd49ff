"""The REST API's guard: the token is checked before a body is read, bodies are bounded,
and a body that is not JSON (or nests too deeply) is a 422 ``invalid_request``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rainbridge.node.api import MAX_DEPTH, create_app, json_depth
from rainbridge.node.config import NodeConfig, write_token
from rainbridge.node.keys import init_node_keys
from rainbridge.node.service import NodeService


@pytest.fixture
def node(tmp_path: Path) -> tuple[NodeService, str]:
    init_node_keys(tmp_path, "bank")
    token = write_token(tmp_path)
    cfg = NodeConfig(name="bank", dir=str(tmp_path))
    cfg.save()
    return NodeService(cfg), token


def asgi_call(app: Any, path: str, headers: dict[str, str], chunks: int) -> tuple[int, int]:
    """POST ``chunks`` MiB to ``app`` directly; returns (status, body messages read)."""
    reads = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": reads < chunks}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8700),
    }
    asyncio.run(app(scope, receive, send))
    return status, reads


def test_a_body_without_a_token_is_not_read(node: tuple[NodeService, str]) -> None:
    service, token = node
    app = create_app(service, token)
    json_h = {"content-type": "application/json", "content-length": str(64 << 20)}
    assert asgi_call(app, "/v1/jobs", json_h, 64) == (401, 0)
    bad = {**json_h, "authorization": "Bearer wrong"}
    assert asgi_call(app, "/v1/jobs", bad, 64) == (401, 0)
    # with a token but over the limit: refused from its declared length, unread
    good = {**json_h, "authorization": f"Bearer {token}"}
    assert asgi_call(app, "/v1/jobs", good, 64) == (413, 0)
    # no declared length (streamed): read only until it passes the limit
    streamed = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    status, reads = asgi_call(app, "/v1/jobs", streamed, 64)
    assert status == 413 and reads == 17


def test_through_the_client(node: tuple[NodeService, str]) -> None:
    service, token = node
    client = TestClient(create_app(service, token, max_body=1 << 20))
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b"x" * (1 << 20)

    r = client.post("/v1/jobs", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    client.headers["Authorization"] = f"Bearer {token}"
    r = client.post("/v1/jobs", content=b"x" * ((1 << 20) + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    for bad in (b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        r = client.post("/v1/jobs", content=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, bad[:10]
        assert r.json()["error"]["code"] == "invalid_request"
    deep = b'{"spec": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}"
    r = client.post("/v1/jobs", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "nests" in r.json()["error"]["message"]
    # an ordinary request still works, and public routes need no token
    assert client.get("/v1/node").json()["name"] == "bank"
    r = client.post("/v1/jobs", json={"spec": {}})
    assert r.status_code in (400, 422) and "error" in r.json()
    del client.headers["Authorization"]
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b"") == 0
    assert json_depth(json.dumps({"a": ["[[[[", {"b": '}}\\"[['}]}).encode()) == 3
    assert json_depth(b"[" * 50 + b"]" * 50) == 50
