"""The node's REST API (FastAPI), for users, tools and the console.

Every ``/v1`` request carries the node's bearer token (``DIR/api.token``, written by
``rainbridge node init``). Errors are JSON ``{"error": {"code", "message"}}``: a
:class:`~rainbridge.errors.RainbridgeError` keeps its code and its message (written for
users: it names the input at fault and never echoes secrets) with the HTTP status of
:data:`STATUS`; an unexpected failure is logged here with its traceback and answered with a
generic message. The OpenAPI description is at ``/docs``.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rainbridge.errors import RainbridgeError
from rainbridge.node.service import NodeService

log = logging.getLogger("rainbridge.node.api")

#: HTTP status of each error code; an unlisted code is a 400 (the request cannot be served)
STATUS = {
    "config": 400,
    "job_spec": 400,
    "data": 400,
    "parameter_mismatch": 400,
    "invalid_request": 422,
    "invalid_token": 401,
    "unauthorized": 403,
    "not_found": 404,
    "job_refused": 409,
    "authentication": 502,
    "channel": 502,
    "peer_disconnected": 502,
    "protocol_violation": 502,
    "invalid_element": 502,
    "timeout": 504,
    "crypto": 500,
    "internal": 500,
}


class PeerIn(BaseModel):
    """A peer to pin: its data-plane address and certificate fingerprint."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    url: str = Field(max_length=300, description="HOST:PORT of the peer's data plane")
    fingerprint: str = Field(max_length=200, description="SHA-256 of its certificate (hex)")
    cert_pem: str | None = Field(
        default=None, max_length=20_000, description="the certificate, if not fetched"
    )


class DatasetIn(BaseModel):
    """A file to register in place (CSV or Parquet, by extension)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    path: str = Field(max_length=4096, description="a path on the node's machine")
    id_column: str | None = Field(default=None, max_length=255)


class JobIn(BaseModel):
    """A job to propose to its parties (the job file's content, as JSON)."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message}}, headers=headers
    )


class _ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def create_app(service: NodeService, token: str) -> FastAPI:
    """The REST API of ``service``, guarded by ``token``."""
    app = FastAPI(
        title=f"Rainbridge node {service.name}",
        version="1",
        description="Peers, datasets and jobs of one Rainbridge node. "
        "Send `Authorization: Bearer <token>` (the token is in the node's api.token).",
    )
    expected = token.encode()

    def auth(authorization: str = Header(default="")) -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise _ApiError("invalid_token", "missing or wrong API token")

    @app.exception_handler(RainbridgeError)
    async def on_error(request: Request, exc: RainbridgeError) -> JSONResponse:
        log.info("%s %s: %s: %s", request.method, request.url.path, exc.code, exc)
        return error_response(STATUS.get(exc.code, 400), exc.code, str(exc))

    @app.exception_handler(_ApiError)
    async def on_api_error(_: Request, exc: _ApiError) -> JSONResponse:
        return error_response(STATUS[exc.code], exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()[:5]
        ]
        return error_response(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error (see the node's log)")

    guarded = [Depends(auth)]

    @app.get("/v1/node", dependencies=guarded, tags=["node"])
    async def node() -> dict[str, Any]:
        """This node's name, certificate fingerprint, data-plane address and version."""
        return service.info()

    @app.get("/v1/peers", dependencies=guarded, tags=["peers"])
    async def peers() -> list[dict[str, Any]]:
        """The pinned peers."""
        return [p.to_dict() for p in service.storage.peers()]

    @app.post("/v1/peers", dependencies=guarded, status_code=201, tags=["peers"])
    async def add_peer(body: PeerIn) -> dict[str, Any]:
        """Pin a peer; its certificate must have the given fingerprint."""
        return await service.add_peer(body.name, body.url, body.fingerprint, body.cert_pem)

    @app.get("/v1/datasets", dependencies=guarded, tags=["datasets"])
    async def datasets() -> list[dict[str, Any]]:
        """The registered datasets, with schema and row count."""
        return [d.to_dict() for d in service.storage.datasets()]

    @app.post("/v1/datasets", dependencies=guarded, status_code=201, tags=["datasets"])
    async def add_dataset(body: DatasetIn) -> dict[str, Any]:
        """Register a file in place (never copied): its schema and row count are recorded."""
        return service.add_dataset(body.name, body.path, body.id_column)

    @app.get("/v1/jobs", dependencies=guarded, tags=["jobs"])
    async def jobs(limit: int = 100) -> list[dict[str, Any]]:
        """Recent jobs at this node, newest first."""
        return service.storage.job_dicts(limit=max(1, min(limit, 1000)))

    @app.post("/v1/jobs", dependencies=guarded, status_code=201, tags=["jobs"])
    async def submit(body: JobIn) -> dict[str, Any]:
        """Validate a job, propose it to every party, and start it once all accept."""
        return await service.submit(body.spec)

    @app.get("/v1/jobs/{job_id}", dependencies=guarded, tags=["jobs"])
    async def job(job_id: str) -> dict[str, Any]:
        """A job's status, progress per component, every party's decision and any error."""
        return service.storage.job_dict(job_id)

    @app.get("/v1/jobs/{job_id}/result", dependencies=guarded, tags=["jobs"])
    async def result(job_id: str) -> dict[str, Any]:
        """What the job produced at this node (outputs with paths and sizes, bytes moved)."""
        row = service.storage.job(job_id)
        return {"id": row.id, "status": row.status, "error": row.error, "result": row.result}

    @app.post("/v1/jobs/{job_id}/cancel", dependencies=guarded, tags=["jobs"])
    async def cancel(job_id: str) -> dict[str, Any]:
        """Stop a job here and tell the other parties; a finished job is left as it is."""
        return await service.cancel(job_id)

    @app.get("/v1/events", dependencies=guarded, tags=["node"])
    async def events(job_id: str | None = None) -> list[dict[str, Any]]:
        """The node's event log (peers pinned, datasets added, decisions, job outcomes)."""
        return service.storage.events(job_id)

    return app
