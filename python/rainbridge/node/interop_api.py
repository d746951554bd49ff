"""The REST routes of interconnection: peers that speak the interconnection standard, and
PSI with them (served by ``service.interop``, :mod:`rainbridge.node.interop`)."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow


class IcPeerIn(BaseModel):
    """A peer that speaks the interconnection standard (another platform)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    url: str = Field(max_length=255, description="its gRPC Push endpoint, HOST:PORT")
    rank: int = Field(ge=0, le=1, description="the peer's rank; this node takes the other")
    listen: str = Field(max_length=255, description="where this node's Push server listens")
    channel: str = Field(default="root", max_length=64)
    counter_start: int = Field(default=0, ge=0, le=1)
    cert_pem: str | None = Field(default=None, description="the peer's certificate (mTLS)")
    tls_name: str | None = Field(default=None, max_length=255)


class InteropPsiIn(BaseModel):
    """ECDH-PSI with an interconnection peer on one of this node's datasets."""

    model_config = ConfigDict(extra="forbid")
    peer: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    receivers: Literal["both", "us", "peer"] = "both"
    columns: list[str] = Field(default_factory=list, description="own columns in the output")
    suites: list[Literal["curve25519", "sm2"]] | None = None
    output_format: Literal["parquet", "csv"] = "parquet"


def router(
    service: NodeService,
    may: Callable[[str], Callable[..., UserRow]],
    actor: Callable[[UserRow], str],
) -> APIRouter:
    """The interconnection routes, under the app's auth and errors."""
    r = APIRouter(tags=["interop"])

    @r.get("/v1/interop/peers")
    def ic_peers(user: UserRow = Depends(may("peers.read"))) -> list[dict[str, Any]]:
        """Peers that speak the interconnection standard."""
        return service.interop.ic_peers()

    @r.post("/v1/interop/peers", status_code=201)
    def add_ic_peer(
        body: IcPeerIn, user: UserRow = Depends(may("interop.write"))
    ) -> dict[str, Any]:
        """Add (or replace) an interconnection peer."""
        return service.interop.add_ic_peer(**body.model_dump(), actor=actor(user))

    @r.post("/v1/interop/psi")
    async def interop_psi(
        body: InteropPsiIn, user: UserRow = Depends(may("interop.run"))
    ) -> dict[str, Any]:
        """Run the standard's ECDH-PSI with an interconnection peer (both sides must run
        it at the same time); grants, outputs, metering and ledger as a native PSI job."""
        return await service.interop.interop_psi(**body.model_dump(), actor=actor(user))

    return r
