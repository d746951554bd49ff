"""The node's REST API (FastAPI), for users, tools and the console.

Every request carries the node's bearer token (``DIR/api.token``). Errors are JSON
``{"error": {"code", "message"}}`` with an HTTP status that follows the error's kind; an
unexpected failure is logged here and answered with a generic message, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from rainbridge.errors import RainbridgeError
from rainbridge.node.service import NodeService

log = logging.getLogger("rainbridge.node.api")

STATUS = {
    "config": 400,
    "job_spec": 400,
    "data": 400,
    "parameter_mismatch": 400,
    "unauthorized": 403,
    "job_refused": 409,
    "authentication": 502,
    "not_found": 404,
    "channel": 502,
    "peer_disconnected": 502,
    "timeout": 504,
}


class PeerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    url: str
    fingerprint: str
    cert_pem: str | None = None


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    path: str
    id_column: str | None = None


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]


def create_app(service: NodeService, token: str) -> FastAPI:
    app = FastAPI(
        title=f"Rainbridge node {service.name}",
        version="1",
        description="Peers, datasets and jobs of one Rainbridge node.",
    )

    def auth(authorization: str = Header(default="")) -> None:
        given = authorization.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _ApiError(401, "unauthorized", "missing or wrong API token")

    @app.exception_handler(RainbridgeError)
    async def on_error(_: Request, exc: RainbridgeError) -> JSONResponse:
        return JSONResponse(
            status_code=STATUS.get(exc.code, 400),
            content={"error": {"code": exc.code, "message": str(exc)}},
        )

    @app.exception_handler(_ApiError)
    async def on_api_error(_: Request, exc: _ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content={"error": {"code": exc.code, "message": exc.message}}
        )

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={"error": {"code": "internal", "message": "internal error (see node log)"}},
        )

    guarded = [Depends(auth)]

    @app.get("/v1/node", dependencies=guarded)
    async def node() -> dict[str, Any]:
        return service.info()

    @app.get("/v1/peers", dependencies=guarded)
    async def peers() -> list[dict[str, Any]]:
        return [p.to_dict() for p in service.storage.peers()]

    @app.post("/v1/peers", dependencies=guarded, status_code=201)
    async def add_peer(body: PeerIn) -> dict[str, Any]:
        return await service.add_peer(body.name, body.url, body.fingerprint, body.cert_pem)

    @app.get("/v1/datasets", dependencies=guarded)
    async def datasets() -> list[dict[str, Any]]:
        return [d.to_dict() for d in service.storage.datasets()]

    @app.post("/v1/datasets", dependencies=guarded, status_code=201)
    async def add_dataset(body: DatasetIn) -> dict[str, Any]:
        return service.add_dataset(body.name, body.path, body.id_column)

    @app.get("/v1/jobs", dependencies=guarded)
    async def jobs() -> list[dict[str, Any]]:
        return [j.to_dict() for j in service.storage.jobs()]

    @app.post("/v1/jobs", dependencies=guarded, status_code=201)
    async def submit(body: JobIn) -> dict[str, Any]:
        return await service.submit(body.spec)

    @app.get("/v1/jobs/{job_id}", dependencies=guarded)
    async def job(job_id: str) -> dict[str, Any]:
        return service.storage.job(job_id).to_dict()

    @app.get("/v1/jobs/{job_id}/result", dependencies=guarded)
    async def result(job_id: str) -> dict[str, Any]:
        row = service.storage.job(job_id)
        return {"id": row.id, "status": row.status, "error": row.error, "result": row.result}

    @app.post("/v1/jobs/{job_id}/cancel", dependencies=guarded)
    async def cancel(job_id: str) -> dict[str, Any]:
        return await service.cancel(job_id)

    @app.get("/v1/events", dependencies=guarded)
    async def events(job_id: str | None = None) -> list[dict[str, Any]]:
        return service.storage.events(job_id)

    return app


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
