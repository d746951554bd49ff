"""Nodes in one process, their control exchanges carried in memory: every request and reply
is encoded as JSON and held to the data plane's message limit, as the real channel holds
it (an oversized reply closes the session), so a service that only works with small
messages fails here as it fails between real nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node_helpers import make_config

from rainbridge.errors import PeerDisconnectedError, ProtocolViolationError
from rainbridge.node.dataplane import MAX_CONTROL_BYTES
from rainbridge.node.service import NodeService


class Plane:
    """The in-memory data plane of a few :class:`NodeService` objects."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeService] = {}
        self.largest = 0
        self.messages = 0

    def node(self, base: Path, name: str) -> NodeService:
        svc = NodeService(make_config(base / name, name))
        self.nodes[name] = svc
        # the services hold the node's data plane: its requests are carried here instead
        svc.dataplane.request = _Link(self, name).request  # type: ignore[method-assign]
        return svc

    def _note(self, size: int) -> None:
        self.messages += 1
        self.largest = max(self.largest, size)


class _Link:
    """A node's control requests to the other nodes of the plane (``DataPlane.request``: the
    data plane's ``call``, ``ask`` and ``tell`` go through it)."""

    def __init__(self, plane: Plane, name: str) -> None:
        self.plane, self.name = plane, name

    async def request(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(msg).encode()
        self.plane._note(len(raw))
        if len(raw) > MAX_CONTROL_BYTES:
            raise ProtocolViolationError(f"message of {len(raw)} bytes exceeds the limit")
        reply = await self.plane.nodes[peer].router.dispatch(self.name, json.loads(raw))
        raw = json.dumps(reply).encode()
        self.plane._note(len(raw))
        if len(raw) > MAX_CONTROL_BYTES:
            raise PeerDisconnectedError(
                f"peer {peer!r} closed the session (while we waited for 'reply'): "
                f"its reply of {len(raw)} bytes exceeds the limit of {MAX_CONTROL_BYTES}"
            )
        return dict(json.loads(raw))
