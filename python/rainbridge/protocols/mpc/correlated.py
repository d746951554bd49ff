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

Beaver triples for products of secrets: element-wise (``a·b = c``) and matrix
(``A @ B = C``). Products of *private* values (one party's plaintext times the other's:
``cross0``/``cross1`` for matrices, see
:meth:`~rainbridge.protocols.mpc.engine.Mpc.cross_product`; ``xmul``/``xand`` element-wise)
need less: the party holding one operand gets a random ``R``, the other a random ``S``, and
they share ``R·S`` — each sends its operand masked once, half the traffic of sharing both
and multiplying the sharings. A comparison's carry levels (``prefix``) get XOR-shared masks
``a`` and ``h`` and the shares of ``a & (h << s)`` and ``a & (a << s)``, so one opening of
``p`` serves both ANDs of a level of the carry tree (the parties keep the odd positions of
the shift-1 products, :meth:`Provider.begin_carry`).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
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
    if kind in ("matmul", "cross0", "cross1"):
        return a, b, (a[0], b[1])
    return a, a, a  # element-wise kinds; a prefix level's b holds its shift, not a shape


def _product(kind: str, a: Ring, b: Ring) -> Ring:
    return a * b if kind == "mul" else _matmul(a, b)


def _matmul(a: Ring, b: Ring) -> Ring:
    # numpy's integer matmul wraps modulo 2^64 on uint64, without BLAS: split into 32-bit
    # halves and use float64 BLAS would lose bits; the exact integer path is the safe one
    return np.matmul(a, b)


class Provider(abc.ABC):
    """Where a party's triples come from."""

    #: whether products of private values come straight from OTs, each costing OTs by its
    #: chooser's bits (:meth:`direct_cross`): then a narrow operand is worth making first
    direct_products: bool = False

    @abc.abstractmethod
    async def begin_triple(
        self, kind: str, a: Shape, b: Shape
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[Ring]]]:
        """A triple's masks now and its product share later (``await finish()``).

        A multiplication needs only the masks to open its operands, so the dealer's work
        overlaps the parties' exchange instead of preceding it.
        """

    async def triple(self, kind: str, a: Shape, b: Shape) -> Triple:
        """A triple of ``kind`` (``mul`` or ``matmul``) for operands of shapes a, b."""
        x, y, finish = await self.begin_triple(kind, a, b)
        return x, y, await finish()

    @abc.abstractmethod
    async def cross(self, left: int, a: Shape, b: Shape) -> tuple[Ring, Ring]:
        """For ``X (a) @ Y (b)`` with X private to party ``left``: (this party's mask, share).

        The mask is ``R`` (shape a) at the left party and ``S`` (shape b) at the other; the
        shares of the two parties add up to ``R @ S``.
        """

    @abc.abstractmethod
    async def pair(self, kind: str, shape: Shape) -> tuple[Ring, Ring]:
        """For ``x0 ∘ x1``, x0 private to party 0 and x1 to party 1 (``∘``: ``xmul`` is the
        ring product, ``xand`` bitwise AND): (this party's mask, share of ``R ∘ S``)."""

    @abc.abstractmethod
    async def begin_carry(
        self, shape: Shape, width: int, both: bool
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[list[Ring]]]]:
        """Masks ``a`` (for p) and ``h`` (for g), XOR-shared, for one level of a carry tree
        over words of ``width`` bits; later the shares of ``a & (h << 1)`` and, if
        ``both``, ``a & (a << 1)``, at the odd positions below ``width`` (the level's AND
        gates; the other bits are arbitrary). One mask of ``p`` serves both products, so
        one opening of it serves both ANDs."""

    async def begin_carries(
        self, shape: Shape, widths: Sequence[int], boths: Sequence[bool]
    ) -> list[tuple[Ring, Ring, Callable[[], Awaitable[list[Ring]]]]] | None:
        """:meth:`begin_carry` for every level of a tree at once, where this provider makes
        them cheaper together; None: level by level (a dealer's requests then overlap each
        level's opening, and its corrections never pile up)."""
        return None

    async def direct_select(self, bit: Ring, x: Ring) -> Ring | None:
        """This party's share of ``b · x`` for a XOR-shared bit (``bit`` its 0/1 share) and
        an additively shared ``x`` of the same shape, computed directly where this provider
        can; None: make the bit additive and multiply."""
        return None

    async def direct_private(self, kind: str, mine: Ring, bits: int) -> Ring | None:
        """This party's share of ``x0 ∘ x1`` (as :meth:`pair`'s kinds) for private values
        whose bits above the low ``bits`` are zero at party 0, computed directly when this
        provider can do it cheaper than masking; None: use :meth:`pair`."""
        return None

    async def direct_cross(
        self,
        left: int,
        x: Any,
        y: Ring | None,
        shape: tuple[int, int, int],
        x_bits: int = 64,
        y_bits: int = 64,
    ) -> Ring | None:
        """Shares of ``X @ Y`` computed directly, when this provider can do it cheaper than
        the masked protocol (``x``: the left party's matrix or one-hot groups, ``y`` the
        other's; a dense X's entries signed integers of ``x_bits`` bits, Y's unsigned of
        ``y_bits``); None: use the masks of :meth:`cross`."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the dealer (party 1 tells it the session is over)."""


class SeedProvider(Provider):
    """Party 0: everything from its seed."""

    def __init__(self, seed: bytes) -> None:
        self.prg = Prg(seed)

    async def begin_triple(
        self, kind: str, a: Shape, b: Shape
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[Ring]]]:
        sa, sb, sc = _triple_shapes(kind, a, b)
        x, y, c = self.prg.ring(sa), self.prg.ring(sb), self.prg.ring(sc)

        async def finish() -> Ring:
            return c

        return x, y, finish

    async def cross(self, left: int, a: Shape, b: Shape) -> tuple[Ring, Ring]:
        mask = self.prg.ring(a if left == 0 else b)
        return mask, self.prg.ring((a[0], b[1]))

    async def pair(self, kind: str, shape: Shape) -> tuple[Ring, Ring]:
        return self.prg.ring(shape), self.prg.ring(shape)

    async def begin_carry(
        self, shape: Shape, width: int, both: bool
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[list[Ring]]]]:
        a, h = self.prg.ring(shape), self.prg.ring(shape)
        cs = [self.prg.ring(shape) for _ in range(1 + both)]

        async def finish() -> list[Ring]:
            return cs

        return a, h, finish


class DealerClient(Provider):
    """Party 1: uniform parts from its seed, the product part from the dealer."""

    def __init__(self, seed: bytes, dealer: Channel) -> None:
        self.prg = Prg(seed)
        self.dealer = dealer

    async def begin_triple(
        self, kind: str, a: Shape, b: Shape
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[Ring]]]:
        sa, sb, sc = _triple_shapes(kind, a, b)
        # ask first: the dealer computes while this party draws its masks
        await self.dealer.send_json("mpc/req", {"kind": kind, "a": list(a), "b": list(b)})
        a1, b1 = self.prg.ring(sa), self.prg.ring(sb)

        async def finish() -> Ring:
            return await self._correction(sc)

        return a1, b1, finish

    async def _correction(self, shape: Shape) -> Ring:
        c1 = np.empty(shape, dtype=np.uint64)
        got = await self.dealer.recv_into("mpc/corr", byte_view(c1))
        if got != c1.nbytes:
            raise ProtocolViolationError(
                f"the dealer sent {got} bytes of correlated randomness, expected {c1.nbytes}"
            )
        return c1

    async def cross(self, left: int, a: Shape, b: Shape) -> tuple[Ring, Ring]:
        await self.dealer.send_json("mpc/req", {"kind": f"cross{left}", "a": list(a), "b": list(b)})
        mask = self.prg.ring(b if left == 0 else a)
        return mask, await self._correction((a[0], b[1]))

    async def pair(self, kind: str, shape: Shape) -> tuple[Ring, Ring]:
        await self.dealer.send_json("mpc/req", {"kind": kind, "a": list(shape), "b": []})
        mask = self.prg.ring(shape)
        return mask, await self._correction(shape)

    async def begin_carry(
        self, shape: Shape, width: int, both: bool
    ) -> tuple[Ring, Ring, Callable[[], Awaitable[list[Ring]]]]:
        req = {"kind": "prefix", "a": list(shape), "b": [1, int(both)]}
        await self.dealer.send_json("mpc/req", req)
        a, h = self.prg.ring(shape), self.prg.ring(shape)

        async def finish() -> list[Ring]:
            c = await self._correction((1 + both, *shape))
            return list(c)

        return a, h, finish

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
    kinds = ("mul", "matmul", "cross0", "cross1", "xmul", "xand", "prefix", "done")
    if not isinstance(req, dict) or req.get("kind") not in kinds:
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
    if kind in ("xmul", "xand"):
        ok = ok and b == ()
    if kind == "prefix":
        ok = ok and len(b) == 2 and 0 < b[0] < 64 and b[1] in (0, 1)
    if kind in ("matmul", "cross0", "cross1"):
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
        if kind in ("xmul", "xand"):
            r, c0, s = p0.ring(sa), p0.ring(sa), p1.ring(sa)
            c1 = r * s - c0 if kind == "xmul" else (r & s) ^ c0
            await to1.send("mpc/corr", byte_view(np.ascontiguousarray(c1)))
            served += 1
            continue
        if kind == "prefix":
            shift, both = np.uint64(b[0]), bool(b[1])
            a0, h0 = p0.ring(sa), p0.ring(sa)
            c0s = [p0.ring(sa) for _ in range(1 + both)]
            a1, h1 = p1.ring(sa), p1.ring(sa)
            m_a, m_h = a0 ^ a1, h0 ^ h1
            prods = [m_a & (m_h << shift)] + ([m_a & (m_a << shift)] if both else [])
            c1s = np.stack([pr ^ c0 for pr, c0 in zip(prods, c0s, strict=True)])
            await to1.send("mpc/corr", byte_view(c1s))
            served += 1
            continue
        if kind.startswith("cross"):
            # the left matrix's mask comes from the left party's seed, the right one's from
            # the other's; party 0 draws its mask before its share
            if kind == "cross0":
                r, c0, s = p0.ring(sa), p0.ring(sc), p1.ring(sb)
            else:
                s, c0, r = p0.ring(sb), p0.ring(sc), p1.ring(sa)
            c1 = _product(kind, r, s) - c0
            await to1.send("mpc/corr", byte_view(np.asarray(c1, dtype=np.uint64)))
            served += 1
            continue
        a0, b0, c0 = p0.ring(sa), p0.ring(sb), p0.ring(sc)
        a1, b1 = p1.ring(sa), p1.ring(sb)
        c1 = _product(kind, a0 + a1, b0 + b1) - c0
        await to1.send("mpc/corr", byte_view(np.asarray(c1, dtype=np.uint64)))
        served += 1
