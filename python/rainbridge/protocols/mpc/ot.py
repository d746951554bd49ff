"""Dealer-free correlated randomness: silent correlated OT and Gilboa products.

Security model: semi-honest, two parties and nobody else. Each party is the receiver of
one stream of correlated OTs and the sender of the other, from one of two sources:

- ``source="iknp"`` (the default): IKNP extension (Ishai, Kilian, Nissim, Petrank 2003) of
  128 Chou-Orlandi base OTs; the receiver sends 16 bytes per OT. Cheapest in computation,
  so fastest on a fast link (loopback, a LAN).
- ``source="silent"``: silent correlated OT from the core (rust/src/silentot.rs):
  regular-noise LPN compressed by the dual expand-convolute code (Boyle et al. 2019,
  Raghuraman, Rindal and Tanguy 2023), seeded once by IKNP and later by each batch's own
  reserve (Ferret's bootstrapping, Yang et al. 2020). Batches of
  :data:`.ot_silent.SILENT_BATCH` are made ahead of use, and the receiver turns a random OT
  into the one it needs with one bit (its random choice XOR the wanted one): 1 bit plus
  0.37 byte of batch traffic per OT instead of 16 bytes, for about three times IKNP's
  computation per OT. docs/BENCHMARKS.md says where each source is faster.

Either way the random OTs are hashed with a tweakable correlation-robust hash made of
fixed-key AES (Guo et al. 2020).

The batch work (the IKNP expansion and its bit transposition, the hash, Gilboa's sums and
trimmed corrections) runs in the core (rust/src/gilboa.rs, ``kernels="core"``, the default).
The numpy functions of :mod:`.ot_kernels` (``kernels="numpy"``) are the reference it is
tested against: both give byte-identical messages and shares on the same inputs, so the wire
format does not depend on which one a party runs.

A product of two private values ``x`` (one party's) and ``y`` (the other's) is then shared
with Gilboa's method: one correlated OT per bit of ``x`` — the receiver chooses by the bit,
the sender's two messages differ by ``y`` modulo ``2^(64-k)`` for bit ``k`` (its share is
scaled by ``2^k``) — so neither learns the other's value. Everything the engine's dealer
provided (:mod:`.correlated`) is built from such products between uniformly random values
each party draws itself: Beaver triples, matrix triples, masks for products of private
matrices, and the XOR-shared masks of comparison circuits. What the transcript reveals:
nothing but the sizes of the batches, which follow from the program.

Cost: 64 random OTs per arithmetic product of 64-bit words, 1 per product of a bit with a
word, 64 per bitwise AND of words. One OT of a GF(2) product ANDs its chosen bit with one
bit of each of up to 64 words, each padded by another bit of the same hash output (pseudo-
random as a whole), so a comparison's carry tree, whose gates come in pairs sharing an
input, costs one OT per pair: 191 per comparison. Products of the private values themselves
(one party's matrix with the other's, the AND of the two parties' shares that starts a
comparison) skip the masks: the values choose directly. Per OT the receiver sends 1 bit
(silent) or 16 bytes (IKNP), and the sender its correction: ``ceil((64-k)/8)`` bytes per
word for bit ``k`` of a 64-bit product (288 bytes per product word instead of 512), 1 bit
per word for a bitwise AND; the silent batches add about 0.1 MB per 2^18 OTs. See
docs/BENCHMARKS.md for what that costs against the dealer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.bits import deposit_odd, even_bits, low_mask, odd_bits
from rainbridge.protocols.mpc.correlated import Provider, Shape
from rainbridge.protocols.mpc.ot_kernels import (
    KAPPA,
    _choice_bits_core,
    _CoreHash,
    _gilboa_receive_core,
    _gilboa_send_core,
    _Hash,
    _IknpReceiverCore,
    _IknpReceiverReference,
    _IknpSenderCore,
    _IknpSenderReference,
    _trimmed_bytes,
    add128,
    choice_bits_reference,
    gilboa_receive_reference,
    gilboa_send_reference,
    neg128,
    sub128,
)
from rainbridge.protocols.mpc.ot_silent import SilentPools
from rainbridge.protocols.mpc.prg import Prg, new_seed
from rainbridge.protocols.mpc.ring import Ring, byte_view

#: random OTs per extension batch (bounds the transposition's memory: 16 · 8 bytes per OT)
MAX_BATCH = 1 << 20


class OtExtension:
    """One party's two ends of IKNP: as receiver (it chooses) and as sender, each towards
    the other party, so that both can multiply their private values in one exchange."""

    def __init__(
        self, channel: Channel, prefix: str = "ot", source: str = "iknp", kernels: str = "core"
    ) -> None:
        if source not in ("silent", "iknp"):
            raise ValueError(f"no OT source {source!r}: 'silent' or 'iknp'")
        if kernels not in ("core", "numpy"):
            raise ValueError(f"no OT kernels {kernels!r}: 'core' or 'numpy' (the reference)")
        self.ch = channel
        self.prefix = prefix  # a second extension on the same channel takes another
        self.source = source
        self.kernels = kernels
        core = kernels == "core"
        self._hash: Any = _CoreHash() if core else _Hash()
        self._choice_bits = _choice_bits_core if core else choice_bits_reference
        self._gilboa_send = _gilboa_send_core if core else gilboa_send_reference
        self._gilboa_receive = _gilboa_receive_core if core else gilboa_receive_reference
        self._step = 0
        self._recv: _IknpReceiverCore | _IknpReceiverReference | None = None
        self._send: tuple[_IknpSenderCore | _IknpSenderReference, npt.NDArray[np.uint64]] | None = (
            None
        )
        self._silent: SilentPools | None = None
        self._recv_count = 0
        self._send_count = 0
        self.random_ots = 0

    async def setup(self) -> None:
        """128 base OTs each way (this party is the base-OT sender for its receiving end),
        then, silent, the first reserve of correlated OTs each way."""
        if self.source == "silent":
            self._silent = SilentPools(self.ch, self.prefix)
            await self._silent.setup()
            return
        secret, msg = _core.baseot_sender_setup()
        (their_a,) = await self._swap_bytes(f"{self.prefix}/base-a", msg)
        s = np.frombuffer(new_seed(), dtype=np.uint8)
        choices = np.unpackbits(s, bitorder="little")
        b_msgs, chosen = _core.baseot_receiver(their_a, choices.tobytes())
        (their_b,) = await self._swap_bytes(f"{self.prefix}/base-b", b_msgs)
        k0, k1 = _core.baseot_sender_keys(secret, their_b)
        delta = np.packbits(choices, bitorder="little").view(np.uint64).copy()
        if self.kernels == "core":
            self._recv = _IknpReceiverCore(k0, k1)
            self._send = (_IknpSenderCore(chosen, choices), delta)
        else:
            self._recv = _IknpReceiverReference(k0, k1)
            self._send = (_IknpSenderReference(chosen, choices), delta)

    async def _swap_bytes(self, tag: str, mine: bytes) -> list[bytes]:
        _, theirs = await asyncio.gather(self.ch.send(tag, mine), self.ch.recv(tag))
        if len(theirs) > 32 * KAPPA:
            raise ProtocolViolationError("an oversized base OT message")
        return [theirs]

    # -- one exchange: this party receives for ``x`` and sends for ``y`` ----------------------

    async def products(
        self,
        x: Ring | None,
        y: Ring | None,
        *,
        bits: int,
        words: int,
        their_n: int,
        gf2: bool = False,
    ) -> tuple[Ring | None, Ring | None]:
        """Shares of products of private values, both directions in one exchange.

        x : (N,) uint64 or None
            This party's values; it receives, choosing by their low ``bits`` bits.
        y : (their_n, words) uint64 or None
            This party's vectors, one per value of the other party's x.
        Returns (U, V): this party's shares of ``x_i · y_other_i`` (N, words) and of
        ``x_other_i · y_i`` (their_n, words); additive, or XOR for ``gf2``: bit k of a
        share word is the AND of x's bit k with bit k of that word of y (one OT per bit of
        x serves all ``words``, at most 64).
        """
        if gf2 and words > 64:
            raise ValueError(f"a GF(2) product carries at most 64 words per OT, not {words}")
        n = 0 if x is None else len(x)
        # MAX_BATCH OTs, or fewer where each hashes several words: a batch's pads stay
        # within 8 · MAX_BATCH bytes
        step = max(1, MAX_BATCH // (bits * (1 if gf2 else words)))
        us: list[Ring] = []
        vs: list[Ring] = []
        for start in range(0, max(n, their_n), step):
            xs = None if x is None or start >= n else x[start : start + step]
            ys = None if y is None or start >= their_n else y[start : start + step]
            their = max(0, min(step, their_n - start))
            u, v = await self._batch(xs, ys, bits, words, their, gf2)
            if u is not None:
                us.append(u)
            if v is not None:
                vs.append(v)
        u_all = (
            np.concatenate(us)
            if us
            else (np.zeros((0, words), np.uint64) if x is not None else None)
        )
        v_all = (
            np.concatenate(vs)
            if vs
            else (np.zeros((0, words), np.uint64) if y is not None else None)
        )
        return u_all, v_all

    def _ready(self) -> None:
        if self._silent is None and (self._recv is None or self._send is None):
            raise RuntimeError("OtExtension.setup() first")

    def _delta(self) -> npt.NDArray[np.uint64]:
        if self._silent is not None:
            return self._silent.delta
        assert self._send is not None
        return self._send[1]

    def _u_shape(self, m: int) -> tuple[int, ...]:
        """The shape of the receiving end's first message for m OTs."""
        return ((m + 7) // 8,) if self._silent is not None else (KAPPA, (m + 7) // 8)

    def _choose(self, r: npt.NDArray[np.uint8], m: int) -> tuple[Any, Any]:
        """The receiving end's first step for m packed choice bits r: (the message to send,
        the rows the receiver holds: M = K ⊕ choice·Δ). Silent: the flips that turn the next
        random OTs into these; IKNP: u = t ⊕ G(k1) ⊕ r."""
        if self._silent is not None:
            return self._silent.choose(r, m)
        assert self._recv is not None, "setup() first"
        return self._recv.choose(r, m)

    def _sender_rows(self, u_theirs: Any, m: int) -> tuple[Any, int]:
        """The sending end's Q rows for the other party's u, and the index of the first."""
        if self._silent is not None:
            q_rows = self._silent.sender_rows(u_theirs, m)
            first = self._send_count
            self._send_count += m
            return q_rows, first
        assert self._send is not None, "setup() first"
        q_rows = self._send[0].rows(u_theirs, m)
        first = self._send_count
        self._send_count += m
        return q_rows, first

    async def _batch(
        self, x: Ring | None, y: Ring | None, bits: int, words: int, their: int, gf2: bool
    ) -> tuple[Ring | None, Ring | None]:
        self._ready()
        self._step += 1
        tag = f"{self.prefix}/{self._step}"
        m_mine = 0 if x is None else len(x) * bits
        m_theirs = their * bits if y is not None else 0
        if self._silent is not None:
            await self._silent.ensure(m_mine, m_theirs)
        # 1. the receiving end: choices are the bits of x
        t_rows = None
        u_mine = None
        if x is not None and m_mine:
            u_mine, t_rows = self._choose(self._choice_bits(x, bits), m_mine)
        u_theirs = await self._swap(
            tag + "/u", u_mine, self._u_shape(m_theirs) if m_theirs else None, np.uint8
        )
        # 2. the sending end: Q rows, the two messages, the corrections
        d_mine: Any = None
        v = None
        if y is not None and m_theirs:
            assert u_theirs is not None
            q_rows, first = self._sender_rows(u_theirs, m_theirs)
            d_mine, v = self._gilboa_send(q_rows, self._delta(), first, y, bits, words, gf2)
        elif y is not None:
            v = np.zeros((0, words), dtype=np.uint64)
        d_shape = None
        if x is not None and m_mine:
            d_shape = (len(x) * words,) if gf2 else (len(x) * words * _trimmed_bytes(bits),)
        d_theirs = await self._swap(tag + "/d", d_mine, d_shape, np.uint64 if gf2 else np.uint8)
        # 3. the receiving end's shares
        u = None
        if x is not None and m_mine:
            assert t_rows is not None and d_theirs is not None
            first = self._recv_count
            self._recv_count += m_mine
            u = self._gilboa_receive(t_rows, first, x, d_theirs, bits, words, gf2)
        elif x is not None:
            u = np.zeros((0, words), dtype=np.uint64)
        self.random_ots += m_mine
        return u, v

    async def bit_products_wide(
        self, x: Ring | None, y: Ring | None, *, pairs: int, their_n: int
    ) -> tuple[Ring | None, Ring | None]:
        """Shares in Z_2^128 of ``b · y``: b a bit of this party's ``x`` (N,), y a row of
        ``pairs`` 128-bit values (their_n, pairs, 2: low word, high word) of the other's.

        The same correlated OT as :meth:`products` with one bit per value, its pads and
        corrections taken modulo 2^128 (a carry between the two words), so the shares add up
        to the exact product however the sums over them grow. Returns (U, V) of shapes
        (N, pairs, 2) and (their_n, pairs, 2).
        """
        words = 2 * pairs
        n = 0 if x is None else len(x)
        step = MAX_BATCH
        us: list[Ring] = []
        vs: list[Ring] = []
        for start in range(0, max(n, their_n), step):
            xs = None if x is None or start >= n else x[start : start + step]
            ys = None if y is None or start >= their_n else y[start : start + step]
            their = max(0, min(step, their_n - start))
            u, v = await self._batch_wide(xs, ys, words, their)
            if u is not None:
                us.append(u)
            if v is not None:
                vs.append(v)
        empty = np.zeros((0, pairs, 2), np.uint64)
        u_all = (np.concatenate(us) if us else empty) if x is not None else None
        v_all = (np.concatenate(vs) if vs else empty) if y is not None else None
        return u_all, v_all

    async def _batch_wide(
        self, x: Ring | None, y: Ring | None, words: int, their: int
    ) -> tuple[Ring | None, Ring | None]:
        self._ready()
        self._step += 1
        tag = f"{self.prefix}/{self._step}"
        t_rows = None
        u_mine = None
        m_mine = 0 if x is None else len(x)
        if self._silent is not None:
            await self._silent.ensure(m_mine, their if y is not None else 0)
        if x is not None and m_mine:
            r = np.packbits((x & np.uint64(1)).astype(np.uint8), bitorder="little")
            u_mine, t_rows = self._choose(r, m_mine)
        u_theirs = await self._swap(
            tag + "/u",
            u_mine,
            self._u_shape(their) if their and y is not None else None,
            np.uint8,
        )
        d_mine = None
        v = None
        if y is not None and their:
            assert u_theirs is not None
            delta = self._delta()
            q_rows, first = self._sender_rows(u_theirs, their)
            m0 = self._hash(q_rows, first, words).reshape(their, -1, 2)
            m1 = self._hash(q_rows ^ delta[None, :], first, words).reshape(their, -1, 2)
            ys = np.asarray(y, dtype=np.uint64).reshape(their, -1, 2)
            d_mine = sub128(add128(m0, ys), m1)  # m1 + d = m0 + y, modulo 2^128
            v = neg128(m0)
        elif y is not None:
            v = np.zeros((0, words // 2, 2), dtype=np.uint64)
        d_theirs = await self._swap(
            tag + "/d",
            d_mine,
            (len(x), words // 2, 2) if x is not None and m_mine else None,
            np.uint64,
        )
        u = None
        if x is not None and m_mine:
            assert t_rows is not None and d_theirs is not None
            first = self._recv_count
            self._recv_count += m_mine
            mc = self._hash(t_rows, first, words).reshape(m_mine, -1, 2)
            xb = (x & np.uint64(1)).astype(bool)
            u = mc.copy()
            u[xb] = add128(mc[xb], d_theirs[xb])
        elif x is not None:
            u = np.zeros((0, words // 2, 2), dtype=np.uint64)
        self.random_ots += m_mine
        return u, v

    async def _swap(
        self, tag: str, mine: Any, their_shape: tuple[int, ...] | None, dtype: Any
    ) -> Any:
        out = None if their_shape is None else np.empty(their_shape, dtype=dtype)
        jobs: list[Coroutine[Any, Any, Any]] = []
        if mine is not None:
            jobs.append(self.ch.send(tag, byte_view(np.ascontiguousarray(mine))))
        if out is not None:
            jobs.append(self.ch.recv_into(tag, byte_view(out)))
        got = await asyncio.gather(*jobs)
        if out is not None and got[-1] != out.nbytes:
            raise ProtocolViolationError(
                f"the other party sent {got[-1]} bytes for {tag}, expected {out.nbytes}"
            )
        return out


def _ready(value: list[Ring]) -> Callable[[], Awaitable[list[Ring]]]:
    """A ``finish`` for correlations that are already there."""

    async def finish() -> list[Ring]:
        return value

    return finish


class OtProvider(Provider):
    """Correlated randomness the two parties make together (no dealer): :class:`OtExtension`
    products between masks each party draws itself. Both parties call the same methods in
    the same order (they run the same program); call :meth:`setup` first."""

    direct_products = True

    def __init__(
        self, party: int, channel: Channel, source: str = "iknp", kernels: str = "core"
    ) -> None:
        self.party = party
        self.ot = OtExtension(channel, source=source, kernels=kernels)
        self.prg = Prg(new_seed())  # this party's own randomness

    async def setup(self) -> None:
        await self.ot.setup()

    def _rand(self, shape: Shape) -> Ring:
        return self.prg.ring(shape)

    async def _both(
        self, x: Ring, y: Ring, *, gf2: bool = False, bits: int = 64
    ) -> tuple[Ring, Ring]:
        """Shares of x_me · y_other and of x_other · y_me: x (N,), y (N, words) at both."""
        u, v = await self.ot.products(x, y, bits=bits, words=y.shape[1], their_n=len(x), gf2=gf2)
        assert u is not None and v is not None
        return u, v

    async def begin_triple(self, kind: str, a: Shape, b: Shape) -> tuple[Ring, Ring, Any]:
        if kind == "mul":
            x, y = self._rand(a), self._rand(a)
            u, v = await self._both(x.reshape(-1), y.reshape(-1, 1))
            c = x * y + (u + v).reshape(a)
        elif kind == "matmul":
            n, k = a
            m = b[1]
            x, y = self._rand(a), self._rand(b)
            rows = y[np.tile(np.arange(k), n)]  # the row of y each entry of x multiplies
            u, v = await self._both(x.reshape(-1), rows)
            c = x @ y + (u + v).reshape(n, k, m).sum(axis=1, dtype=np.uint64)
        else:
            raise ProtocolViolationError(f"no {kind!r} triples without a dealer")

        async def finish() -> Ring:
            return c

        return x, y, finish

    async def cross(self, left: int, a: Shape, b: Shape) -> tuple[Ring, Ring]:
        p, n = a
        q = b[1]
        if self.party == left:
            r = self._rand(a)
            u, _ = await self.ot.products(r.reshape(-1), None, bits=64, words=q, their_n=0)
            assert u is not None
            return r, u.reshape(p, n, q).sum(axis=1, dtype=np.uint64)
        s = self._rand(b)
        _, v = await self.ot.products(
            None, s[np.tile(np.arange(n), p)], bits=64, words=q, their_n=p * n
        )
        assert v is not None
        return s, v.reshape(p, n, q).sum(axis=1, dtype=np.uint64)

    def _right_chooses(self, shape: tuple[int, int, int], bits: int, y_bits: int = 64) -> bool:
        """Whether a product of private matrices is cheaper on the wire with the right
        party choosing by the ``y_bits`` bits of each of its entries (the left sending
        columns of X) than with the left choosing by ``bits`` of each of X's: a public rule,
        the same at both parties. IKNP's chooser sends 16 bytes per OT, silent OT's about
        0.82."""
        p, n, q = shape
        per_ot = 16.0 if self.ot.source == "iknp" else 0.82
        by_x = p * n * (bits * per_ot + q * _trimmed_bytes(bits))
        by_y = n * q * (y_bits * per_ot + p * _trimmed_bytes(y_bits))
        return by_y < by_x

    async def direct_cross(
        self,
        left: int,
        x: Any,
        y: Ring | None,
        shape: tuple[int, int, int],
        x_bits: int = 64,
        y_bits: int = 64,
    ) -> Ring | None:
        """X @ Y straight from products of the private entries: for one-hot groups one OT
        per (group, row), a bit times the row's words; ``x_bits`` per entry of a dense X,
        or, where that moves fewer bytes (:meth:`_right_chooses`: a tall X against a
        narrow Y, as a gradient's ``Xᵀe``), ``y_bits`` per entry of Y (unsigned, below
        ``2^y_bits``), each times a column of X.

        A dense X of signed ``x_bits``-bit entries is moved up by ``c = 2^(x_bits-1)`` into
        ``[0, 2^x_bits)``, so the chooser needs only its low bits; the other party takes
        ``c`` times its column sums off its share, which leaves exactly ``X @ Y``."""
        from rainbridge.protocols.mpc.engine import OneHot

        p, n, q = shape
        if self.party == left:
            if x is None:
                raise ProtocolViolationError("the left party must give its matrix")
            if isinstance(x, OneHot):
                dense = np.zeros((p, n), dtype=np.uint64)
                rows = np.flatnonzero(x.keys >= 0)
                dense[x.keys[rows], rows] = 1
                bits = 1
            else:
                dense = np.asarray(x, dtype=np.int64).view(np.uint64)
                if dense.shape != (p, n):
                    raise ProtocolViolationError(f"the left matrix is not of shape {(p, n)}")
                bits = x_bits
            # the other side must know how many bits each entry has: one-hot or not is a
            # public property of the program (the group-by step), told by the first byte;
            # the second says which width of Y this party's program expects
            await self.ot.ch.send("ot/bits", bytes([bits, y_bits]))
            if self._right_chooses(shape, bits, y_bits):
                # the sender's vector for Y[i, j] is column i of X, for every j
                cols = np.repeat(np.ascontiguousarray(dense.T), q, axis=0)
                _, v = await self.ot.products(None, cols, bits=y_bits, words=p, their_n=n * q)
                assert v is not None
                return v.reshape(n, q, p).sum(axis=0, dtype=np.uint64).T.copy()
            if 1 < bits < 64:
                dense = dense + np.uint64(1 << (bits - 1))
            u, _ = await self.ot.products(dense.reshape(-1), None, bits=bits, words=q, their_n=0)
            assert u is not None
            return u.reshape(p, n, q).sum(axis=1, dtype=np.uint64)
        if y is None:
            raise ProtocolViolationError("the right party must give its matrix")
        told = await self.ot.ch.recv("ot/bits")
        if len(told) != 2 or told[0] not in (1, x_bits) or told[1] != y_bits:
            raise ProtocolViolationError("the other party announced a bad entry width")
        bits = told[0]
        if self._right_chooses(shape, bits, y_bits):
            u, _ = await self.ot.products(
                np.ascontiguousarray(y).reshape(-1), None, bits=y_bits, words=p, their_n=0
            )
            assert u is not None
            return u.reshape(n, q, p).sum(axis=0, dtype=np.uint64).T.copy()
        _, v = await self.ot.products(
            None, y[np.tile(np.arange(n), p)], bits=bits, words=q, their_n=p * n
        )
        assert v is not None
        share = v.reshape(p, n, q).sum(axis=1, dtype=np.uint64)
        if 1 < bits < 64:
            share -= np.uint64(1 << (bits - 1)) * y.sum(axis=0, dtype=np.uint64)[None, :]
        return share

    async def pair(self, kind: str, shape: Shape) -> tuple[Ring, Ring]:
        mask = self._rand(shape)
        gf2 = kind == "xand"
        flat = mask.reshape(-1)
        if self.party == 0:  # party 0's mask is the chooser's value, party 1's the sender's
            u, _ = await self.ot.products(flat, None, bits=64, words=1, their_n=0, gf2=gf2)
            assert u is not None
            return mask, u.reshape(shape)
        _, v = await self.ot.products(
            None, flat[:, None], bits=64, words=1, their_n=flat.size, gf2=gf2
        )
        assert v is not None
        return mask, v.reshape(shape)

    async def begin_carry(self, shape: Shape, width: int, both: bool) -> tuple[Ring, Ring, Any]:
        (level,) = await self.begin_carries(shape, [width], [both])
        return level

    async def begin_carries(
        self, shape: Shape, widths: Sequence[int], boths: Sequence[bool]
    ) -> list[tuple[Ring, Ring, Any]]:
        """Every carry level's masks, with products of only the bits each level keeps, in
        one exchange: one OT each way per bit of a level's ``odd(a)`` (``width // 2`` per
        word), which carries both of its gates (with ``even(h)`` and ``even(a)``). The
        levels' choice bits sit side by side in one word per element (63 for a 64-bit
        tree), so the whole tree's correlations cost one exchange, not one per level."""
        halves = [w // 2 for w in widths]
        total = sum(halves)
        if total > 64:
            raise ValueError(f"carry levels of {total} gate pairs do not fit one word")
        n = int(np.prod(shape, dtype=np.int64))
        x = np.zeros(n, dtype=np.uint64)
        y = np.zeros((n, 2), dtype=np.uint64)
        masks = []
        at = 0
        for width, half, both in zip(widths, halves, boths, strict=True):
            keep = low_mask(width)
            a, h = self._rand(shape) & keep, self._rand(shape) & keep
            oa = odd_bits(a, width).reshape(-1)
            off = np.uint64(at)
            x |= oa << off
            y[:, 0] |= even_bits(h, width).reshape(-1) << off
            if both:
                y[:, 1] |= even_bits(a, width).reshape(-1) << off
            masks.append((a, h))
            at += half
        u, v = await self._both(x, y, gf2=True, bits=max(1, total))
        own = (x[:, None] & y) ^ u ^ v  # shares of every level's products, side by side
        levels: list[tuple[Ring, Ring, Any]] = []
        at = 0
        for (a, h), width, half, both in zip(masks, widths, halves, boths, strict=True):
            part = (own >> np.uint64(at)) & low_mask(half)
            cs = [deposit_odd(part[:, i], width).reshape(shape) for i in range(1 + both)]
            levels.append((a, h, _ready(cs)))
            at += half
        return levels

    async def direct_select(self, bit: Ring, x: Ring) -> Ring | None:
        """``(b0 ⊕ b1)·(x0 + x1)`` from one OT each way: ``b·x_j = b_j·x_j + b_i·(1 -
        2·b_j)·x_j`` for the other party i, so each party chooses by its bit ``b_i`` between
        the other's ``0`` and ``(1 - 2·b_j)·x_j`` (a Gilboa product of one bit), and adds
        its own ``b_i·x_i``. The chooser's bit stays hidden by the OT, the sender's
        value by the pad of the message not chosen."""
        b = np.ascontiguousarray(bit, dtype=np.uint64).reshape(-1) & np.uint64(1)
        xs = np.ascontiguousarray(x, dtype=np.uint64).reshape(-1)
        if b.shape != xs.shape:
            raise ValueError(f"a bit share of {bit.shape} for a value of {x.shape}")
        y = (np.uint64(1) - np.uint64(2) * b) * xs  # wraps modulo 2^64: ±x_i
        u, v = await self._both(b, y[:, None], bits=1)
        return (b * xs + u[:, 0] + v[:, 0]).reshape(x.shape)

    async def direct_private(self, kind: str, mine: Ring, bits: int) -> Ring | None:
        """Gilboa's product of the private values themselves: ``bits`` OTs per element and
        no opening (a bit times a word: one). A ring product's chooser is party 0; a
        bitwise AND's bits are split, each party choosing by half of them, so that both
        carry the same share of the work."""
        if kind not in ("xmul", "xand"):
            raise ProtocolViolationError(f"no private {kind!r} products")
        flat = np.ascontiguousarray(mine, dtype=np.uint64).reshape(-1)
        gf2 = kind == "xand"
        if gf2 and bits > 1:
            half = (bits + 1) // 2
            lo = flat & low_mask(half)
            hi = (flat >> np.uint64(half)) & low_mask(bits - half)
            x, y = (lo, hi) if self.party == 0 else (hi, lo)
            mine_x, theirs_x = await self._both(x, y[:, None], gf2=True, bits=half)
            lo_share, hi_share = (mine_x, theirs_x) if self.party == 0 else (theirs_x, mine_x)
            return (lo_share[:, 0] | (hi_share[:, 0] << np.uint64(half))).reshape(mine.shape)
        if self.party == 0:
            u, _ = await self.ot.products(flat, None, bits=bits, words=1, their_n=0, gf2=gf2)
            assert u is not None
            return u.reshape(mine.shape)
        _, v = await self.ot.products(
            None, flat[:, None], bits=bits, words=1, their_n=flat.size, gf2=gf2
        )
        assert v is not None
        return v.reshape(mine.shape)
