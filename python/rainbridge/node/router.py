"""One router for the control requests pinned peers send over the data plane.

Each service registers the message types it answers (``router.add("pir_query",
self.on_query)``); a request whose type nobody registered, or that is not a JSON object with
a string ``type``, is refused here, once, with the same answer for every service. Messages
about a job (``job=True``) are checked here too: a valid job ID, a job this node knows, with
the asking peer among its parties; the handler then gets the job's row.

Handlers that only touch storage are plain functions: they run in the node's bounded pool of
storage threads (:class:`~rainbridge.node.background.Background`), so a slow database never
stalls the event loop, the data plane or other peers' sessions. Two plain handlers of
messages naming the same job never run at once (a proposal's "is this ID new?" and its
insert, a record's "already in the ledger?" and its append stay one step, as they were on
the loop). Handlers that wait on the network are coroutines and run on the loop.
"""

from __future__ import annotations

import inspect
import logging
import threading
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rainbridge.errors import ConfigError
from rainbridge.node.background import Background
from rainbridge.node.sessions import valid_job_id
from rainbridge.node.storage import JobRow, Storage

log = logging.getLogger("rainbridge.node.router")

Reply = dict[str, Any]
#: locks that serialize plain handlers of one job (a job ID maps to one of them)
_STRIPES = 64
#: ``(peer, message) -> reply``
Handler = Callable[[str, dict[str, Any]], Reply | Awaitable[Reply]]
#: ``(peer, message, job row) -> reply``, for messages about a job
JobHandler = Callable[[str, dict[str, Any], JobRow], Reply | Awaitable[Reply]]


@dataclass(frozen=True)
class _Route:
    handler: Callable[..., Any]
    job: bool
    is_async: bool
    owner: str


class MessageRouter:
    """Peers' control requests, dispatched by their ``type`` to the service that registered it.

    Parameters
    ----------
    storage : Storage
        Where the jobs named by job messages are looked up.
    background : Background
        The pool plain handlers run in.
    """

    def __init__(self, storage: Storage, background: Background) -> None:
        self.storage = storage
        self.background = background
        self._routes: dict[str, _Route] = {}
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def add(self, kind: str, handler: Handler, *, owner: str = "") -> None:
        """Answer messages of type ``kind`` with ``handler(peer, msg)``."""
        self._add(kind, handler, job=False, owner=owner)

    def add_job(self, kind: str, handler: JobHandler, *, owner: str = "") -> None:
        """Answer messages about a job with ``handler(peer, msg, row)``; the router has
        checked that the job exists here and that ``peer`` is one of its parties."""
        self._add(kind, handler, job=True, owner=owner)

    def _add(self, kind: str, handler: Callable[..., Any], *, job: bool, owner: str) -> None:
        if kind in self._routes:
            # two services answering one type is a wiring bug: fail at start, not at run time
            raise ConfigError(
                f"message type {kind!r} is already handled by {self._routes[kind].owner or '?'}"
            )
        self._routes[kind] = _Route(handler, job, inspect.iscoroutinefunction(handler), owner)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._routes)

    async def dispatch(self, peer: str, msg: Any) -> Reply:
        """The reply to ``msg`` from the pinned peer ``peer`` (authenticated by the data plane)."""
        kind = msg.get("type") if isinstance(msg, dict) else None
        route = self._routes.get(kind) if isinstance(kind, str) else None
        if route is None:
            shown = str(kind)[:40] if isinstance(kind, str) else type(kind).__name__
            return {"ok": False, "code": "invalid_request", "reason": f"unknown request {shown!r}"}
        args: tuple[Any, ...] = (peer, msg)
        if route.job:
            job_id = str(msg.get("job_id", ""))
            if not valid_job_id(job_id):
                return {"ok": False, "accept": False, "reason": "invalid job id"}
            row = await self.background.db(self.storage.find_job, job_id)
            if row is None or peer not in row.parties:
                return {"ok": False, "reason": "no such job here"}
            args = (peer, msg, row)
        if route.is_async:
            reply = await route.handler(*args)
        else:
            job_id = msg.get("job_id")
            reply = await self.background.db(self._one_per_job, route.handler, args, job_id)
        return dict(reply)

    def _one_per_job(self, handler: Callable[..., Any], args: tuple[Any, ...], job: Any) -> Any:
        if not isinstance(job, str):
            return handler(*args)
        with self._stripes[zlib.crc32(job.encode("utf-8", "replace")) % _STRIPES]:
            return handler(*args)
