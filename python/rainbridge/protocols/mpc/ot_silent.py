"""The silent source of dealer-free correlated OTs (:mod:`.ot`, ``source="silent"``):
regular-noise LPN compressed by the dual expand-convolute code in the core
(rust/src/silentot.rs, rust/src/exconv.rs), seeded once by IKNP and later by each batch's
own reserve, made in whole batches ahead of use. Security model and costs: :mod:`.ot`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.ot_kernels import KAPPA

#: correlated OTs per silent batch: its vectors (32 bytes per OT and side) stay within the
#: last-level cache, where the code's random reads are cheapest (2^20 ran 20% slower per
#: OT), and its tree message is 0.37 byte per OT (0.70 at 2^17)
SILENT_BATCH = 1 << 18
#: the largest silent batch message accepted (a request or the tree sums: 16·(2·t·d + t))
_MAX_MSG = 1 << 20


class SilentPools:
    """This party's two silent streams of correlated OTs: as receiver (random choice bits
    and M) and as sender (K, and Δ), each refilled by whole batches ahead of use. Both
    parties ask for the same counts in the same order, so the refills pair up."""

    def __init__(self, channel: Channel, prefix: str) -> None:
        self.ch = channel
        self.prefix = prefix
        self._r: _core.SilentCotReceiver | None = None
        self._s = _core.SilentCotSender()
        self.delta = np.frombuffer(self._s.delta(), dtype=np.uint64).copy()
        self._bits = np.zeros(0, dtype=np.uint8)
        self._m = np.zeros((0, 2), dtype=np.uint64)
        self._k = np.zeros((0, 2), dtype=np.uint64)
        self._batches = 0
        self.bytes_sent = 0  # this party's share of the batches' own traffic

    async def setup(self) -> None:
        self._r, a = _core.SilentCotReceiver.start()
        tag = f"{self.prefix}/cot"
        _, their_a = await asyncio.gather(self.ch.send(tag + "/a", a), self.ch.recv(tag + "/a"))
        if len(their_a) != 32:
            raise ProtocolViolationError("a silent OT setup must be 32 bytes")
        b = self._s.on_setup(their_a)
        _, their_b = await asyncio.gather(self.ch.send(tag + "/b", b), self.ch.recv(tag + "/b"))
        if len(their_b) != 32 * KAPPA:
            raise ProtocolViolationError("the base OT message must hold 128 points")
        u = self._r.on_base(their_b)
        _, their_u = await asyncio.gather(self.ch.send(tag + "/u", u), self.ch.recv(tag + "/u"))
        try:
            self._s.on_matrix(their_u)
        except ValueError as e:
            raise ProtocolViolationError(f"silent OT setup: {e}") from None
        self.bytes_sent += len(a) + len(b) + len(u)

    async def ensure(self, recv: int, send: int) -> None:
        """Batches until the receiving pool holds ``recv`` OTs and the sending ``send``.

        The channel keeps order, so both streams step in lockstep: each round this party
        sends its request (if its receiving pool is short), reads the other's (if its
        sending pool is short), answers it, and reads the answer to its own. The other
        party's counts are this party's swapped, so the rounds pair up."""
        assert self._r is not None, "setup() first"
        bits, ms, ks = [self._bits], [self._m], [self._k]
        have_r, have_s = len(self._bits), len(self._k)
        while have_r < recv or have_s < send:
            tag = f"{self.prefix}/cot/{self._batches}"
            self._batches += 1
            want_r, want_s = have_r < recv, have_s < send
            req = None
            if want_r:
                req = self._r.request(SILENT_BATCH)  # whole batches: the rest serves later
                await self.ch.send(tag + "/q", req)
            if want_s:
                their_req = await self.ch.recv(tag + "/q")
                if len(their_req) > _MAX_MSG:
                    raise ProtocolViolationError("an oversized silent OT request")
                # both ask for whole batches of SILENT_BATCH: any other size would cost a
                # batch's work per round for what it serves (one OT a round: a batch per OT)
                if int.from_bytes(bytes(their_req[:8]), "little") != SILENT_BATCH:
                    raise ProtocolViolationError(
                        f"a silent OT request for other than a batch of {SILENT_BATCH}"
                    )
                try:
                    trees, keys = self._s.on_request(their_req)
                except ValueError as e:
                    raise ProtocolViolationError(f"silent OT request: {e}") from None
                await self.ch.send(tag + "/t", trees)
                rows = np.frombuffer(keys, dtype=np.uint64).reshape(-1, 2)
                ks.append(rows)
                have_s += len(rows)
                self.bytes_sent += len(trees)
            if want_r:
                assert req is not None
                answer = await self.ch.recv(tag + "/t")
                if len(answer) > _MAX_MSG:
                    raise ProtocolViolationError("an oversized silent OT message")
                try:
                    packed, m_rows = self._r.on_trees(answer)
                except ValueError as e:
                    raise ProtocolViolationError(f"silent OT batch: {e}") from None
                b = np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")
                bits.append(b[:SILENT_BATCH])
                ms.append(np.frombuffer(m_rows, dtype=np.uint64).reshape(-1, 2))
                have_r += SILENT_BATCH
                self.bytes_sent += len(req)
        if len(bits) > 1:
            self._bits, self._m = np.concatenate(bits), np.concatenate(ms)
        if len(ks) > 1:
            self._k = np.concatenate(ks)

    def choose(self, r: npt.NDArray[np.uint8], m: int) -> tuple[Any, Any]:
        """The flips for the next m random OTs to become those of the packed choice bits r
        (to send), and their rows M."""
        flips = np.packbits(self._bits[:m], bitorder="little") ^ r
        rows = self._m[:m]
        self._bits, self._m = self._bits[m:], self._m[m:]
        return flips, rows

    def sender_rows(self, flips: npt.NDArray[np.uint8], m: int) -> Any:
        """The next m keys, each turned by the receiver's flip: K ⊕ flip·Δ."""
        k = self._k[:m]
        self._k = self._k[m:]
        f = np.unpackbits(flips, count=m, bitorder="little").astype(np.uint64)
        return k ^ (f[:, None] * self.delta[None, :])
