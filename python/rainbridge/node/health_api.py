"""Health and metrics of a node, for a load balancer, an orchestrator and Prometheus.

* ``GET /healthz`` (no token): 200 ``{"status": "ok"}`` while the process serves requests
  (liveness).
* ``GET /readyz`` (no token): 200 ``{"status": "ready", "checks": {...}}`` when the database
  answers a trivial query within :data:`READY_TIMEOUT` seconds (run in a storage thread, off
  the event loop), the data plane is listening, and the ledger's directory (where its signed
  head is written) takes a new file; otherwise 503 ``{"status": "not_ready", "checks": ...}``
  with each check's outcome in a word: never an error text, a path or a URL.
* ``GET /metrics``: the Prometheus text format: the gauges :class:`NodeCollector` computes
  at scrape time from storage (in a storage thread) and the node's live counters and
  histograms (:mod:`rainbridge.node.metrics`), in a registry of its own per app. It carries
  a user's bearer token like ``/v1`` and needs the permission :data:`METRICS_PERMISSION`
  (admin or auditor); plain HTTP from another machine is refused as on ``/v1``.

With ``metrics_port`` set, :func:`metrics_app` serves the same text without a token on
``metrics_host:metrics_port``, for a scraper on a private network: :func:`check_metrics_host`
refuses a public address and warns about one that listens everywhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from rainbridge.components import component_types
from rainbridge.errors import ConfigError, RainbridgeError
from rainbridge.node.api_guard import error_response, in_clear_from_afar
from rainbridge.node.runner import FINAL
from rainbridge.node.service import NodeService
from rainbridge.node.storage import DatasetRow, GrantRow, JobRow, LedgerRow, PeerRow, utc
from rainbridge.node.users import InvalidTokenError, require

log = logging.getLogger("rainbridge.node.health")

#: seconds the database has to answer a readiness probe
READY_TIMEOUT = 2.0
#: who may scrape ``/metrics``: the roles that may read the ledger (admin, auditor)
METRICS_PERMISSION = "ledger.read"
#: the label of a job's component whose type is not a registered one (a peer's typo)
OTHER = "other"


def _ping_database(service: NodeService) -> None:
    # a trivial read of a real table: the file or server answers and the schema is there
    with service.storage.engine.connect() as conn:
        conn.execute(select(JobRow.id).limit(1)).all()


def _probe_ledger_directory(service: NodeService) -> None:
    # the signed head is replaced by a new file in this directory: try making one (unnamed
    # where the OS allows; removed on close), without appending to the ledger
    with tempfile.TemporaryFile(dir=service.ledger.directory, prefix=".ready-"):
        pass


async def readiness(service: NodeService) -> dict[str, str]:
    """Each readiness check's outcome: ``ok`` or a word saying what is wrong."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(service.background.db(_ping_database, service), READY_TIMEOUT)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = "timeout"
    except Exception as exc:  # the driver's text may carry the URL: logged, never answered
        log.warning("readiness: the database failed: %s", type(exc).__name__)
        checks["database"] = "failed"
    server = service.dataplane.listener.server
    checks["data_plane"] = "ok" if server is not None and server.is_serving() else "not_listening"
    try:
        await asyncio.wait_for(
            service.background.db(_probe_ledger_directory, service), READY_TIMEOUT
        )
        checks["ledger"] = "ok"
    except TimeoutError:
        checks["ledger"] = "timeout"
    except Exception as exc:
        log.warning("readiness: the ledger's directory is not writable: %s", type(exc).__name__)
        checks["ledger"] = "not_writable"
    return checks


class NodeCollector(Collector):
    """The node's metrics, read from its storage when scraped (in the scraping thread).

    Labels stay few-valued: job status, component type (an unregistered one is
    :data:`OTHER`), grant state, and the node's name, version and crypto suite; never a
    job's ID, a dataset's name or a path.
    """

    def __init__(self, service: NodeService) -> None:
        self.service = service

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read storage

    def collect(self) -> Iterable[Metric]:
        service = self.service
        known = set(component_types())
        now = dt.datetime.now(dt.UTC)
        jobs: Counter[tuple[str, str]] = Counter()
        durations: dict[str, list[float]] = {}
        grants = Counter({"active": 0, "revoked": 0, "expired": 0})
        with service.storage.session() as s:
            for status, spec, created, updated in s.execute(
                select(JobRow.status, JobRow.spec, JobRow.created_at, JobRow.updated_at)
            ):
                types = {
                    str(c.get("type")) if c.get("type") in known else OTHER
                    for c in (spec or {}).get("components", [])
                    if isinstance(c, dict)
                }
                for t in types:
                    jobs[(status, t)] += 1
                if status in FINAL:
                    took = (utc(updated) - utc(created)).total_seconds()
                    durations.setdefault(status, []).append(max(took, 0.0))
            for revoked, expires in s.execute(select(GrantRow.revoked_at, GrantRow.expires_at)):
                if revoked is not None:
                    grants["revoked"] += 1
                elif expires is not None and utc(expires) <= now:
                    grants["expired"] += 1
                else:
                    grants["active"] += 1
            counts = {
                name: int(s.scalar(select(func.count()).select_from(row)) or 0)
                for name, row in (
                    ("ledger", LedgerRow),
                    ("peers", PeerRow),
                    ("datasets", DatasetRow),
                )
            }

        g = GaugeMetricFamily(
            "rainbridge_jobs",
            "Jobs at this node by status and component type (a job counts once under each "
            "component type it holds)",
            labels=["status", "component_type"],
        )
        for (status, t), n in sorted(jobs.items()):
            g.add_metric([status, t], n)
        yield g
        summary = SummaryMetricFamily(
            "rainbridge_job_duration_seconds",
            "Finished jobs' time from their record's creation to its last update, by status",
            labels=["status"],
        )
        for status, times in sorted(durations.items()):
            summary.add_metric([status], count_value=len(times), sum_value=sum(times))
        yield summary
        yield GaugeMetricFamily(
            "rainbridge_ledger_entries", "Entries in the signed ledger", value=counts["ledger"]
        )
        yield GaugeMetricFamily(
            "rainbridge_peers_pinned", "Peers whose certificates are pinned", value=counts["peers"]
        )
        yield GaugeMetricFamily(
            "rainbridge_workers_running",
            "Job worker processes running",
            value=len(service.runner.running()),
        )
        yield GaugeMetricFamily(
            "rainbridge_datasets", "Datasets registered", value=counts["datasets"]
        )
        gs = GaugeMetricFamily(
            "rainbridge_grants", "Grants by state (active, revoked, expired)", labels=["state"]
        )
        for state, n in sorted(grants.items()):
            gs.add_metric([state], n)
        yield gs
        root = service.pir.server.root
        pir = sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else 0
        yield GaugeMetricFamily("rainbridge_pir_services", "PIR services served", value=pir)
        info = service.info()
        i = InfoMetricFamily("rainbridge", "This node: name, version, crypto suite")
        i.add_metric(
            [],
            {
                "name": info["name"],
                "version": info["version"],
                "crypto_suite": info["crypto_suite"],
            },
        )
        yield i


class LiveCollector(Collector):
    """The node's live counters and histograms (:class:`~rainbridge.node.metrics.NodeMetrics`)."""

    def __init__(self, service: NodeService) -> None:
        self.service = service

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.service.metrics.collect()


def metrics_registry(service: NodeService) -> CollectorRegistry:
    """A registry of ``service``'s metrics: the storage gauges and the live ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(service))
    registry.register(LiveCollector(service))
    return registry


def check_metrics_host(host: str) -> str | None:
    """Refuse a public address for the token-less metrics port; return a warning for one
    that is not clearly private (all interfaces, a host name), else None.

    Raises
    ------
    ConfigError
        ``host`` is a public (globally routable) IP address.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host == "localhost":
            return None
        return (
            f"metrics_host {host!r} is a name: /metrics on it answers without a token; make "
            f"sure it resolves to a private address that no other party can reach"
        )
    if ip.is_unspecified:
        return (
            f"metrics_host {host!r} listens on every interface: /metrics on it answers "
            f"without a token; allow only the scraper to reach metrics_port (firewall, "
            f"network policy), never another party"
        )
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return None
    raise ConfigError(
        f"metrics_host {host!r} is a public address: the metrics port answers without a "
        f"token, so it must listen on loopback or a private network (set metrics_host, or "
        f"metrics_port 0 and scrape the API's /metrics with an auditor's token)"
    )


def metrics_app(service: NodeService) -> FastAPI:
    """The token-less metrics listener: ``GET /metrics`` only (see the module docstring)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    registry = metrics_registry(service)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await service.background.db(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/{path:path}")
    async def elsewhere(path: str) -> PlainTextResponse:
        return PlainTextResponse("only /metrics here\n", status_code=404)

    return app


def router(service: NodeService) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics`` of ``service``."""
    r = APIRouter(tags=["health"])
    registry = metrics_registry(service)

    @r.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @r.get("/readyz", responses={503: {"description": "a check failed"}})
    async def readyz() -> JSONResponse:
        """Readiness: the database answers, the data plane listens, the ledger is writable."""
        checks = await readiness(service)
        ready = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @r.get("/metrics", responses={401: {"description": "no valid token"}})
    async def metrics(request: Request, authorization: str = Header(default="")) -> Response:
        """The node's metrics, Prometheus text format (an admin's or an auditor's token)."""
        # not under /v1, so the request guard has not looked: the same checks, here
        if in_clear_from_afar(request.scope):
            return error_response(
                403, "tls_required", "the REST API takes tokens over HTTPS only off loopback"
            )
        scheme, _, given = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer" or not given.strip():
                raise InvalidTokenError("missing or wrong API token")
            user = await service.background.db(service.users.authenticate, given.strip())
        except RainbridgeError:
            return error_response(401, "invalid_token", "missing or wrong API token")
        require(user, METRICS_PERMISSION)  # 403 unauthorized, by the app's handler
        body = await service.background.db(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return r
