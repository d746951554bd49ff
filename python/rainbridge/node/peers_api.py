"""The REST routes of this node's identity and its peers: the node's name and fingerprint,
key rotation, and pinning, pinging and revoking peers."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.errors import RainbridgeError
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow

if TYPE_CHECKING:
    from rainbridge.node.api import Actor, May


class PeerIn(BaseModel):
    """A peer to pin: its data-plane address and certificate fingerprint."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    url: str = Field(max_length=300, description="HOST:PORT of the peer's data plane")
    fingerprint: str = Field(max_length=200, description="SHA-256 of its certificate (hex)")
    cert_pem: str | None = Field(
        default=None, max_length=20_000, description="the certificate, if not fetched"
    )


def router(service: NodeService, may: May, actor: Actor) -> APIRouter:
    """The node's and its peers' routes, served by ``service.peers`` and the data plane."""
    r = APIRouter()

    @r.get("/v1/node", tags=["node"])
    def node(user: UserRow = Depends(may("node.read"))) -> dict[str, Any]:
        """This node's name, certificate fingerprint, data-plane address and version."""
        return service.info()

    @r.post("/v1/keys/rotate", tags=["node"])
    async def rotate(user: UserRow = Depends(may("keys.rotate"))) -> dict[str, Any]:
        """New TLS and ledger keys without a restart; pinned peers are told and re-pin."""
        return await service.peers.rotate_keys(actor=actor(user))

    @r.get("/v1/peers", tags=["peers"])
    def peers(user: UserRow = Depends(may("peers.read"))) -> list[dict[str, Any]]:
        """The pinned peers."""
        return [p.to_dict() for p in service.storage.peers()]

    @r.get("/v1/peers/{name}/ping", tags=["peers"])
    async def ping(name: str, user: UserRow = Depends(may("peers.read"))) -> dict[str, Any]:
        """Whether a pinned peer answers over the data plane, and how fast (a fresh mutual
        TLS connection and one exchange)."""
        await service.background.db(service.storage.peer, name)  # 404 for an unknown peer
        t0 = time.perf_counter()
        try:
            reply = await service.dataplane.request(name, {"type": "ping"})
            online = reply.get("ok") is True
            reason = None if online else str(reply.get("reason"))[:200]
        except RainbridgeError as exc:
            online, reason = False, str(exc)[:200]
        ms = round((time.perf_counter() - t0) * 1000, 1)
        return {"peer": name, "online": online, "milliseconds": ms, "reason": reason}

    @r.post("/v1/peers", status_code=201, tags=["peers"])
    async def add_peer(body: PeerIn, user: UserRow = Depends(may("peers.write"))) -> dict[str, Any]:
        """Pin a peer; its certificate must have the given fingerprint."""
        return await service.peers.add_peer(
            body.name, body.url, body.fingerprint, body.cert_pem, actor=actor(user)
        )

    @r.post("/v1/peers/{name}/revoke", tags=["peers"])
    async def revoke_peer(name: str, user: UserRow = Depends(may("peers.write"))) -> dict[str, Any]:
        """Unpin a peer: its connections are refused and its running jobs stopped."""
        return await service.peers.revoke_peer(name, actor=actor(user))

    return r
