"""The node's REST API (FastAPI), for users, tools and the console.

Every ``/v1`` request carries a user's bearer token (the first admin's is ``DIR/api.token``,
written by ``rainbridge node init``; ``rainbridge user add`` makes more). Each endpoint is
allowed to some roles only (:data:`rainbridge.node.users.PERMISSIONS`): a user whose role
may not is answered 403 ``unauthorized``. Every write is attributed to its user in the
ledger. Errors are JSON ``{"error": {"code", "message"}}``: a
:class:`~rainbridge.errors.RainbridgeError` keeps its code and its message (written for
users: it names the input at fault and never echoes secrets) with the HTTP status of
:data:`STATUS`; an unexpected failure is logged here with its traceback and answered with a
generic message. The OpenAPI description is at ``/docs``.

A ``/v1`` request's token is checked before a byte of its body is read (a request without a
valid one is answered 401 unread); a body is read only up to ``max_body`` bytes (default
:data:`MAX_BODY`; a larger one is answered 413 ``body_too_large``), and a body that is not
JSON, or nests more than :data:`MAX_DEPTH` levels, is answered 422 ``invalid_request``.

This module holds the app: the request guard, the error handlers, the one dependency that
checks a user's permission (``may(action)``), and the built console at ``/``. The routes
live beside the services they expose, each module's ``router(service, may, actor)``:
:mod:`~rainbridge.node.jobs_api` (jobs, outputs, components),
:mod:`~rainbridge.node.owners_api` (datasets, catalogue, grants),
:mod:`~rainbridge.node.models_api` (the model registry, online scoring),
:mod:`~rainbridge.node.peers_api` (this node, its keys, its peers),
:mod:`~rainbridge.node.governance_api` (users, ledger, metering) and
:mod:`~rainbridge.node.api_services` (PIR, multi-lender, interconnection). Endpoints that
only read or write storage are plain functions, run in FastAPI's thread pool, off the
event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from rainbridge.errors import RainbridgeError
from rainbridge.node import governance_api, health_api, jobs_api, models_api, owners_api, peers_api
from rainbridge.node.api_guard import MAX_BODY, MAX_DEPTH, RequestGuard, error_response, json_depth
from rainbridge.node.api_services import add_service_routes
from rainbridge.node.metrics import RequestMetrics
from rainbridge.node.owners_api import DatasetIn  # for the fuzzing of REST bodies
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow
from rainbridge.node.users import require

__all__ = ["MAX_BODY", "MAX_DEPTH", "DatasetIn", "create_app", "error_response", "json_depth"]

log = logging.getLogger("rainbridge.node.api")

#: ``may(action)``: the dependency that admits a request whose user's role may do ``action``
May = Callable[[str], Callable[..., UserRow]]
#: the ledger's name for a request's user (``user:NAME``)
Actor = Callable[[UserRow], str]

#: HTTP status of each error code; an unlisted code is a 400 (the request cannot be served)
STATUS = {
    "config": 400,
    "job_spec": 400,
    "data": 400,
    "parameter_mismatch": 400,
    "invalid_request": 422,
    "body_too_large": 413,
    "invalid_token": 401,
    "unauthorized": 403,
    "not_found": 404,
    "job_refused": 409,
    "rate_limited": 429,
    "authentication": 502,
    "channel": 502,
    "peer_disconnected": 502,
    "protocol_violation": 502,
    "invalid_element": 502,
    "timeout": 504,
    "crypto": 500,
    "internal": 500,
}


class _ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def create_app(
    service: NodeService, token: str | None = None, *, max_body: int | None = None
) -> FastAPI:
    """The REST API of ``service``; ``token``, if given, is (re)made the admin's; request
    bodies over ``max_body`` bytes (default: the node's ``api_max_body``) are refused
    unread."""
    max_body = service.config.api_max_body if max_body is None else max_body
    app = FastAPI(
        title=f"Rainbridge node {service.name}",
        version="1",
        description="Peers, datasets, grants, jobs, ledger and metering of one Rainbridge "
        "node. Send `Authorization: Bearer <token>` (a user's token; the first admin's is "
        "in the node's api.token).",
    )
    if token:
        service.users.ensure("admin", "admin", token)
    app.add_middleware(RequestGuard, authenticate=service.users.authenticate, max_body=max_body)
    # outermost: every request is timed, those the guard refuses too
    app.add_middleware(RequestMetrics, metrics=service.metrics)

    def auth(request: Request, authorization: str = Header(default="")) -> UserRow:
        checked = getattr(request.state, "user", None)  # by RequestGuard, before the body
        if isinstance(checked, UserRow):
            return checked
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise _ApiError("invalid_token", "missing or wrong API token")
        try:
            return service.users.authenticate(given.strip())
        except RainbridgeError:
            raise _ApiError("invalid_token", "missing or wrong API token") from None

    def may(action: str) -> Callable[..., UserRow]:
        """The dependency that admits a user whose role may do ``action``: the one check
        of :data:`rainbridge.node.users.PERMISSIONS` (403 ``unauthorized`` otherwise)."""

        def check(user: UserRow = Depends(auth)) -> UserRow:
            require(user, action)
            return user

        return check

    def actor(user: UserRow) -> str:
        return f"user:{user.name}"

    @app.exception_handler(RainbridgeError)
    async def on_error(request: Request, exc: RainbridgeError) -> JSONResponse:
        # log_text: an error naming personal data (an ID scored online) logs without it
        shown = getattr(exc, "log_text", None) or exc
        log.info("%s %s: %s: %s", request.method, request.url.path, exc.code, shown)
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
        if exc.status_code == 400:  # FastAPI could not parse the body
            return error_response(422, "invalid_request", "the body is not valid JSON")
        return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error (see the node's log)")

    @app.get("/v1/me", tags=["users"])
    def me(user: UserRow = Depends(auth)) -> dict[str, Any]:
        """Who the token belongs to, and its role."""
        return user.to_dict()

    for part in (governance_api, peers_api, owners_api, models_api, jobs_api):
        app.include_router(part.router(service, may, actor))
    add_service_routes(app, service, may, actor)
    app.include_router(health_api.router(service))  # /healthz, /readyz, /metrics

    console = console_dir()
    if console is not None:
        # the web console's built assets; /v1 routes above take precedence
        app.mount("/", StaticFiles(directory=console, html=True), name="console")
    else:
        # an installation built without the console (an sdist built where web/dist was
        # absent) still serves the API; say so once, so a 404 at / is not a mystery
        log.warning(
            "the web console is not installed (no rainbridge/console in the package, no "
            "web/dist in a source tree, RAINBRIDGE_CONSOLE_DIR unset): "
            "serving the REST API without it"
        )
    return app


def console_dir() -> Path | None:
    """Where the web console's built assets are, or None when it has not been built.

    ``RAINBRIDGE_CONSOLE_DIR`` when set (and only it); else the copy packaged in the wheel
    (``rainbridge/console``, put there by ``make dist``), so an installed node serves the
    console without Node.js; else the repository's ``web/dist`` (development, from a
    source tree).
    """
    given = os.environ.get("RAINBRIDGE_CONSOLE_DIR")
    if given:
        candidates = [Path(given)]
    else:
        package = Path(__file__).resolve().parents[1]
        candidates = [package / "console", package.parents[1] / "web" / "dist"]
    return next((p for p in candidates if (p / "index.html").is_file()), None)
