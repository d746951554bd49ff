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
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rainbridge.errors import RainbridgeError
from rainbridge.node import metering
from rainbridge.node.api_guard import MAX_BODY, MAX_DEPTH, RequestGuard, error_response, json_depth
from rainbridge.node.api_services import add_service_routes
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow
from rainbridge.node.users import require

__all__ = ["MAX_BODY", "MAX_DEPTH", "create_app", "error_response", "json_depth"]

log = logging.getLogger("rainbridge.node.api")

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


#: the largest request body the API reads, in bytes (``create_app(max_body=...)``)
class PredictIn(BaseModel):
    """One applicant to score online."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256, description="the applicant's ID")
    features: dict[str, float] | None = Field(
        default=None,
        description="this node's features of the applicant (default: its row in the dataset)",
    )


class ModelImportIn(BaseModel):
    """A model part exported by ``GET /v1/models/{id}/export``, to register here."""

    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    dataset: str | None = Field(default=None, description="this node's dataset for lookups")


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
    """A file to register in place (CSV or Parquet, by extension), with its catalogue entry."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    path: str = Field(max_length=4096, description="a path on the node's machine")
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


class UserIn(BaseModel):
    """A new API user; the answer carries its token, shown only once."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    role: Literal["admin", "owner", "analyst", "auditor"]


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


class JobIn(BaseModel):
    """A job to propose to its parties (the job file's content, as JSON)."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]


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
    async def me(user: UserRow = Depends(auth)) -> dict[str, Any]:
        """Who the token belongs to, and its role."""
        return user.to_dict()

    @app.get("/v1/node", tags=["node"])
    async def node(user: UserRow = Depends(may("node.read"))) -> dict[str, Any]:
        """This node's name, certificate fingerprint, data-plane address and version."""
        return service.info()

    @app.get("/v1/users", tags=["users"])
    async def users(user: UserRow = Depends(may("users.read"))) -> list[dict[str, Any]]:
        """The node's API users and their roles."""
        return [u.to_dict() for u in service.users.list()]

    @app.post("/v1/users", status_code=201, tags=["users"])
    async def add_user(body: UserIn, user: UserRow = Depends(may("users.write"))) -> dict[str, Any]:
        """Create a user; the answer carries its token, which is shown only this once."""
        row, tok = service.users.add(body.name, body.role)
        service.storage.log("user_added", {"user": row.name, "role": row.role}, actor=actor(user))
        return {**row.to_dict(), "token": tok}

    @app.post("/v1/users/{name}/disable", tags=["users"])
    async def disable_user(
        name: str, user: UserRow = Depends(may("users.write"))
    ) -> dict[str, Any]:
        """Disable a user: its token stops working at once."""
        row = service.users.disable(name)
        service.storage.log("user_disabled", {"user": name}, actor=actor(user))
        return row.to_dict()

    @app.get("/v1/peers", tags=["peers"])
    async def peers(user: UserRow = Depends(may("peers.read"))) -> list[dict[str, Any]]:
        """The pinned peers."""
        return [p.to_dict() for p in service.storage.peers()]

    @app.get("/v1/peers/{name}/ping", tags=["peers"])
    async def ping(name: str, user: UserRow = Depends(may("peers.read"))) -> dict[str, Any]:
        """Whether a pinned peer answers over the data plane, and how fast (a fresh mutual
        TLS connection and one exchange)."""
        import time as _time

        service.storage.peer(name)  # 404 for an unknown peer
        t0 = _time.perf_counter()
        try:
            reply = await service.dataplane.request(name, {"type": "ping"})
            online = reply.get("ok") is True
            reason = None if online else str(reply.get("reason"))[:200]
        except RainbridgeError as exc:
            online, reason = False, str(exc)[:200]
        ms = round((_time.perf_counter() - t0) * 1000, 1)
        return {"peer": name, "online": online, "milliseconds": ms, "reason": reason}

    @app.post("/v1/peers", status_code=201, tags=["peers"])
    async def add_peer(body: PeerIn, user: UserRow = Depends(may("peers.write"))) -> dict[str, Any]:
        """Pin a peer; its certificate must have the given fingerprint."""
        return await service.peers.add_peer(
            body.name, body.url, body.fingerprint, body.cert_pem, actor=actor(user)
        )

    @app.post("/v1/peers/{name}/revoke", tags=["peers"])
    async def revoke_peer(name: str, user: UserRow = Depends(may("peers.write"))) -> dict[str, Any]:
        """Unpin a peer: its connections are refused and its running jobs stopped."""
        return await service.peers.revoke_peer(name, actor=actor(user))

    @app.get("/v1/datasets", tags=["datasets"])
    async def datasets(
        user: UserRow = Depends(may("datasets.read")),
    ) -> list[dict[str, Any]]:
        """The registered datasets, with schema, row count and catalogue entry."""
        return [d.to_dict() for d in service.storage.datasets()]

    @app.post("/v1/datasets", status_code=201, tags=["datasets"])
    async def add_dataset(
        body: DatasetIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Register a file in place (never copied): its schema and row count are recorded."""
        return service.owners.add_dataset(
            body.name,
            body.path,
            body.id_column,
            owner=body.owner,
            sensitivity=body.sensitivity,
            description=body.description,
            encoding=body.encoding,
            column_types=body.column_types,
            actor=actor(user),
        )

    @app.post("/v1/datasets/{name}/publish", tags=["datasets"])
    async def publish(
        name: str, body: PublishIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Choose what peers see of a dataset in the catalogue (安全发布)."""
        return service.owners.publish_dataset(
            name,
            body.columns,
            description=body.description,
            publish_rows=body.publish_rows,
            published=body.published,
            actor=actor(user),
        )

    @app.post("/v1/datasets/{name}/policy", tags=["datasets"])
    async def policy(
        name: str, body: PolicyIn, user: UserRow = Depends(may("datasets.write"))
    ) -> dict[str, Any]:
        """Set the owner's k-anonymity threshold, differential-privacy budget and column
        policy."""
        return service.owners.set_dataset_policy(
            name,
            min_group_size=body.min_group_size,
            dp_budget=body.dp_budget,
            columns=body.columns,
            column_updates=body.column_updates,
            actor=actor(user),
        )

    @app.get("/v1/models", tags=["models"])
    async def models(user: UserRow = Depends(may("models.read"))) -> list[dict[str, Any]]:
        """This node's parts of trained models."""
        return service.models.models()

    @app.get("/v1/models/{model_id}", tags=["models"])
    async def model(model_id: str, user: UserRow = Depends(may("models.read"))) -> dict[str, Any]:
        """One model: metadata and this node's part (its features, standardisation, weights)."""
        return service.models.model(model_id)

    @app.get("/v1/models/{model_id}/export", tags=["models"])
    async def export_model(
        model_id: str, user: UserRow = Depends(may("models.read"))
    ) -> dict[str, Any]:
        """This node's part of a model with its registration (to import on another node)."""
        return service.models.export_model(model_id)

    @app.post("/v1/models/import", tags=["models"], status_code=201)
    async def import_model(
        body: ModelImportIn, user: UserRow = Depends(may("models.write"))
    ) -> dict[str, Any]:
        """Register an exported model part (the next version of its name)."""
        return service.models.import_model(body.model, body.dataset, actor(user))

    @app.post("/v1/models/{model_id}/predict", tags=["models"])
    async def predict(
        model_id: str, body: PredictIn, user: UserRow = Depends(may("models.predict"))
    ) -> dict[str, Any]:
        """Score one applicant online (at the model's label party)."""
        return await service.models.predict_online(model_id, body.key, body.features, actor(user))

    add_service_routes(app, service, may, actor)

    @app.get("/v1/catalogue", tags=["catalogue"])
    async def catalogue(
        user: UserRow = Depends(may("catalogue.read")),
    ) -> list[dict[str, Any]]:
        """This node's published catalogue, as peers see it."""
        return service.owners.catalogue()

    @app.get("/v1/catalogue/{peer}", tags=["catalogue"])
    async def peer_catalogue(
        peer: str, user: UserRow = Depends(may("catalogue.read"))
    ) -> list[dict[str, Any]]:
        """A peer's published catalogue (metadata only), fetched over the data plane."""
        return await service.owners.peer_catalogue(peer)

    @app.get("/v1/grants", tags=["grants"])
    async def grants(
        user: UserRow = Depends(may("grants.read")),
        dataset: str | None = None,
        peer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Grants of this node's datasets, with their usage."""
        return [g.to_dict() for g in service.owners.grants(dataset, peer)]

    @app.post("/v1/grants", status_code=201, tags=["grants"])
    async def add_grant(
        body: GrantIn, user: UserRow = Depends(may("grants.write"))
    ) -> dict[str, Any]:
        """Let a peer use a dataset: columns, components, receivers, quota, expiry."""
        return service.owners.add_grant(**body.model_dump(), actor=actor(user))

    @app.post("/v1/grants/{grant_id}/revoke", tags=["grants"])
    async def revoke_grant(
        grant_id: str, user: UserRow = Depends(may("grants.write"))
    ) -> dict[str, Any]:
        """Revoke a grant: new jobs are refused and running ones under it stopped."""
        return await service.owners.revoke_grant(grant_id, actor=actor(user))

    @app.get("/v1/jobs", tags=["jobs"])
    async def jobs(
        user: UserRow = Depends(may("jobs.read")),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Recent jobs at this node, newest first."""
        return service.storage.job_dicts(limit=max(1, min(limit, 1000)))

    @app.post("/v1/jobs", status_code=201, tags=["jobs"])
    async def submit(body: JobIn, user: UserRow = Depends(may("jobs.submit"))) -> dict[str, Any]:
        """Validate a job, propose it to every party, and start it once all accept."""
        return await service.jobs.submit(body.spec, actor=actor(user))

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def job(job_id: str, user: UserRow = Depends(may("jobs.read"))) -> dict[str, Any]:
        """A job's status, progress per component, every party's decision, any error, and
        its spec (the console draws the components' graph from it)."""
        return {**service.storage.job_dict(job_id), "spec": service.storage.job(job_id).spec}

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"])
    async def result(job_id: str, user: UserRow = Depends(may("jobs.read"))) -> dict[str, Any]:
        """What the job produced at this node (outputs with paths and sizes, bytes moved)."""
        row = service.storage.job(job_id)
        return {"id": row.id, "status": row.status, "error": row.error, "result": row.result}

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
    async def cancel(job_id: str, user: UserRow = Depends(may("jobs.cancel"))) -> dict[str, Any]:
        """Stop a job here and tell the other parties; a finished job is left as it is."""
        return await service.jobs.cancel(job_id, actor=actor(user))

    @app.post("/v1/jobs/{job_id}/approve", tags=["jobs"])
    async def approve(job_id: str, user: UserRow = Depends(may("jobs.approve"))) -> dict[str, Any]:
        """Approve a job held under a grant in manual-approval mode."""
        return await service.jobs.approve(job_id, actor=actor(user))

    @app.post("/v1/jobs/{job_id}/decline", tags=["jobs"])
    async def decline(
        job_id: str, body: DeclineIn, user: UserRow = Depends(may("jobs.approve"))
    ) -> dict[str, Any]:
        """Refuse a job held for approval; the other parties are told."""
        return await service.jobs.decline(job_id, body.reason, actor=actor(user))

    @app.get("/v1/events", tags=["ledger"])
    async def events(
        user: UserRow = Depends(may("jobs.read")),
        job_id: str | None = None,
        since: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The node's ledger as events (peers pinned, datasets added, decisions, outcomes)."""
        return service.storage.events(job_id, limit=max(1, min(limit, 10_000)), since=since)

    @app.get("/v1/ledger", tags=["ledger"])
    async def ledger(
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

    @app.get("/v1/ledger/verify", tags=["ledger"])
    async def verify(user: UserRow = Depends(may("ledger.read"))) -> dict[str, Any]:
        """Check the whole ledger: chain, signatures, key hand-overs, job records, head."""
        return service.ledger.verify().to_dict()

    @app.get("/v1/metering", tags=["metering"])
    async def meter(
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

    @app.post("/v1/keys/rotate", tags=["node"])
    async def rotate(user: UserRow = Depends(may("keys.rotate"))) -> dict[str, Any]:
        """New TLS and ledger keys without a restart; pinned peers are told and re-pin."""
        return await service.peers.rotate_keys(actor=actor(user))

    @app.get("/v1/jobs/{job_id}/outputs/{component}/{output}", tags=["jobs"])
    async def job_output(
        job_id: str,
        component: str,
        output: str,
        user: UserRow = Depends(may("jobs.read")),
        limit: int = 10_000,
        offset: int = 0,
        format: Literal["json", "file"] = "json",
    ) -> Response:
        """An output this node received from a job: its rows as JSON (``limit`` rows from
        ``offset``, at most 100,000 a page; ``total`` says how many there are) or the file
        itself. Only outputs written here exist; others are 404."""
        row = service.storage.job(job_id)
        comps = (row.result or {}).get("components", {}) if isinstance(row.result, dict) else {}
        out = comps.get(component, {}).get("outputs", {}).get(output)
        if not isinstance(out, dict) or not Path(str(out.get("path"))).is_file():
            raise _ApiError("not_found", f"no output {component}.{output} of {job_id} here")
        path = Path(str(out["path"]))
        if format == "file":
            return Response(
                path.read_bytes(),
                media_type="application/octet-stream",
                headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
            )
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        start = max(0, offset)
        rows = table.slice(start, max(0, min(limit, 100_000))).to_pylist()
        return JSONResponse(
            jsonable(
                {
                    "rows": rows,
                    "offset": start,
                    "total": table.num_rows,
                    "columns": table.column_names,
                }
            )
        )

    @app.get("/v1/components", tags=["jobs"])
    async def components(user: UserRow = Depends(may("jobs.read"))) -> list[dict[str, Any]]:
        """Every registered component: summary, outputs and its parameters' JSON schema
        (what the console's job builder generates its forms from)."""
        from rainbridge.components import component_types, get_component

        return [get_component(t).describe() for t in component_types()]

    console = console_dir()
    if console is not None:
        # the web console's built assets; /v1 routes above take precedence
        app.mount("/", StaticFiles(directory=console, html=True), name="console")
    return app


def jsonable(x: Any) -> Any:
    """Rows as JSON can carry them (dates and decimals as text, NaN as null)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, str | int | float | bool) or x is None:
        return x
    return str(x)


def console_dir() -> Path | None:
    """Where the web console's built assets are (``RAINBRIDGE_CONSOLE_DIR`` or the
    repository's ``web/dist``), or None when it has not been built."""
    given = os.environ.get("RAINBRIDGE_CONSOLE_DIR")
    path = Path(given) if given else Path(__file__).resolve().parents[3] / "web" / "dist"
    return path if (path / "index.html").is_file() else None
