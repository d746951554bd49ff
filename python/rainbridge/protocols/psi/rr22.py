"""RR22 PSI for two parties: a VOLE-based OPRF over an OKVS, in the core, bucketed on disk.

The protocol is Raghuraman and Rindal's (CCS 2022), semi-honest variant, run by
:class:`rainbridge._core.Rr22Receiver` / :class:`~rainbridge._core.Rr22Sender`; this module
moves its messages over a :class:`~rainbridge.net.Channel` and keeps memory bounded:

* IDs are read in batches and hashed (SHA-256 under a seed both parties contribute to) to
  16-byte digests. When a party's input would need more than ``memory_limit_mb`` in the
  protocol, the digests (with their row numbers) are spilled to bucket files on disk by a
  keyed function of the digest, identical at both parties, and the buckets are intersected
  one after the other; otherwise everything stays in memory (one bucket).
* In each bucket the *leader* (the first receiver) is the OPRF receiver: it encodes its
  digests in an OKVS masked by a silent VOLE; the other party (the OPRF sender, which holds
  the PRF key ``Δ``) returns the PRF value of each of its digests, truncated to
  ``40 + log2(n_leader) + log2(n_other)`` bits, in a random order. The leader looks its own
  values up among them.
* If the other party is a receiver too, the leader tells it which of the positions it sent
  matched; otherwise it is told only the size.
* With a *payload* (the columns a job names at the party that is not a receiver), the sender
  derives from each PRF value ``v`` a tag ``H(v, 1)``, sent instead of ``v``, and a key
  ``H(v, 2)`` that encrypts (AES-128-CTR) the fixed-width record of the row with that ID
  (:mod:`~rainbridge.protocols.psi.records`). The receiver derives the same tag and key for
  its own IDs, so it opens exactly the records of the common IDs and gets them aligned to
  its rows; the sender learns nothing beyond the size.

Security model
--------------
Semi-honest parties; the OPRF is secure under the dual-LPN assumption for the
expand-convolute code (256 noisy positions, 128-bit security by its authors' estimate),
with fixed-key AES as the correlation-robust hash and SHA-256 as a random oracle; base OTs
under the computational Diffie–Hellman assumption over ristretto255. A malicious party could
deviate undetected (for instance, the sender could use a different Δ per item to learn
nothing more, or the receiver could encode more than its set into the OKVS up to its size):
the malicious variant of RR22 adds a random-oracle check on the OKVS and a consistency check
on the VOLE, and the message flow here leaves room for both.

What it reveals
---------------
* to both: each party's number of distinct IDs per bucket (so the total), the intersection
  size, and how many times the leader's OKVS had to be re-keyed (almost always zero);
* to the receivers: which of their own rows are common;
* nothing about non-common IDs: the sender's values of IDs outside the leader's set are
  pseudorandom to the leader, and the leader's OKVS reaches the sender masked by the VOLE;
* with a payload: its columns' names and types and the longest value of each string column
  (records are padded to one width), and the payload of the common IDs to the receiver only.
  The payload party's IDs must be unique (a receiver's row must get one payload).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge import _core
from rainbridge.errors import DataError, ParameterMismatchError, ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.psi.ecdh import PsiResult, _compare
from rainbridge.protocols.psi.intersect import truncation_bytes
from rainbridge.protocols.psi.items import as_items, to_large_string
from rainbridge.protocols.psi.phases import Phases
from rainbridge.protocols.psi.records import RecordLayout

PROTOCOL = "rr22-psi"
VERSION = 2
#: Bytes of protocol state per item in a bucket (VOLE, OKVS, digests, matching), measured
#: at 2^22 items with some margin; the bound on a bucket's size follows from it.
BYTES_PER_ITEM = 400
#: Distinct IDs per bucket and party, exclusive (the core's indices are 32-bit).
_MAX_BUCKET = 1 << 31
#: Records of the spill files: the 16-byte digest and the row number.
_RECORD = np.dtype([("digest", "V16"), ("row", "<i8")])

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class Rr22PsiParams:
    """Parameters both parties must agree on (``memory_limit_mb`` and ``spill_dir`` are local).

    Attributes
    ----------
    receivers : tuple of str, optional
        Parties that learn the intersection; the first (the leader) is the OPRF receiver.
        Default: both.
    memory_limit_mb : int
        Bound on the protocol's working memory; an input needing more is split into buckets
        on disk. Default 2048.
    spill_dir : str, optional
        Where bucket files go (default: the system's temporary directory).
    batch_size : int
        IDs hashed per batch while reading.
    payload_from : str, optional
        The party whose ``payload_columns`` reach the receiver, aligned to its common rows.
        It must be the one party that does not learn the intersection.
    payload_columns : tuple of str
        The columns of ``payload_from``'s payload table that travel (in this order).
    """

    receivers: tuple[str, ...] | None = None
    memory_limit_mb: int = 2048
    spill_dir: str | None = None
    batch_size: int = 1 << 20
    payload_from: str | None = None
    payload_columns: tuple[str, ...] = ()


@dataclass
class IdBatches:
    """A stream of ID arrays with its total length known up front (e.g. from file metadata)."""

    rows: int
    batches: Iterable[pa.Array]


def bucket_count(rows: int, memory_limit_mb: int) -> int:
    """Buckets (a power of two) so that one bucket's state fits in the bound with margin."""
    per_bucket = max(1024, memory_limit_mb * (1 << 20) // BYTES_PER_ITEM)
    # Bucket loads vary (balls into bins): leave a quarter of headroom.
    need = math.ceil(rows * 1.25 / per_bucket)
    return 1 if need <= 1 else 1 << (need - 1).bit_length()


def _config(party: str, peers: Sequence[str], params: Rr22PsiParams) -> dict[str, Any]:
    parties = sorted({party, *peers})
    if len(parties) != 2:
        raise ParameterMismatchError(
            f"RR22 PSI takes exactly two parties (got {len(parties)}); use ecdh for more"
        )
    receivers = list(params.receivers) if params.receivers else parties
    unknown = [r for r in receivers if r not in parties]
    if unknown or not receivers:
        raise ParameterMismatchError(
            f"PSI receivers {unknown or receivers} are not parties of this PSI "
            f"({', '.join(parties)})"
        )
    if params.memory_limit_mb < 16:
        raise ParameterMismatchError("RR22 memory_limit_mb must be at least 16")
    if not 1 <= params.batch_size <= 1 << 24:
        raise ParameterMismatchError("PSI batch_size must be between 1 and 16777216")
    payload = None
    if params.payload_from is not None:
        if params.payload_from not in parties:
            raise ParameterMismatchError(
                f"PSI payload party {params.payload_from!r} is not a party of this PSI"
            )
        if receivers != [p for p in parties if p != params.payload_from]:
            raise ParameterMismatchError(
                "a PSI payload goes to the other party only: the intersection must be "
                f"revealed to that party alone, not to {receivers}"
            )
        cols = list(params.payload_columns)
        if not cols or len(set(cols)) != len(cols):
            raise ParameterMismatchError("PSI payload columns must be named, each once")
        payload = {"from": params.payload_from, "columns": cols}
    elif params.payload_columns:
        raise ParameterMismatchError("PSI payload columns need a payload party")
    return {
        "protocol": PROTOCOL,
        "version": VERSION,
        "parties": parties,
        "receivers": receivers,
        "leader": receivers[0],
        "payload": payload,
    }


def _batches(
    ids: pa.Array | pa.ChunkedArray | IdBatches, size: int
) -> tuple[int, Iterator[pa.Array]]:
    if isinstance(ids, IdBatches):
        return ids.rows, iter(ids.batches)
    arr = to_large_string(ids)

    def gen() -> Iterator[pa.Array]:
        for lo in range(0, len(arr), size):
            yield arr.slice(lo, size)

    return len(arr), gen()


class _Buckets:
    """Digests with their row numbers, in memory (one bucket) or in bucket files on disk."""

    def __init__(self, count: int, spill_dir: str | None, key: bytes) -> None:
        self.count = count
        self.key = np.frombuffer(
            hashlib.sha256(b"rainbridge/rr22/bucket" + key).digest()[:8], "<u8"
        )[0]
        self._mem: list[np.ndarray] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: list[Any] = []
        if count > 1:
            self._dir = tempfile.TemporaryDirectory(prefix="rainbridge-rr22-", dir=spill_dir)
            self._files = [
                open(Path(self._dir.name) / f"{b:05d}.bin", "wb")  # noqa: SIM115
                for b in range(count)
            ]
        self.rows = 0

    def add(self, digests: bytes, first_row: int) -> None:
        n = len(digests) // 16
        if self.count == 1:
            # one bucket: the digests alone, in row order (the row numbers are implicit)
            assert first_row == self.rows
            self._mem.append(np.frombuffer(digests, dtype="V16"))
            self.rows += n
            return
        rec = np.empty(n, dtype=_RECORD)
        rec["digest"] = np.frombuffer(digests, dtype="V16")
        rec["row"] = np.arange(first_row, first_row + n, dtype=np.int64)
        self.rows += n
        # A keyed mix of the digest's first 8 bytes picks the bucket (the same at both).
        low = np.frombuffer(digests, dtype="<u8")[::2]
        with np.errstate(over="ignore"):
            b = ((low ^ self.key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
        b = (b % np.uint64(self.count)).astype(np.int64)
        order = np.argsort(b, kind="stable")
        bounds = np.searchsorted(b[order], np.arange(self.count + 1))
        rec = rec[order]
        for k in range(self.count):
            lo, hi = bounds[k], bounds[k + 1]
            if hi > lo:
                rec[lo:hi].tofile(self._files[k])

    def seal(self) -> None:
        for f in self._files:
            f.close()

    def load(self, k: int) -> np.ndarray:
        """Bucket ``k``: records of :data:`_RECORD`, or with one bucket the digests alone
        (dtype ``V16``), row ``i`` being row number ``i``."""
        if self.count == 1:
            out = np.concatenate(self._mem) if self._mem else np.empty(0, dtype="V16")
            self._mem = []
            return out
        assert self._dir is not None
        path = Path(self._dir.name) / f"{k:05d}.bin"
        out = np.fromfile(path, dtype=_RECORD)
        os.remove(path)
        return out

    def close(self) -> None:
        for f in self._files:
            f.close()
        if self._dir is not None:
            self._dir.cleanup()


async def run_rr22(
    party: str,
    channels: Mapping[str, Channel],
    ids: pa.Array | pa.ChunkedArray | IdBatches,
    params: Rr22PsiParams | None = None,
    *,
    payload: pa.Table | None = None,
    progress: ProgressFn | None = None,
) -> PsiResult:
    """Run this party's role of RR22 PSI (see the module docstring).

    ``payload`` (at ``params.payload_from`` only) holds ``params.payload_columns``, one row
    per ID, in the IDs' order.

    Returns the same :class:`PsiResult` as ECDH-PSI: the intersection size everywhere, the
    ascending row indices of common IDs (every row of a duplicated ID) at the receivers, and
    at the receiver of a payload its records aligned to those indices.
    """
    params = params or Rr22PsiParams()
    t0 = time.perf_counter()
    ph = Phases()
    if len(channels) != 1:
        raise ParameterMismatchError(
            f"RR22 PSI takes exactly two parties (got {len(channels) + 1}); use ecdh for more"
        )
    ((peer, ch),) = channels.items()
    mine = _config(party, [peer], params)
    rows, batches = _batches(ids, params.batch_size)
    my_seed = secrets.token_bytes(16)
    want_buckets = bucket_count(rows, params.memory_limit_mb)
    with ph("hello"):
        await ch.send_json("rr22/hello", {**mine, "seed": my_seed.hex(), "buckets": want_buckets})
        theirs = await ch.recv_json("rr22/hello")
    # the same agreement check as ECDH-PSI, over the fields both must share
    _compare(mine, {k: theirs.get(k) for k in mine} if isinstance(theirs, dict) else theirs, peer)
    try:
        their_seed = bytes.fromhex(str(theirs["seed"]))
        their_buckets = int(theirs["buckets"])
    except (KeyError, ValueError, TypeError):
        raise ProtocolViolationError(f"peer {peer!r} sent a malformed PSI hello") from None
    if (
        len(their_seed) != 16
        or not 1 <= their_buckets <= 1 << 16
        or their_buckets & (their_buckets - 1)
    ):
        raise ProtocolViolationError(f"peer {peer!r} sent an invalid seed or bucket count")
    layout = await _payload_layout(ch, peer, party, mine["payload"], payload, rows)
    first, second = sorted([(party, my_seed), (peer, their_seed)])
    seed = hashlib.sha256(b"rainbridge/rr22/seed" + first[1] + second[1]).digest()
    buckets = _Buckets(max(want_buckets, their_buckets), params.spill_dir, seed)
    leader = mine["leader"] == party
    try:
        done = 0
        for arr in batches:
            with ph("hash"):
                items = as_items(to_large_string(arr))
                dig = await asyncio.to_thread(_core.rr22_digests, seed, items.data, items.offsets)
            with ph("bucket"):
                buckets.add(dig, done)
            done += len(arr)
        buckets.seal()
        if done != rows:
            raise DataError(f"input announced {rows} rows but held {done}")
        stats: dict[str, Any] = {
            "protocol": "rr22",
            "buckets": buckets.count,
            "rows": rows,
            "okvs_retries": 0,
        }
        found: list[np.ndarray] = []
        opened: list[np.ndarray] = []
        size = 0
        for k in range(buckets.count):
            with ph("bucket"):
                rec = buckets.load(k)
            s, rows_k, retries, records = await bucket_role(
                k,
                ch,
                peer,
                seed,
                rec,
                leader,
                party in mine["receivers"],
                peer in mine["receivers"],
                layout,
                payload,
                phases=ph,
            )
            size += s
            stats["okvs_retries"] += retries
            if rows_k is not None:
                found.append(rows_k)
            if records is not None:
                opened.append(records)
            if progress is not None:
                progress((k + 1) / buckets.count)
    finally:
        buckets.close()
    indices = None
    table = None
    t_out = time.perf_counter()
    if party in mine["receivers"]:
        indices = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        indices = indices[order]
        if layout is not None:
            w = layout.width
            records = np.concatenate(opened) if opened else np.zeros((0, w), dtype=np.uint8)
            table = layout.decode(records[order])
            stats["payload_bytes_per_row"] = w
    ph.add("result", time.perf_counter() - t_out)
    stats["intersection"] = size
    stats["phases"] = ph.as_dict()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return PsiResult(size=size, indices=indices, stats=stats, payload=table)


async def _payload_layout(
    ch: Channel,
    peer: str,
    party: str,
    agreed: dict[str, Any] | None,
    payload: pa.Table | None,
    rows: int,
) -> RecordLayout | None:
    """The payload's record layout: the payload party sends it, the receiver checks it."""
    if agreed is None:
        if payload is not None:
            raise ParameterMismatchError("a payload was given, but the PSI names no payload")
        return None
    cols: list[str] = agreed["columns"]
    if agreed["from"] != party:
        return RecordLayout.from_json(await ch.recv_json("rr22/layout"), cols, peer)
    if payload is None:
        raise DataError(f"the PSI payload party {party!r} gave no payload table")
    missing = [c for c in cols if c not in payload.column_names]
    if missing:
        raise DataError(f"the payload has no column {', '.join(map(repr, missing))}")
    if payload.num_rows != rows:
        raise DataError(f"the payload has {payload.num_rows} rows for {rows} IDs")
    layout = RecordLayout.of(payload.select(cols))
    await ch.send_json("rr22/layout", layout.to_json())
    return layout


def _distinct(rec: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Distinct digests of a bucket (16 bytes each, in order of first occurrence) and, per
    record, the index of its digest among them (a hash table in the core)."""
    digests = np.ascontiguousarray(rec["digest"]) if rec.dtype.names else rec
    uniq, group = _core.Rr22Receiver.distinct(digests)
    return uniq, np.frombuffer(group, dtype="<i8")


def _row_numbers(rec: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """The row numbers of the records selected by the boolean mask ``sel``."""
    return rec["row"][sel] if rec.dtype.names else np.flatnonzero(sel).astype(np.int64)


async def bucket_role(
    k: int,
    ch: Channel,
    peer: str,
    seed: bytes,
    rec: np.ndarray,
    leader: bool,
    i_receive: bool,
    peer_receives: bool,
    layout: RecordLayout | None,
    payload: pa.Table | None,
    *,
    phases: Phases | None = None,
) -> tuple[int, np.ndarray | None, int, np.ndarray | None]:
    """One bucket pair at this party (``rec``: its digests and row numbers as
    :data:`_RECORD`, or its digests alone as ``V16`` for rows ``0..n-1``; on ``ch``):
    returns (common distinct IDs, this party's common rows or None, retries, the opened
    payload records of those rows or None). :mod:`rainbridge.compute.psi` runs each bucket
    pair of a large PSI through it as its own session. ``phases`` accumulates the time of
    each step (``wait …`` phases include the peer's computation)."""
    ph = phases if phases is not None else Phases()
    with ph("group"):
        digests, inverse = _distinct(rec)
    n_mine = len(digests) // 16
    if n_mine >= _MAX_BUCKET:
        raise DataError(
            f"an RR22 bucket holds fewer than {_MAX_BUCKET} distinct IDs: lower memory_limit_mb"
        )
    if payload is not None and n_mine != len(rec):
        raise DataError(
            f"the payload party's IDs must be unique: {len(rec) - n_mine} rows repeat an ID "
            "(a receiver's row could not be given one payload)"
        )
    with ph("wait size"):
        await ch.send_json(f"rr22/{k}/size", n_mine)
        n_theirs = await ch.recv_json(f"rr22/{k}/size")
    # The core indexes a bucket's items and OKVS columns with 32 bits (2^31 items per bucket
    # is far past any memory bound; more buckets split a larger input).
    if (
        not isinstance(n_theirs, int)
        or isinstance(n_theirs, bool)
        or not 0 <= n_theirs < _MAX_BUCKET
    ):
        raise ProtocolViolationError(f"peer {peer!r} sent an invalid bucket size")
    n_recv, n_send = (n_mine, n_theirs) if leader else (n_theirs, n_mine)
    width = min(16, truncation_bytes(n_recv, n_send))
    tag = f"rr22/{k}/"
    if leader:
        with ph("core start"):
            role, m0 = await asyncio.to_thread(_core.Rr22Receiver.start, seed, digests)
        await ch.send(tag + "setup", m0)
        with ph("wait base"):
            m1 = await ch.recv(tag + "base")
        with ph("core base"):
            m2 = await asyncio.to_thread(role.on_base, m1)
        await ch.send(tag + "matrix", m2)
        with ph("wait trees"):
            m3 = await ch.recv(tag + "trees")
        with ph("core vole+okvs"):
            m4 = await asyncio.to_thread(role.on_trees, m3)
        retries = int.from_bytes(bytes(m4[:4]), "little")
        with ph("send store"):
            await ch.send(tag + "store", m4)
        del m4, m3
        with ph("core outputs"):
            outs = await asyncio.to_thread(role.outputs)
            keys = b""
            if layout is not None:
                outs, keys = await asyncio.to_thread(_core.rr22_payload_keys, outs)
        with ph("wait values"):
            theirs = np.frombuffer(await ch.recv(tag + "values"), dtype=np.uint8)
        if len(theirs) != n_send * width:
            raise ProtocolViolationError(
                f"peer {peer!r} sent {len(theirs)} bytes of PRF values, expected {n_send * width}"
            )
        with ph("match"):
            # our values are 16-byte rows of which the first `width` bytes count
            try:
                ii, jj = await asyncio.to_thread(
                    _core.Rr22Receiver.match_rows, outs, 16, theirs, width
                )
            except ValueError:
                raise ProtocolViolationError(
                    f"peer {peer!r} sent PRF values that repeat far beyond chance"
                ) from None
            i, j = np.frombuffer(ii, dtype="<i8"), np.frombuffer(jj, dtype="<i8")
        del outs
        # an honest sender's values are distinct (its IDs are), so one of ours matching two
        # of its values would count a common ID twice
        if len(i) > 1 and bool((i[1:] == i[:-1]).any()):
            raise ProtocolViolationError(f"peer {peer!r} sent PRF values that repeat")
        opened = None
        if layout is not None:
            with ph("payload open"):
                opened = await _open(ch, tag, peer, layout, n_send, keys, i, j)
        with ph("send hits"):
            if peer_receives:
                await ch.send(tag + "hits", j.astype("<u4").tobytes())
            else:
                await ch.send_json(tag + "count", len(i))
        with ph("rows"):
            common = np.zeros(n_mine, dtype=bool)
            common[i] = True
            sel = common[inverse]
            rows = _row_numbers(rec, sel) if i_receive else None
            records = None
            if opened is not None:
                at = np.full(n_mine, -1, dtype=np.int64)
                at[i] = np.arange(len(i))
                records = opened[at[inverse[sel]]]
        return len(i), rows, retries, records
    with ph("core start"):
        role_s = await asyncio.to_thread(_core.Rr22Sender, seed, digests, n_recv)
    with ph("wait setup"):
        m0 = await ch.recv(tag + "setup")
    with ph("core base"):
        m1 = await asyncio.to_thread(role_s.on_setup, m0)
    await ch.send(tag + "base", m1)
    with ph("wait matrix"):
        m2 = await ch.recv(tag + "matrix")
    with ph("core trees"):
        m3 = await asyncio.to_thread(role_s.on_matrix, m2)
    await ch.send(tag + "trees", m3)
    del m0, m1, m2, m3
    # The VOLE's code and our OKVS rows need no store: the core computes them while the
    # receiver encodes its OKVS.
    prep = asyncio.create_task(asyncio.to_thread(ph.timed, "core prepare", role_s.prepare))
    try:
        with ph("wait store"):
            store = await ch.recv(tag + "store")
    finally:
        await prep
    retries = int.from_bytes(store[:4], "little") if len(store) >= 4 else 0
    sealed = b""
    if layout is None:
        # PRF values in a secret random order (the leader must not learn which of our rows
        # a value belongs to), cut to `width` bytes, in one pass in the core
        with ph("core vole+prf+shuffle"):
            out, order = await asyncio.to_thread(role_s.on_store_shuffled, store, width)
        del store
        perm = np.frombuffer(order, dtype="<u4")
    else:
        with ph("core vole+prf"):
            vals = np.frombuffer(await asyncio.to_thread(role_s.on_store, store), dtype=np.uint8)
        del store
        with ph("shuffle"):
            perm = np.random.default_rng(secrets.randbits(128)).permutation(n_mine)
        with ph("payload seal"):
            tags, keys = await asyncio.to_thread(_core.rr22_payload_keys, vals)
            vals = np.frombuffer(tags, dtype=np.uint8)
            if payload is not None:
                row_of = np.empty(n_mine, dtype=np.int64)
                row_of[inverse] = rec["row"] if rec.dtype.names else np.arange(len(rec))
                plain = layout.encode(payload.take(pa.array(row_of[perm])))
                kp = np.frombuffer(keys, dtype=np.uint8).reshape(-1, 16)[perm]
                sealed = await asyncio.to_thread(_core.aes_ctr_rows, kp, plain, layout.width)
                del plain, kp
            del keys
        with ph("shuffle"):
            out = np.ascontiguousarray(vals.reshape(-1, 16)[perm, :width]).tobytes()
        del vals
    with ph("send values"):
        await ch.send(tag + "values", out)
    del out
    if layout is not None:
        await ch.send(tag + "records", sealed)
        del sealed
    if i_receive:
        with ph("wait hits"):
            raw_hits = await ch.recv(tag + "hits")
        if len(raw_hits) % 4:
            raise ProtocolViolationError(f"peer {peer!r} sent a match list of partial entries")
        hits = np.frombuffer(raw_hits, dtype="<u4")
        if len(hits) > n_mine or (len(hits) and int(hits.max()) >= n_mine):
            raise ProtocolViolationError(f"peer {peer!r} sent an invalid match list")
        with ph("rows"):
            common = np.zeros(n_mine, dtype=bool)
            common[perm[hits]] = True
            if int(common.sum()) != len(hits):
                raise ProtocolViolationError(f"peer {peer!r} sent a match list with repeats")
            return len(hits), _row_numbers(rec, common[inverse]), retries, None
    with ph("wait count"):
        count = await ch.recv_json(tag + "count")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= n_mine:
        raise ProtocolViolationError(f"peer {peer!r} sent an invalid intersection size")
    return count, None, retries, None


async def _open(
    ch: Channel,
    tag: str,
    peer: str,
    layout: RecordLayout,
    n_send: int,
    keys: bytes,
    i: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """Decrypt the sender's records at the matched positions ``j`` with our keys ``i``."""
    w = layout.width
    enc = await ch.recv(tag + "records")
    if len(enc) != n_send * w:
        raise ProtocolViolationError(
            f"peer {peer!r} sent {len(enc)} bytes of payload records, expected {n_send * w}"
        )
    chosen = np.frombuffer(enc, dtype=np.uint8).reshape(-1, w)[j]
    del enc
    kk = np.frombuffer(keys, dtype=np.uint8).reshape(-1, 16)[i]
    out = await asyncio.to_thread(_core.aes_ctr_rows, kk, chosen, w)
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, w)
