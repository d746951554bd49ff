"""The REST routes of the multi-lender count: join a service, build it at the merger, count
at a lender (served by ``service.mlq``, :mod:`rainbridge.node.mlq`)."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow


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


def router(
    service: NodeService,
    may: Callable[[str], Callable[..., UserRow]],
    actor: Callable[[UserRow], str],
) -> APIRouter:
    """The multi-lender routes, under the app's auth and errors."""
    r = APIRouter(tags=["multi-lender"])

    @r.get("/v1/mlq/services")
    def mlq_services(user: UserRow = Depends(may("pir.read"))) -> list[dict[str, Any]]:
        """Multi-lender services this node is in, with their last build."""
        return service.mlq.mlq_services()

    @r.post("/v1/mlq/services", status_code=201)
    def mlq_join(body: MlqJoinIn, user: UserRow = Depends(may("mlq.admin"))) -> dict[str, Any]:
        """Join a multi-lender service as a lender (naming the dataset) or as its merger."""
        return service.mlq.mlq_join(**body.model_dump(), actor=actor(user))

    @r.post("/v1/mlq/{name}/build")
    async def mlq_build(
        name: str, body: MlqBuildIn, user: UserRow = Depends(may("mlq.admin"))
    ) -> dict[str, Any]:
        """At the merger: mask every lender's window around the ring and publish the multiset."""
        return await service.mlq.mlq_build(name, body.end, actor(user))

    @r.post("/v1/mlq/{name}/count")
    async def mlq_count(
        name: str, body: MlqCountIn, user: UserRow = Depends(may("mlq.query"))
    ) -> dict[str, Any]:
        """At a lender: in how many other lenders' windows this ID appears (only the count)."""
        return await service.mlq.mlq_count(name, body.id, actor(user))

    return r
