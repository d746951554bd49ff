"""What the node's query services (PIR, the multi-lender count) bound: the names a service
may take, and each peer's rate of requests to a service (a token bucket per service and
peer)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from rainbridge.errors import ConfigError, RateLimitError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def valid_service_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_service_name(name: str) -> None:
    """Refuse a service name that is not letters, digits and ``_.-`` (at most 64)."""
    if not valid_service_name(name):
        raise ConfigError(f"PIR service name {name!r}: letters, digits, '_.-', at most 64")


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a request takes one."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is free."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimits:
    """One token bucket per (service, peer), made with the service's rate at the peer's
    first request.

    Parameters
    ----------
    what : str
        What a request is, for the refusal (``"queries"``, ``"counts"``).
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def take(self, service: str, peer: str, rate: float, burst: float) -> None:
        """Count one request of ``peer`` to ``service``; refused when it is over its rate.

        Raises
        ------
        RateLimitError
            ``peer`` has no token left; the message says when one is free.
        """
        bucket = self._buckets.setdefault((service, peer), TokenBucket(rate, burst))
        wait = bucket.take()
        if wait > 0:
            raise RateLimitError(
                f"{peer!r} is over {rate:g} {self._what}/s on {service!r}: retry in {wait:.2f} s"
            )
