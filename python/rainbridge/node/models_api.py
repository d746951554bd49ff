"""The REST routes of the model registry: list, read, export and import this node's parts
of trained models, and score one applicant online."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow

if TYPE_CHECKING:
    from rainbridge.node.api import Actor, May


class PredictIn(BaseModel):
    """One applicant to score online."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256, description="the applicant's ID")
    features: dict[str, float] | None = Field(
        default=None,
        description="this node's features of the applicant (default: its row in the dataset)",
    )


class ModelRefIn(BaseModel):
    """A model named by its ID, name@version or name (the latest version in use)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=260)


class ModelImportIn(BaseModel):
    """A model part exported by ``GET /v1/models/{id}/export``, to register here."""

    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    dataset: str | None = Field(default=None, description="this node's dataset for lookups")


def router(service: NodeService, may: May, actor: Actor) -> APIRouter:
    """The models' routes, served by ``service.models``."""
    r = APIRouter(tags=["models"])

    @r.get("/v1/models")
    def models(
        name: str | None = None,
        active: bool = False,
        user: UserRow = Depends(may("models.read")),
    ) -> list[dict[str, Any]]:
        """This node's parts of trained models (every version of ``name``; only those in use
        with ``active=true``)."""
        return service.models.models(name, retired=not active)

    @r.get("/v1/models/resolve")
    def resolve(ref: str, user: UserRow = Depends(may("models.read"))) -> dict[str, Any]:
        """The model a name stands for here: ID, name@version, or name (latest in use)."""
        return service.models.resolve(ref).to_dict()

    @r.post("/v1/models/retire")
    def retire(body: ModelRefIn, user: UserRow = Depends(may("models.write"))) -> dict[str, Any]:
        """Retire a model version here: no job and no online request scores with it again."""
        return service.models.retire(body.model, actor(user))

    @r.get("/v1/models/{model_id}")
    def model(model_id: str, user: UserRow = Depends(may("models.read"))) -> dict[str, Any]:
        """One model: metadata and this node's part (its features, standardisation, weights)."""
        return service.models.model(model_id)

    @r.get("/v1/models/{model_id}/export")
    def export_model(model_id: str, user: UserRow = Depends(may("models.read"))) -> dict[str, Any]:
        """This node's part of a model with its registration (to import on another node)."""
        return service.models.export_model(model_id)

    @r.post("/v1/models/import", status_code=201)
    def import_model(
        body: ModelImportIn, user: UserRow = Depends(may("models.write"))
    ) -> dict[str, Any]:
        """Register an exported model part (the next version of its name)."""
        return service.models.import_model(body.model, body.dataset, actor(user))

    @r.post("/v1/models/{model_id}/predict")
    async def predict(
        model_id: str, body: PredictIn, user: UserRow = Depends(may("models.predict"))
    ) -> dict[str, Any]:
        """Score one applicant online (at the model's label party)."""
        return await service.models.predict_online(model_id, body.key, body.features, actor(user))

    return r
