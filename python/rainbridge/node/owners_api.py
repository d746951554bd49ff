"""The REST routes of data owners: datasets (register, publish, policy), the catalogue (this
node's and peers') and grants."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow

if TYPE_CHECKING:
    from rainbridge.node.api import Actor, May


class DatasetIn(BaseModel):
    """A file to register in place (CSV or Parquet, by extension), or a table or query of a
    SQL database (``sql_url`` with ``table`` or ``query``), with its catalogue entry."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    path: str | None = Field(
        default=None, max_length=4096, description="a path on the node's machine"
    )
    sql_url: str | None = Field(
        default=None,
        max_length=4096,
        description="postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://…; stored sealed, "
        "shown masked",
    )
    table: str | None = Field(default=None, max_length=255, description="TABLE or SCHEMA.TABLE")
    query: str | None = Field(default=None, max_length=100_000, description="one SELECT")
    id_column: str | None = Field(default=None, max_length=255)
    owner: str = Field(default="", max_length=64, description="default: the user")
    sensitivity: Literal["public", "internal", "confidential", "secret"] = "internal"
    description: str = Field(default="", max_length=4000)
    encoding: str | None = Field(
        default=None, max_length=64, description="a CSV file's encoding (default: UTF-8)"
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        max_length=4096,
        description="declared types of CSV columns, {column: type}, applied at every read",
    )


class PublishIn(BaseModel):
    """What peers may see of a dataset in the catalogue (metadata only, never rows)."""

    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(max_length=10_000)
    description: str | None = Field(default=None, max_length=4000)
    publish_rows: bool = Field(default=False, description="show the row count")
    published: bool = True


class PolicyIn(BaseModel):
    """A data owner's rules for results over a dataset."""

    model_config = ConfigDict(extra="forbid")
    min_group_size: int | None = Field(
        default=None, ge=1, description="k-anonymity threshold for grouped results"
    )
    dp_budget: float | None = Field(
        default=None, gt=0, description="total epsilon releases to other parties may spend"
    )
    columns: dict[str, str] | None = Field(
        default=None,
        description="column policy, column -> join|aggregate|compare|plaintext (replaces the "
        "previous one; {} removes it)",
    )
    column_updates: dict[str, str] | None = Field(
        default=None,
        description="levels of some columns, merged into the current policy in one "
        "transaction (the other columns keep theirs); not with columns",
    )


class GrantIn(BaseModel):
    """A data owner's permission for a peer to use a dataset."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(max_length=64)
    peer: str = Field(max_length=64)
    columns: list[str] = Field(max_length=10_000, description="columns, or ['*']")
    components: list[str] = Field(max_length=100, description="component types, or ['*']")
    receivers: list[str] = Field(max_length=100, description="parties that may get outputs")
    max_calls: int | None = Field(default=None, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    expires_at: dt.datetime | None = None
    approval: Literal["auto", "manual"] = "auto"


def router(service: NodeService, may: May, actor: Actor) -> APIRouter:
    """Datasets, catalogue and grants, served by ``service.owners``."""
    r = APIRouter()

    @r.get("/v1/datasets", tags=["datasets"])
    def datasets(
        user: UserRow = Depends(may("datasets.read")),
    ) -> list[dict[str, Any]]:
        """The registered datasets, with schema, row count and catalogue entry."""
        return [d.to_dict() for d in service.storage.datasets()]

    @r.post("/v1/datasets", status_code=201, tags=["datasets"])
    def add_dataset(
        body: DatasetIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Register a file, or a table or query of a SQL database, in place (never copied):
        its schema and row count are recorded."""
        return service.owners.add_dataset(**body.model_dump(), actor=actor(user))

    @r.post("/v1/datasets/{name}/publish", tags=["datasets"])
    def publish(
        name: str, body: PublishIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Choose what peers see of a dataset in the catalogue (安全发布)."""
        return service.owners.publish_dataset(name, **body.model_dump(), actor=actor(user))

    @r.post("/v1/datasets/{name}/policy", tags=["datasets"])
    def policy(
        name: str, body: PolicyIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Set the owner's k-anonymity threshold, differential-privacy budget and column
        policy."""
        return service.owners.set_dataset_policy(name, **body.model_dump(), actor=actor(user))

    @r.get("/v1/catalogue", tags=["catalogue"])
    def catalogue(
        user: UserRow = Depends(may("catalogue.read")),
    ) -> list[dict[str, Any]]:
        """This node's published catalogue, as peers see it."""
        return service.owners.catalogue()

    @r.get("/v1/catalogue/{peer}", tags=["catalogue"])
    async def peer_catalogue(
        peer: str, user: UserRow = Depends(may("catalogue.read"))
    ) -> list[dict[str, Any]]:
        """A peer's published catalogue (metadata only), fetched over the data plane."""
        return await service.owners.peer_catalogue(peer)

    @r.get("/v1/grants", tags=["grants"])
    def grants(
        user: UserRow = Depends(may("grants.read")),
        dataset: str | None = None,
        peer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Grants of this node's datasets, with their usage."""
        return [g.to_dict() for g in service.owners.grants(dataset, peer)]

    @r.post("/v1/grants", status_code=201, tags=["grants"])
    def add_grant(body: GrantIn, user: UserRow = Depends(may("grants.write"))) -> dict[str, Any]:
        """Let a peer use a dataset: columns, components, receivers, quota, expiry."""
        return service.owners.add_grant(**body.model_dump(), actor=actor(user))

    @r.post("/v1/grants/{grant_id}/revoke", tags=["grants"])
    async def revoke_grant(
        grant_id: str, user: UserRow = Depends(may("grants.write"))
    ) -> dict[str, Any]:
        """Revoke a grant: new jobs are refused and running ones under it stopped."""
        return await service.owners.revoke_grant(grant_id, actor=actor(user))

    return r
