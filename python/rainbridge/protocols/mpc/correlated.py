"""Correlated randomness for two-party computation, from a dealer.

Security model: semi-honest; the dealer (a third node, e.g. a regulator's or a neutral
operator's) is trusted not to collude with either party and learns nothing about the inputs
(it never sees a share of them). Each party learns nothing from its randomness alone.

To keep the dealer's traffic small, it sends each party a 16-byte seed once: party 0 derives
all of its shares from its seed and never talks to the dealer again; party 1 derives the
uniform parts of its shares from its seed and receives from the dealer only the one part it
cannot derive (``c1 = a·b - c0``). Both parties and the dealer consume their seeds in the
same order, because both parties run the same program; party 1 names each request (kind and
shapes) so the dealer can follow.

Three kinds of triples: element-wise (``a·b = c``), matrix (``A @ B = C``) and binary
(``a & b = c`` on 64-bit words, for comparison circuits).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from rainbridge.errors import ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.prg import SEED_BYTES, Prg, new_seed
from rainbridge.protocols.mpc.ring import Ring, byte_view

Shape = tuple[int, ...]
Triple = tuple[Ring, Ring, Ring]
#: largest request a dealer serves at once (elements), so a corrupt request cannot make it
#: allocate without bound
MAX_DEALER_ELEMENTS = 1 << 26


def _n(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _triple_shapes(kind: str, a: Shape, b: Shape) -> tuple[Shape, Shape, Shape]:
    if kind == "matmul":
        return a, b, (a[0], b[1])
    return a, a, a


def _product(kind: str, a: Ring, b: Ring) -> Ring:
    if kind == "mul":
        return a * b
    if kind == "matmul":
        return _matmul(a, b)
    return a & b


def _matmul(a: Ring, b: Ring) -> Ring:
    # numpy's integer matmul wraps modulo 2^64 on uint64, without BLAS: split into 32-bit
    # halves and use float64 BLAS would lose bits; the exact integer path is the safe one
    return np.matmul(a, b)


class Provider(abc.ABC):
    """Where a party's triples come from."""

    @abc.abstractmethod
    async def triple(self, kind: str, a: Shape, b: Shape) -> Triple:
        """A triple of ``kind`` (``mul``, ``matmul`` or ``and``) for operands of shapes a, b."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the dealer (party 1 tells it the session is over)."""


class SeedProvider(Provider):
    """Party 0: everything from its seed."""

    def __init__(self, seed: bytes) -> None:
        self.prg = Prg(seed)

    async def triple(self, kind: str, a: Shape, b: Shape) -> Triple:
        sa, sb, sc = _triple_shapes(kind, a, b)
        return self.prg.ring(sa), self.prg.ring(sb), self.prg.ring(sc)


class DealerClient(Provider):
    """Party 1: uniform parts from its seed, the product part from the dealer."""

    def __init__(self, seed: bytes, dealer: Channel) -> None:
        self.prg = Prg(seed)
        self.dealer = dealer

    async def triple(self, kind: str, a: Shape, b: Shape) -> Triple:
        sa, sb, sc = _triple_shapes(kind, a, b)
        a1, b1 = self.prg.ring(sa), self.prg.ring(sb)
        await self.dealer.send_json("mpc/req", {"kind": kind, "a": list(a), "b": list(b)})
        c1 = np.empty(sc, dtype=np.uint64)
        got = await self.dealer.recv_into("mpc/corr", byte_view(c1))
        if got != c1.nbytes:
            raise ProtocolViolationError(
                f"the dealer sent {got} bytes of correlated randomness, expected {c1.nbytes}"
            )
        return a1, b1, c1

    async def close(self) -> None:
        await self.dealer.send_json("mpc/req", {"kind": "done"})


async def deal_seeds(to0: Channel, to1: Channel) -> tuple[bytes, bytes]:
    """The dealer's first step: a fresh seed to each party."""
    s0, s1 = new_seed(), new_seed()
    await to0.send("mpc/seed", s0)
    await to1.send("mpc/seed", s1)
    return s0, s1


async def receive_seed(dealer: Channel) -> bytes:
    seed = await dealer.recv("mpc/seed")
    if len(seed) != SEED_BYTES:
        raise ProtocolViolationError("the dealer's seed has the wrong length")
    return seed


def _parse_request(req: Any) -> tuple[str, Shape, Shape]:
    if not isinstance(req, dict) or req.get("kind") not in ("mul", "matmul", "and", "done"):
        raise ProtocolViolationError("malformed request to the dealer")
    if req["kind"] == "done":
        return "done", (), ()
    try:
        a = tuple(int(x) for x in req["a"])
        b = tuple(int(x) for x in req["b"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolViolationError("malformed shapes in a request to the dealer") from None
    kind = str(req["kind"])
    ok = all(x >= 0 for x in a + b) and len(a) <= 4 and len(b) <= 4
    if kind == "matmul":
        ok = ok and len(a) == 2 and len(b) == 2 and a[1] == b[0]
    if not ok or max(_n(s) for s in _triple_shapes(kind, a, b)) > MAX_DEALER_ELEMENTS:
        raise ProtocolViolationError(f"the dealer refuses a {kind} request of shapes {a}, {b}")
    return kind, a, b


async def run_dealer(to0: Channel, to1: Channel) -> int:
    """Serve one two-party session's triples until party 1 says it is done.

    Returns the number of requests served. The dealer sees only shapes.
    """
    s0, s1 = await deal_seeds(to0, to1)
    p0, p1 = Prg(s0), Prg(s1)
    served = 0
    while True:
        kind, a, b = _parse_request(await to1.recv_json("mpc/req"))
        if kind == "done":
            return served
        sa, sb, sc = _triple_shapes(kind, a, b)
        a0, b0, c0 = p0.ring(sa), p0.ring(sb), p0.ring(sc)
        a1, b1 = p1.ring(sa), p1.ring(sb)
        if kind == "and":
            c1 = _product(kind, a0 ^ a1, b0 ^ b1) ^ c0
        else:
            c1 = _product(kind, a0 + a1, b0 + b1) - c0
        await to1.send("mpc/corr", byte_view(np.asarray(c1, dtype=np.uint64)))
        served += 1
