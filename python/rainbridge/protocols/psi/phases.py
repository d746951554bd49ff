"""Wall-clock time per phase of one party's PSI, reported in its result's ``stats``.

The phases are where a party's time goes (hashing, grouping duplicates, the core protocol's
steps, waiting for the peer, matching), so that a benchmark shows which one bounds a run.
Timing is wall-clock: a phase that waits on the channel includes the peer's computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Phases:
    """Seconds accumulated per named phase, in the order the phases first ran."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def timed(self, name: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``, its time added to ``name`` (for work run in a worker thread, where
        several calls may overlap: their times add up)."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        """Seconds per phase, rounded to the millisecond."""
        return {k: round(v, 3) for k, v in self._seconds.items()}
