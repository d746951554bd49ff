"""Work a node does beside answering: tasks on the event loop, and storage calls in threads.

:class:`Background` owns both so that stopping the node stops them in one place:

* :meth:`Background.spawn` starts a task the caller does not wait for (telling peers a job
  was aborted, finalizing a job record) and keeps a reference until it ends;
* :meth:`Background.db` runs a blocking call (SQLAlchemy, a file read) in a bounded pool of
  threads and awaits it, so a slow database delays only the requests that need it, never the
  event loop, the data plane or other peers' sessions. The pool is small on purpose: SQLite
  serializes writers anyway, and PostgreSQL's pool is sized to match.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: threads for blocking storage calls
DB_THREADS = 8


class Background:
    """The node's background tasks and its storage threads."""

    def __init__(self, threads: int = DB_THREADS) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="rainbridge-db")
        self._loop: asyncio.AbstractEventLoop | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop without waiting for it (kept alive until it ends); from
        a storage thread too (a handler that starts follow-up work)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                coro.close()
                raise RuntimeError("Background.spawn outside the node's event loop") from None
            self._loop.call_soon_threadsafe(self._start, coro)
            return
        self._start(coro)

    def _start(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a storage thread, awaited."""
        self._loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def close(self) -> None:
        """Cancel the tasks still running, then let the storage threads finish."""
        for t in list(self._tasks):
            t.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
