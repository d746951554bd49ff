"""Two-party arithmetic on additive shares over Z_2^64 (semi-honest, dealer-assisted).

A secret ``x`` is held as ``x0 + x1 = x (mod 2^64)``: party 0 holds ``x0``, party 1 ``x1``;
either share alone is uniformly random. Fixed-point secrets carry ``frac`` fractional bits.

Security model: semi-honest (honest-but-curious) parties; correlated randomness comes from a
dealer that colludes with neither (:mod:`.correlated`). What leaks: the shapes of every
value and the sequence of operations (the program is public); the values revealed on
purpose (:meth:`Mpc.reveal`), to whom the program says. Nothing else: every message is a
value masked by fresh randomness unknown to its receiver.

Costs: addition and multiplication by a public value are local; a multiplication or a
matrix product is one round (both parties open two masked values); a comparison is eight
rounds of binary AND gates (a carry tree over the shares whose levels narrow from 64 bits
to 2, then one product to turn the sign bit back into an arithmetic share), 48 bytes per
element each way — over values with a public bound of 32 bits (:meth:`Mpc.ltz_bit`'s
``bits``) one round and about half the bytes and OTs fewer; a product of two private
matrices (:meth:`Mpc.cross_product`) is one round.

Fixed-point products are truncated locally (SecureML, Mohassel and Zhang 2017): each party
shifts its own share, which is exact up to one unit in the last place with probability
1 - |x|/2^63 for a product |x| < 2^62 — keep |values| well below 2^(62-2f) (at f = 16,
about 10^9) and the chance of a large error is under 2^-20 per element.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError, ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.bits import carry_widths, low_mask, odd_bits, word_dtype
from rainbridge.protocols.mpc.correlated import Provider
from rainbridge.protocols.mpc.prg import random_ring
from rainbridge.protocols.mpc.ring import (
    DEFAULT_FRAC_BITS,
    Ring,
    byte_view,
    check_frac_bits,
    decode,
    encode,
)

_ONE = np.uint64(1)
#: largest message of shares; larger opens are split (the channel's frames stay small anyway)
_MAX_OPEN_WORDS = 1 << 21


_mv = byte_view


@dataclass
class Secret:
    """This party's share of a secret array; ``frac`` fractional bits (0: an integer)."""

    share: Ring
    frac: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.share.shape)

    def __len__(self) -> int:
        return len(self.share)

    def __getitem__(self, idx: Any) -> Secret:
        return Secret(self.share[idx], self.frac)


class OneHot:
    """Group indicators without the (groups, rows) matrix: row i belongs to group keys[i].

    ``keys[i] < 0`` puts row i in no group (a suppressed group's rows, a filtered row).
    """

    def __init__(self, keys: npt.NDArray[np.int64], groups: int) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.groups = groups
        if self.keys.ndim != 1 or (len(self.keys) and self.keys.max() >= groups):
            raise ConfigError("group keys must be indices of the groups, one per row")

    def rows(self, start: int, end: int) -> OneHot:
        return OneHot(self.keys[start:end], self.groups)

    def minus(self, mask: Ring) -> Ring:
        """``onehot - mask`` for a (groups, rows) mask."""
        out = np.negative(mask)
        rows = np.flatnonzero(self.keys >= 0)
        out.reshape(-1)[self.keys[rows] * len(self.keys) + rows] += _ONE
        return out

    def dot(self, y: Ring) -> Ring:
        """``onehot @ y``: the per-group sums of y's rows."""
        if self.groups <= 16:  # a pass per group beats a sort
            out = np.zeros((self.groups, y.shape[1]), dtype=np.uint64)
            for g in range(self.groups):
                out[g] = y[self.keys == g].sum(axis=0, dtype=np.uint64)
            return out
        order = np.argsort(self.keys, kind="stable")
        ks = self.keys[order]
        cums = np.zeros((len(ks) + 1, y.shape[1]), dtype=np.uint64)
        np.cumsum(y[order], axis=0, dtype=np.uint64, out=cums[1:])
        bounds = np.searchsorted(ks, np.arange(self.groups + 1))
        return cums[bounds[1:]] - cums[bounds[:-1]]  # wraps modulo 2^64, as shares do


class Mpc:
    """One party's end of a two-party computation.

    Parameters
    ----------
    party : int
        0 or 1.
    channel : Channel
        To the other party.
    provider : Provider
        Correlated randomness (a dealer's, see :mod:`.correlated`).
    frac_bits : int
        Fractional bits of fixed-point values (precision 2^-frac_bits).
    """

    def __init__(
        self, party: int, channel: Channel, provider: Provider, frac_bits: int = DEFAULT_FRAC_BITS
    ) -> None:
        if party not in (0, 1):
            raise ConfigError("a two-party computation has parties 0 and 1")
        self.party = party
        self.ch = channel
        self.provider = provider
        self.frac = check_frac_bits(frac_bits)
        self._step = 0
        self.rounds = 0

    # -- moving values ---------------------------------------------------------------------

    def _tag(self, what: str) -> str:
        self._step += 1
        return f"mpc/{what}/{self._step}"

    async def _exchange(
        self, what: str, arrays: Sequence[Ring], dtype: Any = np.uint64
    ) -> list[Any]:
        """Send this party's arrays, receive the other party's of the same shapes (words of
        ``dtype``, 64-bit by default)."""
        tag = self._tag(what)
        flat = [np.ascontiguousarray(a, dtype=dtype).reshape(-1) for a in arrays]
        total = sum(len(a) for a in flat)
        size = np.dtype(dtype).itemsize
        self.rounds += 1
        out = np.empty(total, dtype=dtype)
        pos = 0
        # split very large exchanges so neither side ever holds a multi-GiB message
        buf = np.concatenate(flat) if len(flat) > 1 else flat[0]
        while pos < total or total == 0:
            end = min(total, pos + _MAX_OPEN_WORDS)
            # both parties send at once: receive while sending, or two large messages
            # would each wait for the other's reader (transport back pressure)
            _, got = await asyncio.gather(
                self.ch.send(tag, _mv(buf[pos:end])),
                self.ch.recv_into(tag, _mv(out[pos:end])),
            )
            if got != (end - pos) * size:
                raise ProtocolViolationError(
                    f"the other party sent {got} bytes for {tag}, expected {(end - pos) * size}"
                )
            pos = end
            if total == 0:
                break
        res, pos = [], 0
        for a in arrays:
            n = int(np.prod(a.shape, dtype=np.int64)) if a.shape else 1
            res.append(out[pos : pos + n].reshape(a.shape))
            pos += n
        return res

    async def input(
        self,
        values: npt.ArrayLike | None,
        owner: int,
        shape: tuple[int, ...] | None = None,
        *,
        integer: bool = False,
    ) -> Secret:
        """Secret-share ``values`` held by ``owner`` (the other party passes ``shape``)."""
        frac = 0 if integer else self.frac
        tag = self._tag("input")
        if self.party == owner:
            if values is None:
                raise ConfigError("the owner of an input must give its values")
            x = encode(values, frac)
            r = random_ring(x.shape)
            await self.ch.send(tag, _mv(r))
            return Secret(x - r, frac)
        if shape is None:
            raise ConfigError("the other party must know the input's shape")
        share = np.empty(shape, dtype=np.uint64)
        got = await self.ch.recv_into(tag, _mv(share))
        if got != share.nbytes:
            raise ProtocolViolationError(f"an input share of {got} bytes, expected {share.nbytes}")
        return Secret(share, frac)

    async def reveal(self, x: Secret, to: int | None = None) -> np.ndarray | None:
        """Open ``x`` to party ``to`` (or to both); others get None."""
        if to is None:
            (other,) = await self._exchange("reveal", [x.share])
            return decode(x.share + other, x.frac)
        tag = self._tag("reveal")
        self.rounds += 1
        if self.party == to:
            other = np.empty(x.shape, dtype=np.uint64)
            got = await self.ch.recv_into(tag, _mv(other))
            if got != other.nbytes:
                raise ProtocolViolationError("a revealed share has the wrong size")
            return decode(x.share + other, x.frac)
        await self.ch.send(tag, _mv(x.share))
        return None

    # -- local operations ------------------------------------------------------------------

    def _align(self, x: Secret, y: Secret) -> tuple[Secret, Secret]:
        if x.frac == y.frac:
            return x, y
        # an integer meets a fixed-point value: scale the integer up (local)
        if x.frac < y.frac:
            return Secret(x.share << np.uint64(y.frac - x.frac), y.frac), y
        return x, Secret(y.share << np.uint64(x.frac - y.frac), x.frac)

    def add(self, x: Secret, y: Secret) -> Secret:
        x, y = self._align(x, y)
        return Secret(x.share + y.share, x.frac)

    def sub(self, x: Secret, y: Secret) -> Secret:
        x, y = self._align(x, y)
        return Secret(x.share - y.share, x.frac)

    def neg(self, x: Secret) -> Secret:
        return Secret(-x.share, x.frac)  # wraps modulo 2^64

    def add_public(self, x: Secret, c: npt.ArrayLike) -> Secret:
        enc = encode(c, x.frac)
        return Secret(x.share + enc if self.party == 0 else x.share.copy(), x.frac)

    def mul_public_int(self, x: Secret, c: npt.ArrayLike) -> Secret:
        k = np.asarray(c, dtype=np.int64).view(np.uint64)
        return Secret(x.share * k, x.frac)

    def mul_public(self, x: Secret, c: npt.ArrayLike) -> Secret:
        """``x · c`` for a public real ``c`` (encoded at this engine's precision)."""
        k = encode(c, self.frac)
        return self.truncate(Secret(x.share * k, x.frac + self.frac), self.frac)

    def truncate(self, x: Secret, bits: int) -> Secret:
        """Divide by 2^bits (local; see the module docstring for its error)."""
        if bits == 0:
            return x
        if self.party == 0:
            share = (x.share.view(np.int64) >> np.int64(bits)).view(np.uint64)
        else:
            share = -((-x.share).view(np.int64) >> np.int64(bits)).view(np.uint64)
        return Secret(share, x.frac - bits)

    def sum(self, x: Secret, axis: int | None = None) -> Secret:
        return Secret(np.asarray(np.sum(x.share, axis=axis, dtype=np.uint64)), x.frac)

    # -- multiplication --------------------------------------------------------------------

    async def mul(self, x: Secret, y: Secret) -> Secret:
        """Element-wise product (Beaver); fixed-point products are truncated back."""
        if x.shape != y.shape:
            x_s, y_s = np.broadcast_arrays(x.share, y.share)
            x, y = (
                Secret(np.ascontiguousarray(x_s), x.frac),
                Secret(np.ascontiguousarray(y_s), y.frac),
            )
        a, b, finish = await self.provider.begin_triple("mul", x.shape, y.shape)
        # both masked values in one buffer: one message, no concatenation
        masked = np.empty((2, *x.shape), dtype=np.uint64)
        np.subtract(x.share, a, out=masked[0])
        np.subtract(y.share, b, out=masked[1])
        (other,) = await self._exchange("open", [masked])
        c = await finish()
        masked += other
        e, f = masked[0], masked[1]
        z = e * b
        z += c
        z += f * a
        if self.party == 0:
            z += e * f
        return self._rescale(Secret(z, x.frac + y.frac))

    async def matmul(self, x: Secret, y: Secret) -> Secret:
        """Matrix product of an (n, k) and a (k, m) secret (Beaver matrix triple)."""
        if x.share.ndim != 2 or y.share.ndim != 2 or x.shape[1] != y.shape[0]:
            raise ConfigError(f"cannot multiply matrices of shapes {x.shape} and {y.shape}")
        a, b, finish = await self.provider.begin_triple("matmul", x.shape, y.shape)
        e, f = await self._open_masked([x.share - a, y.share - b])
        z = await finish() + np.matmul(e, b) + np.matmul(a, f)
        if self.party == 0:
            z = z + np.matmul(e, f)
        return self._rescale(Secret(z, x.frac + y.frac))

    async def cross_product(
        self,
        x: npt.NDArray[Any] | OneHot | None,
        y: npt.NDArray[Any] | None,
        *,
        left: int,
        shape: tuple[int, int, int],
        x_bits: int = 64,
        y_bits: int = 64,
    ) -> Secret:
        """Shares of ``X @ Y``: X (p, n) private to party ``left``, Y (n, q) to the other.

        ``x_bits`` is a bound both parties know (a property of the program, the same at
        both): X's entries are signed integers of that many bits, checked at the left
        party. Without a dealer a dense X then costs ``x_bits`` OTs per entry, not 64
        (where the provider lets X's entries choose, :meth:`.ot.OtProvider.direct_cross`).
        ``y_bits`` likewise for Y: unsigned integers below ``2^y_bits``, checked at the
        right party; where Y's entries choose, each costs ``y_bits`` OTs.

        Neither matrix is shared first: the left party sends ``X - R``, the other ``Y - S``
        (masks from the dealer, who also shares ``R @ S``), and each computes its share
        locally — ``X @ (Y - S)`` and ``(X - R) @ S``. One round, p·n + n·q words each way,
        half the traffic of sharing both and multiplying the sharings. Integer matrices
        (integer secrets result); ``x`` may be a :class:`OneHot` (group indicators), whose
        products are sums over groups.
        """
        p, n, q = shape
        if left not in (0, 1):
            raise ConfigError("the left matrix belongs to party 0 or 1")
        if not 2 <= x_bits <= 64:
            raise ConfigError(f"entries of {x_bits} bits: expected 2 to 64")
        if not 1 <= y_bits <= 64:
            raise ConfigError(f"right entries of {y_bits} bits: expected 1 to 64")
        if self.party != left and y is not None:
            y = np.asarray(y, dtype=np.int64).view(np.uint64)
            if y.shape != (n, q):
                raise ConfigError(f"the right matrix has shape {y.shape}, expected {(n, q)}")
            if y_bits < 64 and y.size and int(y.max()) >> y_bits:
                raise ConfigError(f"the right matrix has entries of more than {y_bits} bits")
        if self.party == left and x_bits < 64 and x is not None and not isinstance(x, OneHot):
            xs = np.asarray(x, dtype=np.int64)
            bound = 1 << (x_bits - 1)
            if xs.size and (int(xs.min()) < -bound or int(xs.max()) >= bound):
                raise ConfigError(f"the left matrix has entries beyond {x_bits}-bit integers")
        direct = await self.provider.direct_cross(left, x, y, shape, x_bits, y_bits)
        if direct is not None:
            return Secret(direct, 0)
        mask, c = await self.provider.cross(left, (p, n), (n, q))
        if self.party == left:
            if x is None:
                raise ConfigError("the left party must give its matrix")
            if isinstance(x, OneHot):
                mine = x.minus(mask)
            else:
                xa = np.asarray(x, dtype=np.int64).view(np.uint64)
                if xa.shape != (p, n):
                    raise ConfigError(f"the left matrix has shape {xa.shape}, expected {(p, n)}")
                mine = xa - mask
            other = await self._swap("cross", mine, (n, q))
            z = x.dot(other) if isinstance(x, OneHot) else np.matmul(xa, other)
        else:
            if y is None:
                raise ConfigError("the right party must give its matrix")
            ya = np.asarray(y, dtype=np.uint64)
            other = await self._swap("cross", ya - mask, (p, n))
            z = np.matmul(other, mask)
        z += c
        return Secret(z, 0)

    async def _swap(self, what: str, mine: Ring, their_shape: tuple[int, ...]) -> Ring:
        """Send ``mine``, receive an array of ``their_shape`` (sizes may differ)."""
        tag = self._tag(what)
        self.rounds += 1
        out = np.empty(their_shape, dtype=np.uint64)
        _, got = await asyncio.gather(
            self.ch.send(tag, _mv(np.ascontiguousarray(mine))), self.ch.recv_into(tag, _mv(out))
        )
        if got != out.nbytes:
            raise ProtocolViolationError(
                f"the other party sent {got} bytes for {tag}, expected {out.nbytes}"
            )
        return out

    def _rescale(self, z: Secret) -> Secret:
        return self.truncate(z, z.frac - self.frac) if z.frac > self.frac else z

    async def _open_masked(self, masked: Sequence[Ring]) -> list[Ring]:
        others = await self._exchange("open", masked)
        return [m + o for m, o in zip(masked, others, strict=True)]

    async def square(self, x: Secret) -> Secret:
        return await self.mul(x, x)

    # -- comparison ------------------------------------------------------------------------

    async def ltz(self, x: Secret, bits: int = 64) -> Secret:
        """1 where ``x < 0`` else 0, as an integer secret (the sign bit): :meth:`ltz_bit`,
        then the XOR-shared bit made additive (``b = b0 + b1 - 2·b0·b1``: one product of
        private bits)."""
        return await self._additive_bit(await self.ltz_bit(x, bits))

    async def _additive_bit(self, bit: Ring) -> Secret:
        prod = await self._private_product("xmul", bit, 1)
        return Secret(bit - np.uint64(2) * prod, 0)

    async def ltz_bit(self, x: Secret, bits: int = 64) -> Ring:
        """This party's XOR share (0 or 1 per element) of ``[x < 0]``.

        The sign of ``x0 + x1`` is the top bits of the two shares XOR the carry into bit 63
        of their sum. The carry comes from a tree over the low 63 bits, moved up one place
        so that the tree has 64 leaves (the empty leaf generates nothing): generate bits
        ``g = x0 & x1`` (a product of private values), propagate bits ``p = x0 ^ x1`` (each
        party's own share), then six levels that each combine neighbouring pairs,
        ``G = g_hi ^ (p_hi & g_lo)``, ``P = p_hi & p_lo``, keeping only the pairs' results
        (:mod:`.bits`): 125 AND gates in all instead of a Kogge-Stone circuit's 704. Each
        level opens its masked ``p`` and ``g`` words once, at the level's width (64, 32,
        …, 2 bits: 32 bytes per element each way in all); the first AND is a product of
        private values. Seven rounds.
        Without a dealer (:class:`~.ot.OtProvider`) each party chooses once per level for
        the two gates that share a ``p_hi`` bit (63 OTs each way for the 125 gates), and
        the generate bits cost 64 OTs (32 each way): 190 random OTs, 95 chosen by each
        party (191 with :meth:`ltz`'s conversion, one more chosen by party 0).

        ``bits`` (2 to 64) narrows the tree to the shares' low ``bits`` bits: the result is
        bit ``bits - 1`` of ``x0 + x1`` modulo ``2^bits``, which is the sign of x exactly
        when ``-2^(bits-1) ≤ x < 2^(bits-1)`` — a public bound the caller must guarantee (a
        wider x gives a meaningless bit, not an error). A level of odd width gets one more
        leaf on top that propagates and generates nothing (party 0's ``p`` bit set), so
        the carry passes it unchanged. The cost follows the width: at 32 bits 61 gates, 94
        random OTs, 24 bytes per element each way with a dealer; at 19 bits 60 random OTs.
        """
        if not 2 <= bits <= 64:
            raise ConfigError(f"a comparison over {bits} bits: expected 2 to 64")
        mine = np.ascontiguousarray(x.share)
        top = np.uint64(bits - 1)
        low = mine & low_mask(bits - 1)
        g = (await self._private_product("xand", low, bits - 1)) << _ONE
        p = low << _ONE
        widths, pads = carry_widths(bits)
        levels = await self.provider.begin_carries(p.shape, widths, [w > 2 for w in widths])
        for k, width in enumerate(widths):
            if pads[k] and self.party == 0:
                p = p | (_ONE << np.uint64(width - 1))  # the padding leaf: propagate
            if levels is not None:
                level = levels[k]
            else:
                level = await self.provider.begin_carry(p.shape, width, width > 2)
            g, p = await self._carry_level(p, g, width, level)
        return ((mine >> top) ^ g) & _ONE

    async def select(self, bit: Ring, x: Secret) -> Secret:
        """``b · x`` for a XOR-shared bit ``b`` (``bit``: this party's 0/1 share, as
        :meth:`ltz_bit` gives it; broadcast to ``x``'s shape). Without a dealer one OT each
        way (:meth:`Provider.direct_select`); with one, the bit made additive and a
        multiplication."""
        bit = np.ascontiguousarray(bit, dtype=np.uint64)
        if bit.size and int(bit.max()) > 1:
            raise ConfigError("a selection's bit shares are 0 or 1")
        b = np.ascontiguousarray(np.broadcast_to(bit, x.shape))
        direct = await self.provider.direct_select(b, np.ascontiguousarray(x.share))
        if direct is not None:
            return Secret(direct, x.frac)
        # made additive before broadcasting: one conversion per bit, not per copy
        additive = await self._additive_bit(bit)
        wide = np.ascontiguousarray(np.broadcast_to(additive.share, x.shape))
        return await self.mul(Secret(wide, 0), x)

    def not_bit(self, bit: Ring) -> Ring:
        """The XOR share of ``1 - b`` (party 0 flips its share)."""
        return bit ^ _ONE if self.party == 0 else bit

    async def _private_product(self, kind: str, mine: Ring, bits: int) -> Ring:
        """:meth:`private_product` for values of ``bits`` bits, directly where the provider
        can (:meth:`Provider.direct_private`)."""
        direct = await self.provider.direct_private(kind, mine, bits)
        return direct if direct is not None else await self.private_product(kind, mine)

    async def private_product(self, kind: str, mine: Ring) -> Ring:
        """Shares of ``x0 · x1`` (``xmul``, additive) or ``x0 & x1`` (``xand``, XOR), where
        party i's ``mine`` is its private x_i: each sends x_i masked once."""
        mask, c = await self.provider.pair(kind, mine.shape)
        if kind == "xand":
            other = await self._swap(kind, mine ^ mask, mine.shape)
            z = (mine & other) if self.party == 0 else (other & mask)
            return z ^ c
        other = await self._swap(kind, mine - mask, mine.shape)
        z = (mine * other) if self.party == 0 else (other * mask)
        return z + c

    async def _carry_level(
        self, p: Ring, g: Ring, width: int, level: tuple[Ring, Ring, Any]
    ) -> tuple[Ring, Ring]:
        """One level of the carry tree over XOR-shared words of ``width`` bits: the shares
        of ``odd(g) ^ (odd(p) & even(g))`` and ``odd(p) & even(p)``, ``width // 2`` bits
        each (the second only below the root, zeros at it).

        The gates are the shift-1 prefix products at the odd positions, computed on whole
        words and compacted once at the end: cheaper than compacting every operand."""
        both = width > 2
        keep = low_mask(width)
        a, h, finish = level  # from Provider.begin_carries
        e, f = await self._open_pair((p ^ a) & keep, (g ^ h) & keep, width)
        cs = await finish()
        f1 = f << _ONE
        z1 = cs[0] ^ (e & (h << _ONE)) ^ (f1 & a)
        if self.party == 0:
            z1 ^= e & f1
        g_next = odd_bits(g ^ z1, width)
        if not both:
            return g_next, np.zeros_like(g_next)
        e1 = e << _ONE
        z2 = cs[1] ^ (e & (a << _ONE)) ^ (e1 & a)
        if self.party == 0:
            z2 ^= e & e1
        return g_next, odd_bits(z2, width)

    async def _open_pair(self, u: Ring, v: Ring, width: int) -> tuple[Ring, Ring]:
        """XOR-open two arrays of ``width``-bit values, sent in the narrowest words."""
        if 2 * width > 64:  # two words, each as narrow as it can be
            dt = word_dtype(width)
            e, f = await self._exchange("carry", [u.astype(dt), v.astype(dt)], dtype=dt)
            return u ^ e.astype(np.uint64), v ^ f.astype(np.uint64)
        w = np.uint64(width)
        both = (u << w) | v
        dt = word_dtype(2 * width)
        (other,) = await self._exchange("carry", [both.astype(dt)], dtype=dt)
        opened = both ^ other.astype(np.uint64)
        return opened >> w, opened & low_mask(width)

    async def lt(self, x: Secret, y: Secret) -> Secret:
        return await self.ltz(self.sub(x, y))

    async def gt(self, x: Secret, y: Secret) -> Secret:
        return await self.ltz(self.sub(y, x))

    async def ge(self, x: Secret, y: Secret) -> Secret:
        return self.one_minus(await self.lt(x, y))

    async def le(self, x: Secret, y: Secret) -> Secret:
        return self.one_minus(await self.gt(x, y))

    def one_minus(self, b: Secret) -> Secret:
        """1 - b for an integer secret bit."""
        one = _ONE if self.party == 0 else np.uint64(0)
        return Secret(one - b.share, 0)

    async def sign(self, x: Secret) -> Secret:
        """-1, or 1 (0 counts as positive), as an integer secret."""
        neg = await self.ltz(x)
        one = _ONE if self.party == 0 else np.uint64(0)
        return Secret(one - np.uint64(2) * neg.share, 0)

    async def where(self, b: Secret, x: Secret, y: Secret) -> Secret:
        """``x`` where the secret bit ``b`` is 1, else ``y`` (one multiplication)."""
        d = self.sub(x, y)
        return self.add(y, await self.mul(b, d))

    async def maximum(self, x: Secret, y: Secret) -> Secret:
        x, y = self._align(x, y)
        return self.add(y, await self.select(await self.ltz_bit(self.sub(y, x)), self.sub(x, y)))

    async def minimum(self, x: Secret, y: Secret) -> Secret:
        x, y = self._align(x, y)
        return self.add(y, await self.select(await self.ltz_bit(self.sub(x, y)), self.sub(x, y)))

    async def relu(self, x: Secret) -> Secret:
        return await self.select(self.not_bit(await self.ltz_bit(x)), x)

    async def abs(self, x: Secret) -> Secret:
        return await self.mul(await self.sign(x), x)

    async def max(self, x: Secret, axis: int = 0) -> Secret:
        """The maximum along ``axis`` by a tree of comparisons (log2 n rounds of them)."""
        return await self._reduce(x, axis, self.maximum)

    async def min(self, x: Secret, axis: int = 0) -> Secret:
        return await self._reduce(x, axis, self.minimum)

    async def _reduce(self, x: Secret, axis: int, op: object) -> Secret:
        share = np.moveaxis(x.share, axis, 0)
        cur = Secret(share, x.frac)
        while cur.shape[0] > 1:
            n = cur.shape[0]
            half = n // 2
            a, b = cur[:half], cur[half : 2 * half]
            best = await op(a, b)  # type: ignore[operator]
            if n % 2:
                best = Secret(np.concatenate([best.share, cur.share[2 * half :]]), best.frac)
            cur = best
        return Secret(cur.share[0], cur.frac)

    async def close(self) -> None:
        await self.provider.close()
