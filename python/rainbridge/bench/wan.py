"""A shaped link for WAN benchmarks: two network namespaces joined by a veth pair, each
end's egress shaped by ``tc``: ``netem`` (rate, and half the round-trip delay each way)
where the kernel has it; otherwise ``tbf`` for the rate and, for the delay, a relay in the
second namespace that holds each chunk for half the round trip each way
(:mod:`rainbridge.bench.relay`).

Needs root and iproute2 (``ip``, ``tc``); made for the run and removed after it, so the
machine's own network is never touched. ``python -m rainbridge.bench psi --wan 1gbit:10ms``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_SPEC = re.compile(r"^(\d+(?:\.\d+)?)(gbit|mbit|kbit):(\d+(?:\.\d+)?)ms$")


@dataclass(frozen=True)
class Link:
    """The two ends: a command prefix per side, and the address party a listens on."""

    prefix_a: list[str]
    prefix_b: list[str]
    host_a: str
    rate: str
    rtt_ms: float
    #: "netem" (rate and delay in the kernel) or "tbf+relay" (rate in the kernel, delay
    #: added by a relay at b's end)
    shaper: str
    relay_delay_ms: float


class WanUnavailable(RuntimeError):
    """This machine cannot make a shaped link (not root, no iproute2, no netns support)."""


def parse_wan(spec: str) -> tuple[str, float]:
    """``"1gbit:10ms"`` → ``("1gbit", 10.0)`` (rate, round-trip time)."""
    m = _SPEC.match(spec.strip().lower())
    if not m:
        raise ValueError(f"--wan wants RATE:RTT such as 1gbit:10ms or 100mbit:30ms, not {spec!r}")
    return f"{m.group(1)}{m.group(2)}", float(m.group(3))


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise WanUnavailable(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")


def _tc(ns: str, dev: str, rate: str, delay_ms: float) -> str:
    """Shape ``dev``'s egress; returns the shaper used (netem, else tbf without delay)."""
    base = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root"]
    # limit: netem's default queue (1000 packets) drops at 1 Gbit/s with a few ms of delay
    netem = ["netem", "delay", f"{delay_ms}ms", "rate", rate, "limit", "100000"]
    r = subprocess.run(base + netem, capture_output=True, text=True)
    if r.returncode == 0:
        return "netem"
    if "unknown" not in r.stderr.lower():
        raise WanUnavailable(f"tc netem on {dev}: {r.stderr.strip() or r.returncode}")
    # a burst of a few ms at the rate, a queue of 50 ms: TCP sees a clean bottleneck
    tbf = ["tbf", "rate", rate, "burst", "512kb", "latency", "50ms"]
    r = subprocess.run(base + tbf, capture_output=True, text=True)
    if r.returncode:
        raise WanUnavailable(f"tc tbf on {dev}: {r.stderr.strip() or r.returncode}")
    return "tbf"


@contextmanager
def shaped_link(rate: str, rtt_ms: float) -> Iterator[Link]:
    """Make the namespaces and the shaped veth pair; remove them whatever happens."""
    if os.geteuid() != 0:
        raise WanUnavailable("a shaped link needs root (network namespaces and tc)")
    if not (shutil.which("ip") and shutil.which("tc")):
        raise WanUnavailable("a shaped link needs iproute2 (ip and tc)")
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"rb-a-{tag}", f"rb-b-{tag}"
    dev_a, dev_b = f"rba{tag}", f"rbb{tag}"
    made: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        _ip("link", "set", dev_a, "netns", ns_a)
        _ip("link", "set", dev_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, dev_a, "10.199.0.1/24"), (ns_b, dev_b, "10.199.0.2/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            shaper = _tc(ns, dev, rate, rtt_ms / 2)
        yield Link(
            prefix_a=["ip", "netns", "exec", ns_a],
            prefix_b=["ip", "netns", "exec", ns_b],
            host_a="10.199.0.1",
            rate=rate,
            rtt_ms=rtt_ms,
            shaper="netem" if shaper == "netem" else "tbf+relay",
            relay_delay_ms=0.0 if shaper == "netem" else rtt_ms / 2,
        )
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and so both
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
