"""The REST routes of PIR (匿踪查询): publish and update this node's services, query and
sync peers' (served by ``service.pir``, :mod:`rainbridge.node.pir`)."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow


class PirPublishIn(BaseModel):
    """A PIR service to publish from one of this node's datasets."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64, description="the service's name, as clients ask for it")
    dataset: str = Field(description="a registered dataset; its ID column keys the service")
    labels: list[str] = Field(default_factory=list, description="columns a client may learn")
    modes: list[Literal["private", "bucket", "lattice"]] = Field(
        default=["private", "bucket"],
        description="private: clients copy the sealed table; bucket: k-anonymity; lattice: "
        "clients keep only a hint and read their rows by lattice PIR",
    )
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
    max_hint_bytes: int = Field(
        default=16 << 20,
        ge=1 << 20,
        le=1 << 30,
        description="lattice mode: the most bytes of the hint every client downloads once; a "
        "larger hint makes each query smaller (16 MiB serves about 10^7 rows, 10^8 need ~88 MiB)",
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
    mode: Literal["private", "bucket", "lattice"] = "private"


class PirSyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    peer: str = Field(max_length=64)
    mode: Literal["private", "lattice"] = Field(
        default="private",
        description="private: the replica of the sealed table; lattice: the hint",
    )


def router(
    service: NodeService,
    may: Callable[[str], Callable[..., UserRow]],
    actor: Callable[[UserRow], str],
) -> APIRouter:
    """The PIR routes, under the app's auth and errors."""
    r = APIRouter(tags=["pir"])

    @r.get("/v1/pir/services")
    def pir_services(user: UserRow = Depends(may("pir.read"))) -> list[dict[str, Any]]:
        """PIR services this node serves: rows, version, key ID, modes, rate limits."""
        return service.pir.pir_services()

    @r.post("/v1/pir/services", status_code=201)
    def pir_publish(
        body: PirPublishIn, user: UserRow = Depends(may("pir.publish"))
    ) -> dict[str, Any]:
        """Seal a dataset's label columns by its IDs as a PIR service (a new OPRF key)."""
        return service.pir.publish_pir(**body.model_dump(), actor=actor(user))

    @r.post("/v1/pir/services/{name}/update")
    def pir_update(
        name: str, body: PirUpdateIn, user: UserRow = Depends(may("pir.publish"))
    ) -> dict[str, Any]:
        """A new version of a service: rows upserted and IDs deleted (clients catch up by
        this delta)."""
        return service.pir.update_pir(name, body.upsert, body.delete, actor(user))

    @r.post("/v1/pir/{name}/query")
    async def pir_query(
        name: str, body: PirQueryIn, user: UserRow = Depends(may("pir.query"))
    ) -> dict[str, Any]:
        """Look IDs up in a peer's PIR service without revealing them (private and lattice
        modes: the peer sees only blinded elements and, in lattice mode, LWE-encrypted
        column selections; bucket mode: it learns each ID's bucket)."""
        return await service.pir.pir_query(body.peer, name, body.ids, body.mode, actor(user))

    @r.post("/v1/pir/{name}/sync")
    async def pir_sync(
        name: str, body: PirSyncIn, user: UserRow = Depends(may("pir.query"))
    ) -> dict[str, Any]:
        """Copy a peer's sealed table, or catch up by its deltas (private mode's replica); or,
        with mode "lattice", copy the service's hint or catch up by its changed rows."""
        if body.mode == "lattice":
            return await service.pir.pir_sync_hint(body.peer, name, actor(user))
        return await service.pir.pir_sync(body.peer, name, actor(user))

    return r
