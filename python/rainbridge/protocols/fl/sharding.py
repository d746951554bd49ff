"""Row blocks: SecureBoost's homomorphic work and a tree model's batch scoring spread over a
party's compute engine (:mod:`rainbridge.compute`), with results identical to one call.

A party whose engine shards (``ray``: tasks on a cluster inside the party) cuts its rows into
blocks of at most ``max(2^14, rows / (4 · workers))`` (evened out) and runs one task per
block:

* the label party's encryption of packed gradients (row by row, so the blocks' ciphertexts
  concatenated are laid out exactly as one call's: the peer cannot tell), and its decryption
  of histograms by blocks of ciphertexts;
* a feature party's encrypted histograms: each task sums its block's ciphertexts per (node,
  feature, bin) without re-randomising, then tasks over chunks of cells (a range of (node,
  feature, bin) cells, so no task holds every block's whole histogram) add the blocks' sums
  and re-randomise them once. Only the re-randomised total leaves the party, as with one
  call; decryption of a sum is exact, so the trees are the same;
* any party's leaf marks (its own splits) for scoring, by blocks of rows.

A single block runs in the job worker as one call (the engine buys nothing for it). The
local engine never shards: the core already spreads one call over this machine's cores.

Tasks are module-level functions of bytes and numpy arrays (a Ray task pickles its
arguments; the core's objects do not travel): keys go as their bytes.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from rainbridge._core import OuPublicKey, OuSecretKey
from rainbridge.errors import ConfigError
from rainbridge.protocols.fl.trees import TreePart, leaf_marks

T = TypeVar("T")
#: rows (or ciphertexts) a block may hold before more blocks are cut: smaller blocks would
#: cost more in a task's start and its arguments' transfer than they save
MIN_BLOCK = 1 << 14
#: the smallest chunk of histogram cells one reducing task adds up
MIN_CHUNK = 1 << 10
#: times a map is run again after the engine lost one of its tasks (a worker or machine died)
LOST_TASK_RETRIES = 2
#: bytes of one Okamoto–Uchiyama ciphertext on the wire
CT_BYTES = 256


class TaskEngine(Protocol):
    """What sharding needs of a compute engine (:class:`rainbridge.compute.ComputeEngine`
    has it; protocols sit below the compute layer, so they name only this)."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> int: ...

    async def map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]: ...

    def lost_task(self, exc: BaseException) -> bool: ...


def block_size(rows: int, workers: int, minimum: int = MIN_BLOCK) -> int:
    """Rows per block: about four blocks per worker, never fewer than ``minimum`` rows."""
    if minimum < 1:
        raise ConfigError("a block holds at least one row")
    return max(minimum, -(-rows // (4 * max(1, workers))))


def row_blocks(rows: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the fewest consecutive blocks of at most ``size`` rows that cover
    ``rows``, evened out (sizes differ by one at most: no short last block leaves a worker
    idle); none for no rows, none empty."""
    if size < 1:
        raise ConfigError("a block holds at least one row")
    count = -(-rows // size)
    if not count:
        return []
    base, extra = divmod(rows, count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + base + (i < extra))
    return list(itertools.pairwise(bounds))


# -- tasks (run on the engine's workers) --------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _public_key(data: bytes) -> OuPublicKey:
    # building a key's fixed-base tables costs as much as encrypting thousands of rows: a
    # worker keeps the few it last used (public keys only)
    return OuPublicKey.from_bytes(data)


def encrypt_block(pk: bytes, values: npt.NDArray[np.int64], slots: int, slot_bits: int) -> bytes:
    """One block's rows of packed signed integers, encrypted (one ciphertext per row)."""
    return _public_key(pk).encrypt_packed(np.ascontiguousarray(values), slots, slot_bits)


def encrypt_block_secret(
    sk: bytes, values: npt.NDArray[np.int64], slots: int, slot_bits: int
) -> bytes:
    """:func:`encrypt_block` by the key owner: by CRT, about twice as fast, the very
    ciphertexts the public key gives (the feature party cannot tell)."""
    # not cached, as in decrypt_block: the secret key lives no longer than the task
    key = OuSecretKey.from_bytes(sk)
    return key.encrypt_packed(np.ascontiguousarray(values), slots, slot_bits)


def decrypt_block(sk: bytes, data: bytes, slots: int, slot_bits: int, frac_bits: int) -> bytes:
    """One block of packed ciphertexts decrypted to float64 slots."""
    # not cached: the secret key stays in a worker no longer than the task that uses it
    return OuSecretKey.from_bytes(sk).decrypt_packed(data, slots, slot_bits, frac_bits)


def histogram_block(
    pk: bytes, cts: bytes, bins: npt.NDArray[np.uint8], features: int,
    node_of_row: npt.NDArray[np.int32], nodes: npt.NDArray[np.int32], n_bins: int,
) -> bytes:  # fmt: skip
    """One block's encrypted sums per (node, feature, bin), not re-randomised: they stay in
    the party until :func:`sum_chunk` has added every block's and re-randomised the total."""
    return (
        _public_key(pk)
        .load(cts)
        .histogram(
            np.ascontiguousarray(bins),
            features,
            np.ascontiguousarray(node_of_row, dtype="<i4"),
            np.ascontiguousarray(nodes, dtype="<i4"),
            n_bins,
            rerandomize=False,
        )
    )


def sum_chunk(pk: bytes, parts: Sequence[bytes]) -> bytes:
    """The homomorphic sum of equally long ciphertext buffers, re-randomised (what leaves the
    party must not show which ciphertexts it sums)."""
    key = _public_key(pk)
    total = parts[0]
    for part in parts[1:]:
        total = key.add(total, part)
    return key.rerandomize(total)


def marks_block(trees: Sequence[TreePart], x: npt.NDArray[np.float64]) -> bytes:
    """One block's leaf marks (:func:`rainbridge.protocols.fl.trees.leaf_marks`)."""
    return leaf_marks(trees, x)


# -- the party's side ---------------------------------------------------------------------------


@dataclass
class RowShards:
    """A party's row-block work on a sharding engine; ``minimum``: see :func:`block_size`."""

    engine: TaskEngine
    minimum: int = MIN_BLOCK

    def blocks(self, rows: int) -> list[tuple[int, int]]:
        return row_blocks(rows, block_size(rows, self.engine.workers, self.minimum))

    async def _map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]:
        # the tasks are pure: a map whose worker or machine was lost is run again whole (the
        # engine does not retry, its other callers speak to a peer); what else fails, fails
        retries = 0
        while True:
            try:
                return await self.engine.map(fn, items)
            except Exception as exc:
                if retries == LOST_TASK_RETRIES or not self.engine.lost_task(exc):
                    raise
                retries += 1

    async def encrypt_packed(
        self,
        key: OuPublicKey | OuSecretKey,
        values: npt.NDArray[np.int64],
        slots: int,
        slot_bits: int,
    ) -> bytes:
        """``key.encrypt_packed(values, slots, slot_bits)`` (``values``: rows × slots); a
        secret key (the key owner's) goes only to this party's own workers, as in
        :meth:`decrypt_packed`."""
        spans = self.blocks(len(values))
        if not spans:
            return b""  # no rows: no ciphertexts (the core takes no empty int64 matrix)
        if len(spans) == 1:
            return await asyncio.to_thread(key.encrypt_packed, values, slots, slot_bits)
        task = encrypt_block_secret if isinstance(key, OuSecretKey) else encrypt_block
        raw = key.to_bytes()
        items = [(raw, values[lo:hi], slots, slot_bits) for lo, hi in spans]
        return b"".join(await self._map(task, items))

    async def decrypt_packed(
        self, sk: OuSecretKey, data: bytes, slots: int, slot_bits: int, frac_bits: int
    ) -> bytes:
        """``sk.decrypt_packed(data, slots, slot_bits, frac_bits)``."""
        if len(data) % CT_BYTES:
            # one call refuses it with the core's own message
            return await asyncio.to_thread(sk.decrypt_packed, data, slots, slot_bits, frac_bits)
        spans = self.blocks(len(data) // CT_BYTES)
        if len(spans) <= 1:
            return await asyncio.to_thread(sk.decrypt_packed, data, slots, slot_bits, frac_bits)
        # the secret key's bytes go only to the party's own workers (a Ray cluster inside its
        # private network: rainbridge.compute), never over the link to a peer
        key = sk.to_bytes()
        view = memoryview(data)
        items = [
            (key, bytes(view[lo * CT_BYTES : hi * CT_BYTES]), slots, slot_bits, frac_bits)
            for lo, hi in spans
        ]
        return b"".join(await self._map(decrypt_block, items))

    async def histogram(
        self, pk: OuPublicKey, cts: npt.NDArray[np.uint8], bins: npt.NDArray[np.uint8],
        features: int, node_of_row: npt.NDArray[np.int32], nodes: npt.NDArray[np.int32],
        n_bins: int,
    ) -> bytes:  # fmt: skip
        """``pk.load(cts).histogram(bins, features, node_of_row, nodes, n_bins)``, re-randomised
        as one call's; ``cts`` is rows × 256 bytes, ``bins`` rows × features."""
        nodes = np.ascontiguousarray(nodes, dtype="<i4")
        # rows outside the asked nodes add nothing: neither shipped nor summed
        take = np.flatnonzero(np.isin(node_of_row, nodes))
        if len(take) < len(node_of_row):
            cts, bins, node_of_row = cts[take], bins[take], node_of_row[take]
        spans = self.blocks(len(node_of_row))
        if len(spans) <= 1:
            return await asyncio.to_thread(
                _whole_histogram, pk, cts, bins, features, node_of_row, nodes, n_bins
            )
        key = pk.to_bytes()
        items = [
            (
                key,
                np.ascontiguousarray(cts[lo:hi]).tobytes(),
                np.ascontiguousarray(bins[lo:hi]),
                features,
                np.ascontiguousarray(node_of_row[lo:hi], dtype="<i4"),
                nodes,
                n_bins,
            )
            for lo, hi in spans
        ]
        parts = await self._map(histogram_block, items)
        cells = len(nodes) * features * n_bins
        chunk = max(MIN_CHUNK, -(-cells // (2 * max(1, self.engine.workers))))
        views = [memoryview(p) for p in parts]
        sums = [
            (key, [bytes(v[lo * CT_BYTES : hi * CT_BYTES]) for v in views])
            for lo, hi in row_blocks(cells, chunk)
        ]
        return b"".join(await self._map(sum_chunk, sums))

    async def leaf_marks(self, trees: Sequence[TreePart], x: npt.NDArray[np.float64]) -> bytes:
        """:func:`rainbridge.protocols.fl.trees.leaf_marks` by blocks of rows."""
        spans = self.blocks(len(x))
        if len(spans) <= 1:
            return await asyncio.to_thread(leaf_marks, trees, x)
        items = [(list(trees), np.ascontiguousarray(x[lo:hi])) for lo, hi in spans]
        return b"".join(await self._map(marks_block, items))


def _whole_histogram(
    pk: OuPublicKey, cts: npt.NDArray[np.uint8], bins: npt.NDArray[np.uint8], features: int,
    node_of_row: npt.NDArray[np.int32], nodes: npt.NDArray[np.int32], n_bins: int,
) -> bytes:  # fmt: skip
    return pk.load(np.ascontiguousarray(cts).tobytes()).histogram(
        np.ascontiguousarray(bins),
        features,
        np.ascontiguousarray(node_of_row, dtype="<i4"),
        nodes,
        n_bins,
    )


def row_shards(engine: TaskEngine | None, minimum: int | None = None) -> RowShards | None:
    """The row-block runner for ``engine``, or None where the work stays one call (no engine,
    or the local one)."""
    if engine is None or engine.name != "ray":
        return None
    return RowShards(engine, MIN_BLOCK if minimum is None else minimum)
