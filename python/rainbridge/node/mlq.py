"""The consortium multi-lender query at a node (:mod:`rainbridge.protocols.mlq`).

A member joins a service with its role: a *lender* names its dataset of applications (ID
and date columns) and gets a fresh secret key; the *merger* holds no data. ``build`` at the
merger runs the ring over the lenders' windows (the last ``window_days`` days up to the
build's date) and publishes the merged multiset; it tells each lender, which copies it
before its next count. ``count`` at a lender sends the blinded ID to every other lender in
turn and reads the count from the multiset, minus its own presence in its window *as frozen
at that build*.

One snapshot: when a lender masks its window for a build it freezes it (the window's
distinct IDs under ``DIR/mlq/<service>/windows/<build>.parquet``, and a digest that the
merger records with the build). Every count names its build; the asking lender and every
lender it asks check that their data for that build's window is still what they froze
(the check rereads a dataset only when its file changed). A lender whose window changed
says so, and the count is refused with the lender and the fix (rebuild), or, for a service
joined with ``on_change="rebuild"`` (the merger's setting decides whether it accepts), the
merger rebuilds the same window and the count is asked again on the new build.

Every request is accepted only from the member the role requires (``mlq_mask``,
``mlq_remask`` and ``mlq_new_build`` from the merger, ``mlq_eval``, ``mlq_sync``,
``mlq_status`` and ``mlq_rebuild`` from lenders), checked here before the request reaches
the merger's part (:mod:`rainbridge.node.mlq_merger`) or the lender's
(:mod:`rainbridge.node.mlq_lender`, its frozen windows in :mod:`rainbridge.node.mlq_windows`).
The REST routes are in :mod:`rainbridge.node.mlq_api`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from rainbridge.data import write_json_atomic
from rainbridge.errors import (
    AuthorizationError,
    ConfigError,
    DataError,
    NotFoundError,
    RainbridgeError,
)
from rainbridge.node.config import NodeConfig, check_name
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.limits import check_service_name
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.mlq_files import MlqFiles
from rainbridge.node.mlq_lender import MlqLender
from rainbridge.node.mlq_merger import MlqMerger
from rainbridge.node.mlq_windows import FrozenWindows
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import Storage
from rainbridge.protocols import mlq

#: what a lender's count does when a window changed since the build: refuse, or rebuild
ON_CHANGE = ("refuse", "rebuild")

#: the message types of the multi-lender count between its members
MESSAGES = (
    "mlq_mask",
    "mlq_remask",
    "mlq_new_build",
    "mlq_sync",
    "mlq_eval",
    "mlq_status",
    "mlq_rebuild",
)


class Mlq:
    """The multi-lender count (实时多头) at a node, as lender or merger: the services it
    joined, its :attr:`merger` part, its :attr:`lender` part and the lender's frozen
    :attr:`windows`.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; the services lie under ``DIR/mlq/``.
    storage : Storage
        Datasets, metering and ledger.
    dataplane : DataPlane
        How the other members are asked.
    router : MessageRouter
        Where the members' messages are registered.
    metrics : NodeMetrics, optional
        Where the requests served and their latency are counted.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        dataplane: DataPlane,
        router: MessageRouter,
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.name = config.name
        self.metrics = metrics or NodeMetrics()
        self.storage = storage
        self.files = MlqFiles(Path(config.path) / "mlq")
        self.windows = FrozenWindows(config.name, storage, self.files)
        self.merger = MlqMerger(storage, dataplane, self.files)
        self.lender = MlqLender(config, storage, dataplane, self.files, self.windows)
        self.mlq_build = self.merger.build
        for kind in MESSAGES:
            router.add(kind, self._on_message, owner="mlq")

    async def mlq_count(self, service: str, ident: str, actor: str = "node") -> dict[str, Any]:
        """A count asked of this lender (:meth:`MlqLender.count`), timed for the metrics."""
        t0 = time.perf_counter()
        outcome = "refused"
        try:
            reply = await self.lender.count(service, ident, actor)
            outcome = "answered"
            return reply
        finally:
            self._served("count", outcome, t0)

    def _served(self, kind: str, outcome: str, t0: float) -> None:
        self.metrics.mlq_requests.labels(kind, outcome).inc()
        self.metrics.mlq_seconds.labels(kind, outcome).observe(time.perf_counter() - t0)

    def mlq_join(
        self,
        *,
        name: str,
        lenders: list[str],
        merger: str,
        window_days: int = 30,
        dataset: str | None = None,
        date_column: str | None = None,
        rate_per_s: float = 50.0,
        on_change: str = "refuse",
        actor: str = "node",
    ) -> dict[str, Any]:
        """Join service ``name`` as a lender (with ``dataset``) or as its merger.

        ``on_change``: what a count does when a lender's window changed since the build it
        would read: ``refuse`` (the count names the lender; rebuild to go on) or ``rebuild``
        (a lender asks the merger to rebuild that window, then counts on the new build; the
        merger rebuilds on request only if it joined with ``rebuild`` too)."""
        check_service_name(name)
        for p in [*lenders, merger]:
            check_name(p)
        lenders = sorted(set(lenders))
        if len(lenders) < 2 or merger in lenders:
            raise ConfigError(
                "a multi-lender service needs two or more lenders and a merger "
                "that is not one of them"
            )
        if self.name not in [*lenders, merger]:
            raise ConfigError(f"this node ({self.name}) is neither a lender nor the merger")
        if not 1 <= window_days <= 3650 or rate_per_s <= 0:
            raise ConfigError("window_days must be 1..3650 and rate_per_s positive")
        if on_change not in ON_CHANGE:
            raise ConfigError(f"on_change {on_change!r}: one of {', '.join(ON_CHANGE)}")
        role = "merger" if self.name == merger else "lender"
        conf: dict[str, Any] = {
            "name": name,
            "lenders": lenders,
            "merger": merger,
            "window_days": window_days,
            "role": role,
            "rate_per_s": float(rate_per_s),
            "on_change": on_change,
        }
        folder = self.files.folder(name)
        if role == "lender":
            ref = self.storage.dataset_refs().get(dataset or "")
            if ref is None:
                raise NotFoundError(f"a lender names its dataset: no dataset {dataset!r} here")
            if not ref.id_column or not date_column or date_column not in ref.columns:
                raise DataError(
                    f"dataset {dataset!r} needs its ID column and a date column "
                    f"(got {date_column!r})"
                )
            conf.update(dataset=dataset, id_column=ref.id_column, date_column=date_column)
            folder.mkdir(parents=True, exist_ok=True)
            key_path = folder / "key"
            if not key_path.exists():
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(mlq.new_key())
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(conf, folder / "service.json")
        self.storage.log("mlq_joined", conf, actor=actor)
        return conf

    def mlq_services(self) -> list[dict[str, Any]]:
        """The multi-lender services this node is in, with their last build (if known)."""
        root = self.files.root
        out = []
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if (d / "service.json").is_file():
                conf = json.loads((d / "service.json").read_text())
                if (d / "build.json").is_file():
                    conf["last_build"] = json.loads((d / "build.json").read_text())
                out.append(conf)
        return out

    # -- requests from members ---------------------------------------------------------------

    async def _on_message(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        reply = await self._serve(peer, msg)
        kind = msg.get("type")
        outcome = "refused" if reply.get("ok") is False else "answered"
        self._served(kind if kind in MESSAGES else "other", outcome, t0)
        return reply

    async def _serve(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        kind = msg.get("type")
        service = str(msg.get("service", ""))[:64]
        try:
            conf = self.files.conf(service)
            if kind in ("mlq_mask", "mlq_remask", "mlq_new_build"):
                if peer != conf["merger"] or conf["role"] != "lender":
                    raise AuthorizationError(f"{peer!r} is not the merger of {service!r}")
                if kind == "mlq_new_build":
                    return await self.lender.on_new_build(service)
                return await self.lender.on_build_step(service, conf, msg)
            if peer not in conf["lenders"]:
                raise AuthorizationError(f"{peer!r} is not a lender of {service!r}")
            if kind == "mlq_sync":
                return await asyncio.to_thread(self.merger.on_sync, peer, service, conf, msg)
            if kind == "mlq_eval":
                return await self.lender.on_eval(peer, service, conf, msg)
            if kind == "mlq_status":
                return self.merger.on_status(service, conf)
            if kind == "mlq_rebuild":
                return await self.merger.on_rebuild(peer, service, conf, msg)
            raise DataError(f"unknown request {str(kind)[:40]!r}")
        except RainbridgeError as exc:
            self.storage.log(
                "mlq_refused",
                {"service": service, "request": str(kind)[:40], "reason": str(exc)[:200]},
                actor=f"peer:{peer}",
            )
            out: dict[str, Any] = {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
            if isinstance(exc, mlq.WindowChangedError):
                out.update(refusal="window_changed", lender=exc.lender, build=exc.build)
                out["end"] = exc.end
            elif isinstance(exc, mlq.StaleBuildError):
                out["refusal"] = "stale_build"
            return out
