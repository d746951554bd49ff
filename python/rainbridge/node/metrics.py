"""The node's live metrics: counters and histograms updated as things happen.

One :class:`NodeMetrics` per node (built by :class:`~rainbridge.node.service.NodeService`,
handed to the parts that count), in a registry of its own: two nodes in one process never
mix their numbers. ``/metrics`` (:mod:`rainbridge.node.health_api`) serves these beside
the gauges read from storage at scrape time.

Updating a metric is a few arithmetic operations under prometheus-client's own short lock:
no storage call, no await, so the hot paths (the data plane, PIR answers, every REST
request) can count freely. Labels stay few-valued on purpose: component types from the
registry (any other is :data:`OTHER`), outcomes and reason classes from fixed lists, peers
from the pinned ones, REST routes as templates; never a job's ID, a dataset's name, a
path or a value of the data.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rainbridge.components import component_types

#: the label of a component type that is not a registered one (a peer's typo)
OTHER = "other"
#: the route label of a request no route matched (the console's files, a 404, a refusal
#: before routing)
UNROUTED = "unrouted"
#: how many finished jobs are remembered, so that one is counted once however many paths
#: report its end (its worker's watcher, a cancel, an abort)
_REMEMBERED = 4096

_JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_REST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def component_labels(spec: Any) -> list[str]:
    """The component types of a job spec (dict) as label values, each once, sorted."""
    known = set(component_types())
    comps = spec.get("components", []) if isinstance(spec, dict) else []
    return sorted(
        {
            str(c.get("type")) if c.get("type") in known else OTHER
            for c in comps
            if isinstance(c, dict)
        }
    ) or [OTHER]


class NodeMetrics:
    """The live metrics of one node (see the module docstring and NODE.md)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "rainbridge_jobs_finished",
            "Jobs that reached a final status at this node since it started, by component "
            "type (a job counts once under each type it holds) and status",
            ["component_type", "status"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "rainbridge_job_run_seconds",
            "Time a job's worker ran here, from its start to its exit, by component type and "
            "final status",
            ["component_type", "status"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.sent = Counter(
            "rainbridge_dataplane_sent_bytes",
            "Frame bytes sent to each peer over the data plane: job sessions (counted when "
            "the job's worker exits) and control requests",
            ["peer", "kind"],
            registry=r,
        )
        self.received = Counter(
            "rainbridge_dataplane_received_bytes",
            "Frame bytes received from each peer over the data plane (as sent_bytes)",
            ["peer", "kind"],
            registry=r,
        )
        self.pir_queries = Counter(
            "rainbridge_pir_queries",
            "PIR requests served to peers, by request (query, page) and outcome",
            ["request", "outcome"],
            registry=r,
        )
        self.pir_seconds = Histogram(
            "rainbridge_pir_query_seconds",
            "Time to answer (or refuse) a peer's PIR request",
            ["request", "outcome"],
            buckets=_QUERY_BUCKETS,
            registry=r,
        )
        self.mlq_requests = Counter(
            "rainbridge_mlq_requests",
            "Multi-lender requests served, by kind (a member's message, or count: a count "
            "asked of this lender) and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.mlq_seconds = Histogram(
            "rainbridge_mlq_request_seconds",
            "Time to serve a multi-lender request, by kind and outcome",
            ["kind", "outcome"],
            buckets=_QUERY_BUCKETS,
            registry=r,
        )
        self.grant_refusals = Counter(
            "rainbridge_grant_refusals",
            "Uses of this node's data refused (jobs, PIR queries), by reason class",
            ["reason"],
            registry=r,
        )
        self.ledger_appends = Counter(
            "rainbridge_ledger_appends",
            "Entries appended to the signed ledger since the node started, by kind",
            ["kind"],
            registry=r,
        )
        self.rest_seconds = Histogram(
            "rainbridge_http_request_seconds",
            "REST API requests by method, route template and status, and their latency",
            ["method", "route", "status"],
            buckets=_REST_BUCKETS,
            registry=r,
        )
        self._ended: OrderedDict[str, None] = OrderedDict()

    def job_finished(
        self, job_id: str, spec: Any, status: str, seconds: float | None = None
    ) -> bool:
        """Count a job that reached ``status`` (once per job: a repeat is ignored); with
        ``seconds``, the time its worker ran. Returns whether it was counted now."""
        if job_id in self._ended:
            return False
        self._ended[job_id] = None
        if len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)
        for t in component_labels(spec):
            self.jobs_finished.labels(t, status).inc()
            if seconds is not None:
                self.job_seconds.labels(t, status).observe(max(seconds, 0.0))
        return True

    def traffic(self, peer: str, kind: str, sent: int, received: int) -> None:
        """Add one exchange's frame bytes with ``peer`` (``kind``: ``job`` or ``control``)."""
        if sent:
            self.sent.labels(peer, kind).inc(sent)
        if received:
            self.received.labels(peer, kind).inc(received)

    def refused(self, reason: str) -> None:
        """Count a refused use of this node's data (``reason``: a class, never its text)."""
        self.grant_refusals.labels(reason).inc()

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


class RequestMetrics:
    """ASGI middleware: each HTTP request's latency by method, route template and status.

    The route is read after the app has routed the request (FastAPI leaves the matched
    route in the scope), so ``/v1/jobs/{job_id}`` is one label however many jobs there are.
    """

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # an exception that escapes every handler

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            method = scope.get("method", "")
            self.metrics.rest_seconds.labels(
                method if method in _METHODS else OTHER,
                route if isinstance(route, str) else UNROUTED,
                str(status),
            ).observe(time.perf_counter() - t0)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
