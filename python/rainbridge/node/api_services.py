"""The REST routes of the node's query services: PIR (匿踪查询), the multi-lender count and
interconnection peers (added to the app by :func:`rainbridge.node.api.create_app`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow


class PirPublishIn(BaseModel):
    """A PIR service to publish from one of this node's datasets."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64, description="the service's name, as clients ask for it")
    dataset: str = Field(description="a registered dataset; its ID column keys the service")
    labels: list[str] = Field(default_factory=list, description="columns a client may learn")
    modes: list[Literal["private", "bucket"]] = Field(default=["private", "bucket"])
    k: int = Field(default=256, ge=1, le=1 << 20, description="bucket mode: IDs per bucket")
    rate_per_s: float = Field(default=50.0, gt=0, description="queries/s per client")
    burst: int = Field(default=100, ge=1)
    max_reply_bytes: int = Field(
        default=256 << 20,
        ge=1 << 16,
        le=1 << 34,
        description="bucket mode: the most bytes of rows one answer may carry (sent in pages "
        "of at most 1 MiB); a query whose answer would be larger is refused before any work",
    )


class PirUpdateIn(BaseModel):
    """Rows to add or change (each with the ID column and every label) and IDs to delete.

    Labels are read with the published table's column types, as a CSV cell of that type
    would be: text stays text in a string column (``"007"``), an empty text or null is NULL.
    """

    model_config = ConfigDict(extra="forbid")
    upsert: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)
    delete: list[str] = Field(default_factory=list, max_length=100_000)


class PirQueryIn(BaseModel):
    """IDs to look up in a peer's PIR service."""

    model_config = ConfigDict(extra="forbid")
    peer: str = Field(max_length=64, description="the node serving the service")
    ids: list[str] = Field(min_length=1, max_length=4096)
    mode: Literal["private", "bucket"] = "private"


class MlqJoinIn(BaseModel):
    """This node's part in a multi-lender service: a lender (with its dataset) or the merger."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    lenders: list[str] = Field(min_length=2, max_length=256)
    merger: str = Field(max_length=64)
    window_days: int = Field(default=30, ge=1, le=3650)
    dataset: str | None = Field(default=None, description="a lender's applications")
    date_column: str | None = Field(default=None, description="the application date")
    rate_per_s: float = Field(default=50.0, gt=0, description="counts/s another lender may ask")
    on_change: Literal["refuse", "rebuild"] = Field(
        default="refuse",
        description="a count when a lender's window changed since the build: refuse (naming "
        "the lender) or have the merger rebuild that window first (the merger's own setting "
        "decides whether it rebuilds on request)",
    )


class MlqBuildIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    end: str | None = Field(default=None, description="last day of the window (YYYY-MM-DD)")


class MlqCountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256, description="the applicant's ID")


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


class PirSyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    peer: str = Field(max_length=64)


def add_service_routes(
    app: FastAPI,
    service: NodeService,
    may: Callable[[str], Callable[..., UserRow]],
    actor: Callable[[UserRow], str],
) -> None:
    """PIR, multi-lender and interconnection routes, under the app's auth and errors."""

    @app.get("/v1/pir/services", tags=["pir"])
    async def pir_services(user: UserRow = Depends(may("pir.read"))) -> list[dict[str, Any]]:
        """PIR services this node serves: rows, version, key ID, modes, rate limits."""
        return service.pir.pir_services()

    @app.post("/v1/pir/services", tags=["pir"], status_code=201)
    async def pir_publish(
        body: PirPublishIn, user: UserRow = Depends(may("pir.publish"))
    ) -> dict[str, Any]:
        """Seal a dataset's label columns by its IDs as a PIR service (a new OPRF key)."""
        return await asyncio.to_thread(
            lambda: service.pir.publish_pir(**body.model_dump(), actor=actor(user))
        )

    @app.post("/v1/pir/services/{name}/update", tags=["pir"])
    async def pir_update(
        name: str, body: PirUpdateIn, user: UserRow = Depends(may("pir.publish"))
    ) -> dict[str, Any]:
        """A new version of a service: rows upserted and IDs deleted (clients catch up by
        this delta)."""
        return await asyncio.to_thread(
            service.pir.update_pir, name, body.upsert, body.delete, actor(user)
        )

    @app.post("/v1/pir/{name}/query", tags=["pir"])
    async def pir_query(
        name: str, body: PirQueryIn, user: UserRow = Depends(may("pir.query"))
    ) -> dict[str, Any]:
        """Look IDs up in a peer's PIR service without revealing them (private mode: the peer
        sees only blinded elements; bucket mode: it learns each ID's bucket)."""
        return await service.pir.pir_query(body.peer, name, body.ids, body.mode, actor(user))

    @app.post("/v1/pir/{name}/sync", tags=["pir"])
    async def pir_sync(
        name: str, body: PirSyncIn, user: UserRow = Depends(may("pir.query"))
    ) -> dict[str, Any]:
        """Copy a peer's sealed table, or catch up by its deltas (private mode's replica)."""
        return await service.pir.pir_sync(body.peer, name, actor(user))

    @app.get("/v1/mlq/services", tags=["multi-lender"])
    async def mlq_services(user: UserRow = Depends(may("pir.read"))) -> list[dict[str, Any]]:
        """Multi-lender services this node is in, with their last build."""
        return service.mlq.mlq_services()

    @app.post("/v1/mlq/services", tags=["multi-lender"], status_code=201)
    async def mlq_join(
        body: MlqJoinIn, user: UserRow = Depends(may("mlq.admin"))
    ) -> dict[str, Any]:
        """Join a multi-lender service as a lender (naming the dataset) or as its merger."""
        return service.mlq.mlq_join(**body.model_dump(), actor=actor(user))

    @app.post("/v1/mlq/{name}/build", tags=["multi-lender"])
    async def mlq_build(
        name: str, body: MlqBuildIn, user: UserRow = Depends(may("mlq.admin"))
    ) -> dict[str, Any]:
        """At the merger: mask every lender's window around the ring and publish the multiset."""
        return await service.mlq.mlq_build(name, body.end, actor(user))

    @app.post("/v1/mlq/{name}/count", tags=["multi-lender"])
    async def mlq_count(
        name: str, body: MlqCountIn, user: UserRow = Depends(may("mlq.query"))
    ) -> dict[str, Any]:
        """At a lender: in how many other lenders' windows this ID appears (only the count)."""
        return await service.mlq.mlq_count(name, body.id, actor(user))

    @app.get("/v1/interop/peers", tags=["interop"])
    async def ic_peers(user: UserRow = Depends(may("peers.read"))) -> list[dict[str, Any]]:
        """Peers that speak the interconnection standard."""
        return service.interop.ic_peers()

    @app.post("/v1/interop/peers", tags=["interop"], status_code=201)
    async def add_ic_peer(
        body: IcPeerIn, user: UserRow = Depends(may("interop.write"))
    ) -> dict[str, Any]:
        """Add (or replace) an interconnection peer."""
        return service.interop.add_ic_peer(**body.model_dump(), actor=actor(user))

    @app.post("/v1/interop/psi", tags=["interop"])
    async def interop_psi(
        body: InteropPsiIn, user: UserRow = Depends(may("interop.run"))
    ) -> dict[str, Any]:
        """Run the standard's ECDH-PSI with an interconnection peer (both sides must run
        it at the same time); grants, outputs, metering and ledger as a native PSI job."""
        return await service.interop.interop_psi(**body.model_dump(), actor=actor(user))
