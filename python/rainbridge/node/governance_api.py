"""The REST routes of who may use the node and of the record of what it did: API users, the
ledger (as events, as signed entries, and its verification) and metering."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node import metering
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow

if TYPE_CHECKING:
    from rainbridge.node.api import Actor, May


class UserIn(BaseModel):
    """A new API user; the answer carries its token, shown only once."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    role: Literal["admin", "owner", "analyst", "auditor"]


def router(service: NodeService, may: May, actor: Actor) -> APIRouter:
    """Users, ledger and metering, served by ``service.users``, the ledger and storage."""
    r = APIRouter()

    @r.get("/v1/users", tags=["users"])
    def users(user: UserRow = Depends(may("users.read"))) -> list[dict[str, Any]]:
        """The node's API users and their roles."""
        return [u.to_dict() for u in service.users.list()]

    @r.post("/v1/users", status_code=201, tags=["users"])
    def add_user(body: UserIn, user: UserRow = Depends(may("users.write"))) -> dict[str, Any]:
        """Create a user; the answer carries its token, which is shown only this once."""
        row, tok = service.users.add(body.name, body.role)
        service.storage.log("user_added", {"user": row.name, "role": row.role}, actor=actor(user))
        return {**row.to_dict(), "token": tok}

    @r.post("/v1/users/{name}/disable", tags=["users"])
    def disable_user(name: str, user: UserRow = Depends(may("users.write"))) -> dict[str, Any]:
        """Disable a user: its token stops working at once."""
        row = service.users.disable(name)
        service.storage.log("user_disabled", {"user": name}, actor=actor(user))
        return row.to_dict()

    @r.get("/v1/events", tags=["ledger"])
    def events(
        user: UserRow = Depends(may("jobs.read")),
        job_id: str | None = None,
        since: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The node's ledger as events (peers pinned, datasets added, decisions, outcomes)."""
        return service.storage.events(job_id, limit=max(1, min(limit, 10_000)), since=since)

    @r.get("/v1/ledger", tags=["ledger"])
    def ledger(
        user: UserRow = Depends(may("ledger.read")),
        job_id: str | None = None,
        since: int = 0,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """Signed ledger entries as stored (entry, hash, signature) and the signed head."""
        rows = service.storage.ledger_rows(
            job_id=job_id, since=since, limit=max(1, min(limit, 10_000))
        )
        return {"head": service.ledger.head(), "entries": rows}

    @r.get("/v1/ledger/verify", tags=["ledger"])
    def verify(user: UserRow = Depends(may("ledger.read"))) -> dict[str, Any]:
        """Check the whole ledger: chain, signatures, key hand-overs, job records, head."""
        return service.ledger.verify().to_dict()

    @r.get("/v1/metering", tags=["metering"])
    def meter(
        user: UserRow = Depends(may("metering.read")),
        since: str | None = None,
        until: str | None = None,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        """Usage per peer, grant and component type in [since, until); JSON or CSV."""
        rep = metering.report(
            service.storage,
            metering.parse_day(since, "since"),
            metering.parse_day(until, "until"),
        )
        if format == "csv":
            return PlainTextResponse(metering.report_csv(rep), media_type="text/csv")
        return JSONResponse(rep)

    return r
