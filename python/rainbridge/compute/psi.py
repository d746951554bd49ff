"""Two-party PSI by bucket pairs on a compute engine, with per-bucket checkpoints.

Both parties hash every ID to a 16-byte digest (SHA-256 under a seed both contribute to, as
in :mod:`rainbridge.protocols.psi.rr22`) and split the digests into ``B`` buckets by a keyed
function of the digest, the same at both; equal IDs land in the same bucket. Bucket ``k`` of
one party is then intersected with bucket ``k`` of the other by the per-bucket protocol (RR22,
or ECDH-PSI over the digests), each bucket pair as a *session* of the compute engine on its
own sub-channel (:mod:`rainbridge.net.mux`) of the one link between the parties, ``W`` at a
time (the smaller of the two parties' worker counts). With the ``ray`` engine a session is a
Ray task of the party's cluster that speaks through the job worker's relay; the link to the
other party stays the job worker's mutual-TLS connection.

Reading and hashing is sharded too where the input allows it: a Parquet file's row groups
are hashed and split by engine tasks in parallel (each writes its share of every bucket to
the work folder); any other input is split by the job worker as it streams.

Checkpoints and resume
----------------------
A bucket session writes its result (its common row numbers and the intersection count) to
the work folder before it reports success. When the link between the parties drops, each
party reconnects, the two compare which buckets both have finished, and only the others run
again. A bucket whose task died (a killed Ray worker, a lost machine) is run again at both
parties, up to ``max_attempts`` times: the party whose task died aborts the bucket's
sub-channel with a reason that asks for a retry, the other sees it and retries too. A bucket
that failed for any other reason (bad input, a protocol violation) fails the PSI.

What it reveals (beyond the per-bucket protocol's own leakage)
--------------------------------------------------------------
* each party's row count and, per bucket, its number of distinct IDs (ECDH and RR22 both
  exchange set sizes per bucket): a histogram of its keyed digests over ``B`` buckets, which
  says nothing of the IDs themselves (the bucket function is keyed by the joint seed) but is
  not padded;
* to both parties, the intersection's size per bucket (each bucket's protocol tells it), so
  with ``cardinality_only`` both learn how the common IDs spread over the keyed buckets,
  not only their number (still no member);
* which buckets each party has finished, after a dropped link or a lost task.

The security model is the per-bucket protocol's (semi-honest; see
:mod:`~rainbridge.protocols.psi.rr22` and :mod:`~rainbridge.protocols.psi.ecdh`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rainbridge import _core
from rainbridge.compute.engine import ComputeEngine
from rainbridge.data.dataset import as_ids, check_id_lengths, count_missing
from rainbridge.errors import (
    ChannelError,
    DataError,
    ParameterMismatchError,
    ProtocolViolationError,
    RainbridgeError,
)
from rainbridge.net.channel import Channel
from rainbridge.protocols.psi.ecdh import EcdhPsiParams, PsiResult, run_role
from rainbridge.protocols.psi.ecdh import _compare as compare_configs
from rainbridge.protocols.psi.items import as_items, to_large_string
from rainbridge.protocols.psi.rr22 import IdBatches, bucket_role

PROTOCOL = "bucketed-psi"
VERSION = 1
#: the 16-byte digest and the row number, as bucket files hold them
RECORD = np.dtype([("digest", "V16"), ("row", "<i8")])
#: numpy reads a .npy header with ast.literal_eval, which CPython 3.11 before 3.11.8 can fail
#: with "AST constructor recursion depth mismatch" when two threads parse at once (buckets'
#: sessions load their parts on worker threads side by side): one header at a time
_NPY_HEADER = threading.Lock()
MAX_BUCKETS = 1 << 20
#: the slowest a party is expected to read, hash and split its IDs (IDs a second): how
#: long the other waits for it after the hello, beyond one message's timeout
SPLIT_RATE = 100_000
#: the longest that wait may be, whatever row count the peer announces (10^9 rows fit)
MAX_SPLIT_WAIT_S = 4 * 3600.0
#: the largest window a hello announces (a peer refuses more)
MAX_WINDOW = 4096
ProgressFn = Callable[[float], None]


def _timeout(ch: Channel) -> float:
    return float(getattr(ch, "timeout", 60.0))


#: how a party gets a new link to ``peer`` after the old one dropped
Reconnect = Callable[[str], Awaitable[Channel]]


class BucketFailedError(RainbridgeError):
    """A bucket pair failed on every attempt."""

    code = "bucket_failed"


@dataclass(frozen=True)
class BucketedPsiParams:
    """What both parties must agree on (``max_attempts`` and ``window`` are local).

    Attributes
    ----------
    protocol : str
        ``rr22`` or ``ecdh``: the per-bucket protocol.
    receivers : tuple of str, optional
        Parties that learn the intersection (default both).
    bucket_items : int
        Target IDs per bucket; the bucket count is the power of two that keeps the larger
        party's buckets near it.
    curve, truncate, batch_size, cardinality_only
        ECDH-PSI's parameters (see :class:`~rainbridge.protocols.psi.ecdh.EcdhPsiParams`).
    max_attempts : int
        Attempts per bucket after a lost task, and reconnections of a dropped link.
    """

    protocol: str = "rr22"
    receivers: tuple[str, ...] | None = None
    bucket_items: int = 1 << 20
    curve: str = "curve25519"
    truncate: bool = True
    batch_size: int = 1 << 16
    cardinality_only: bool = False
    max_attempts: int = 3


@dataclass(frozen=True)
class ParquetChunk:
    """Row groups of a Parquet file, read in place by an engine task."""

    path: str
    column: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int
    normalize: str | None = None


def parquet_chunks(
    path: str, column: str, *, target_rows: int, normalize: str | None = None
) -> list[ParquetChunk]:
    """A Parquet file's row groups in chunks of about ``target_rows`` rows."""
    meta = pq.ParquetFile(path).metadata
    chunks: list[ParquetChunk] = []
    group: list[int] = []
    first = rows = 0
    for g in range(meta.num_row_groups):
        group.append(g)
        rows += meta.row_group(g).num_rows
        if rows >= target_rows:
            chunks.append(ParquetChunk(path, column, tuple(group), first, rows, normalize))
            first += rows
            group, rows = [], 0
    if group:
        chunks.append(ParquetChunk(path, column, tuple(group), first, rows, normalize))
    return chunks


IdInput: TypeAlias = pa.Array | pa.ChunkedArray | IdBatches | list[ParquetChunk]


def bucket_count(rows: int, bucket_items: int) -> int:
    """The power of two of buckets that keeps ``rows`` near ``bucket_items`` per bucket."""
    need = max(1, math.ceil(rows / max(1, bucket_items)))
    return min(MAX_BUCKETS, 1 << (need - 1).bit_length())


def _bucket_key(seed: bytes) -> np.uint64:
    return np.frombuffer(hashlib.sha256(b"rainbridge/psi/bucket" + seed).digest()[:8], "<u8")[0]


def bucket_of(digests: bytes, seed: bytes, buckets: int) -> np.ndarray:
    """Each digest's bucket: a keyed mix of its first 8 bytes, the same at both parties."""
    low = np.frombuffer(digests, dtype="<u8")[::2]
    with np.errstate(over="ignore"):
        b = ((low ^ _bucket_key(seed)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (b % np.uint64(buckets)).astype(np.int64)


def _split(
    batches: Iterable[pa.Array], seed: bytes, buckets: int, out: Path, first_row: int
) -> int:
    """Hash ``batches`` and write each as one segment under ``out``: its records sorted by
    bucket (``s<j>.bin``) and an index of its non-empty buckets (``s<j>.idx.npy``: bucket,
    first record, end). Two files a batch, whatever the bucket count the peer's row count
    forces: one file per bucket would put up to a file per row on the shared storage."""
    out.mkdir(parents=True, exist_ok=True)
    row = first_row
    for j, arr in enumerate(batches):
        items = as_items(to_large_string(arr))
        dig = _core.rr22_digests(seed, items.data, items.offsets)
        n = len(dig) // 16
        if not n:
            continue
        rec = np.empty(n, dtype=RECORD)
        rec["digest"] = np.frombuffer(dig, dtype="V16")
        rec["row"] = np.arange(row, row + n, dtype=np.int64)
        row += n
        b = bucket_of(dig, seed, buckets)
        order = np.argsort(b, kind="stable")
        ks, starts, counts = np.unique(b[order], return_index=True, return_counts=True)
        index = np.stack([ks, starts, starts + counts], axis=1).astype("<i8")
        rec[order].tofile(out / f"s{j:06d}.bin")
        with open(out / f"s{j:06d}.idx.npy", "wb") as f:
            np.save(f, index)
    return row - first_row


def split_parquet_chunk(chunk: ParquetChunk, seed: bytes, buckets: int, out: str) -> int:
    """An engine task: read ``chunk`` in place, hash and split it into bucket files."""

    def batches() -> Iterator[pa.Array]:
        pf = pq.ParquetFile(chunk.path)
        for batch in pf.iter_batches(
            batch_size=1 << 20, row_groups=list(chunk.row_groups), columns=[chunk.column]
        ):
            what = f"{Path(chunk.path).name} column {chunk.column!r}"
            # as the job worker reads IDs (as_ids): the same text, the same refusals
            arr = as_ids(batch.column(0), what)
            missing = count_missing(arr)
            if missing:
                raise DataError(
                    f"{what}: {missing} empty IDs (empty text or NULL) in row groups "
                    f"{chunk.row_groups[0]}-{chunk.row_groups[-1]}; fill them in, or set "
                    "`missing_ids: drop` on the psi component"
                )
            if chunk.normalize:
                arr = pc.utf8_normalize(arr, form=chunk.normalize)
            check_id_lengths(arr, what)
            yield arr

    done = _split(batches(), seed, buckets, Path(out), chunk.first_row)
    if done != chunk.rows:
        raise DataError(f"{chunk.path}: row groups held {done} rows, not {chunk.rows}")
    return done


def load_bucket(parts: Path, k: int) -> np.ndarray:
    """Bucket ``k``'s records from every segment of every chunk under ``parts``, in row
    order."""
    pieces = []
    for idx_path in sorted(parts.glob("c*/s*.idx.npy")):
        with _NPY_HEADER:
            index = np.load(idx_path, mmap_mode="r")
        i = int(np.searchsorted(index[:, 0], k))
        if i == len(index) or index[i, 0] != k:
            continue
        start, end = int(index[i, 1]), int(index[i, 2])
        data = idx_path.with_name(idx_path.name.removesuffix(".idx.npy") + ".bin")
        pieces.append(
            np.fromfile(data, dtype=RECORD, count=end - start, offset=start * RECORD.itemsize)
        )
    if not pieces:
        return np.empty(0, dtype=RECORD)
    rec = np.concatenate(pieces)
    return rec[np.argsort(rec["row"], kind="stable")]


@dataclass(frozen=True)
class BucketJob:
    """What one bucket session needs (pickled to a Ray task)."""

    k: int
    protocol: str
    party: str
    peer: str
    seed: bytes
    parts: str
    checkpoints: str
    leader: bool
    i_receive: bool
    peer_receives: bool
    ecdh: EcdhPsiParams | None = None


def _checkpoint_path(checkpoints: str, k: int) -> Path:
    return Path(checkpoints) / f"b{k:06d}"


def _save_checkpoint(job: BucketJob, size: int, rows: np.ndarray | None, retries: int) -> None:
    """Write bucket ``k``'s result atomically: rows first, the JSON (its mark) last."""
    base = _checkpoint_path(job.checkpoints, job.k)
    if rows is not None:
        tmp = base.with_suffix(".npy.tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(rows, dtype=np.int64))
        os.replace(tmp, base.with_suffix(".npy"))
    tmp = base.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"size": size, "retries": retries, "rows": rows is not None}))
    os.replace(tmp, base.with_suffix(".json"))


async def bucket_session(ch: Channel, job: BucketJob) -> dict[str, Any]:
    """One bucket pair at one party: load, intersect with the peer's bucket, checkpoint."""
    rec = await asyncio.to_thread(load_bucket, Path(job.parts), job.k)
    if job.protocol == "rr22":
        size, rows, retries, _ = await bucket_role(
            job.k,
            ch,
            job.peer,
            job.seed,
            rec,
            job.leader,
            job.i_receive,
            job.peer_receives,
            None,
            None,
        )
    else:
        assert job.ecdh is not None
        ids = _hex_ids(rec["digest"].tobytes())
        res = await run_role(job.party, {job.peer: ch}, ids, job.ecdh)
        size, retries = res.size, 0
        rows = rec["row"][res.indices] if res.indices is not None else None
    await asyncio.to_thread(_save_checkpoint, job, size, rows, retries)
    return {"k": job.k, "size": size, "items": len(rec)}


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(digests: bytes) -> pa.Array:
    """16-byte digests as 32-character hex IDs (ECDH-PSI hashes IDs as text)."""
    raw = np.frombuffer(digests, dtype=np.uint8)
    n = len(raw) // 16
    text = np.empty(len(raw) * 2, dtype=np.uint8)
    text[0::2] = _HEX[raw >> 4]
    text[1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )


@dataclass
class _Plan:
    seed: bytes
    buckets: int
    run: str
    window: int
    rows: dict[str, int] = field(default_factory=dict)


def _config(party: str, peer: str, params: BucketedPsiParams) -> dict[str, Any]:
    parties = sorted({party, peer})
    if len(parties) != 2:
        raise ParameterMismatchError("a PSI by buckets takes two distinct parties")
    if params.protocol not in ("rr22", "ecdh"):
        raise ParameterMismatchError(f"unknown per-bucket protocol {params.protocol!r}")
    receivers = list(params.receivers) if params.receivers else parties
    if not receivers or any(r not in parties for r in receivers):
        raise ParameterMismatchError(f"PSI receivers {receivers} are not its parties {parties}")
    if params.protocol == "rr22" and params.cardinality_only:
        raise ParameterMismatchError("cardinality_only runs on protocol ecdh")
    if not 1 <= params.bucket_items <= 1 << 30:
        raise ParameterMismatchError("bucket_items must be between 1 and 2^30")
    cfg: dict[str, Any] = {
        "protocol": PROTOCOL,
        "version": VERSION,
        "per_bucket": params.protocol,
        "parties": parties,
        "receivers": receivers,
        "leader": receivers[0],
        "bucket_items": params.bucket_items,
    }
    if params.protocol == "ecdh":
        cfg.update(
            curve=params.curve,
            truncate=params.truncate,
            batch_size=params.batch_size,
            cardinality_only=params.cardinality_only,
        )
    return cfg


def _rows_of(ids: IdInput) -> int:
    if isinstance(ids, IdBatches):
        return ids.rows
    if isinstance(ids, list):
        return sum(c.rows for c in ids)
    return len(ids)


async def run_bucketed_psi(
    party: str,
    channels: Mapping[str, Channel],
    ids: IdInput,
    params: BucketedPsiParams,
    engine: ComputeEngine,
    work_dir: Path,
    *,
    reconnect: Reconnect | None = None,
    progress: ProgressFn | None = None,
) -> PsiResult:
    """This party's role of a two-party PSI by bucket pairs (see the module docstring).

    ``work_dir`` must be reachable by every worker of ``engine`` and private to this run
    (the caller removes it). Returns the same :class:`PsiResult` as the one-pass protocols.
    """
    from rainbridge.net.mux import Mux

    t0 = time.perf_counter()
    if len(channels) != 1:
        raise ParameterMismatchError(
            f"a PSI by buckets takes two parties (got {len(channels) + 1}); use ecdh for more"
        )
    ((peer, link),) = channels.items()
    config = _config(party, peer, params)
    rows = _rows_of(ids)
    await engine.start()
    parts, checkpoints = work_dir / "parts", work_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {
        "protocol": params.protocol,
        "engine": engine.name,
        "rows": rows,
        "bucket_sessions": 0,
        "buckets_kept_on_resume": 0,
        "buckets_run_again": 0,
        "bucket_retries": 0,
        "reconnects": 0,
    }
    plan: _Plan | None = None
    done: set[int] = set()
    #: per bucket, the attempts lost so far (a task lost here or at the peer)
    lost: dict[int, int] = {}
    reconnects = 0
    while True:
        mux = Mux(link)
        try:
            ctl = mux.open("ctl")
            if plan is None:
                plan = await _agree(ctl, party, peer, config, rows, engine.workers)
                t_split = time.perf_counter()
                await _split_input(ids, plan, parts, engine)
                stats["split_seconds"] = round(time.perf_counter() - t_split, 3)
                # the peer may still be splitting a far larger input than ours
                wait = ctl.timeout + min(plan.rows[peer] / SPLIT_RATE, MAX_SPLIT_WAIT_S)
            else:
                await _check_run(ctl, peer, plan)
                wait = None
            todo = await _todo(ctl, peer, plan.buckets, done, timeout=wait)
            if reconnects:
                stats["buckets_kept_on_resume"] += plan.buckets - len(todo)
            job = BucketJob(
                k=-1,
                protocol=params.protocol,
                party=party,
                peer=peer,
                seed=plan.seed,
                parts=str(parts),
                checkpoints=str(checkpoints),
                leader=config["leader"] == party,
                i_receive=party in config["receivers"],
                peer_receives=peer in config["receivers"],
                ecdh=_ecdh_params(params, config) if params.protocol == "ecdh" else None,
            )
            # Rounds: a bucket whose task was lost (here or at the peer) is left for the next
            # round, which both parties start from their finished buckets; retrying it at
            # once would wait for ever on a peer that had already finished it.
            for attempt in range(params.max_attempts):
                if not todo:
                    break
                await _run_buckets(
                    mux, engine, job, todo, plan, params, done, stats, progress, attempt, lost
                )
                todo = await _todo(ctl, peer, plan.buckets, done)
            if todo:
                raise BucketFailedError(
                    f"buckets {todo[:10]} of the PSI did not finish at both parties in "
                    f"{params.max_attempts} rounds (their tasks were lost); see the engine's logs"
                )
            total = _total(checkpoints, plan.buckets, job.i_receive)
            await ctl.send_json("end", {"size": total[0]})
            theirs = await ctl.recv_json("end")
            if not isinstance(theirs, dict) or theirs.get("size") != total[0]:
                raise ProtocolViolationError(
                    f"peer {peer!r} counted another intersection size over the same buckets"
                )
            await ctl.close()
            await mux.close()
            break
        except ChannelError:
            if mux.failure is None or reconnect is None or reconnects >= params.max_attempts:
                raise
            reconnects += 1
            stats["reconnects"] = reconnects
            link = await reconnect(peer)
    size, indices = total
    stats.update(
        buckets=plan.buckets,
        window=plan.window,
        intersection=size,
        bytes_sent=link.bytes_sent,
        bytes_received=link.bytes_received,
        seconds=round(time.perf_counter() - t0, 3),
    )
    if params.cardinality_only:
        indices = None
    return PsiResult(size=size, indices=indices, stats=stats)


def _ecdh_params(params: BucketedPsiParams, config: dict[str, Any]) -> EcdhPsiParams:
    return EcdhPsiParams(
        curve=params.curve,
        receivers=tuple(config["receivers"]),
        truncate=params.truncate,
        batch_size=params.batch_size,
        cardinality_only=params.cardinality_only,
    )


async def _agree(
    ctl: Channel, party: str, peer: str, config: dict[str, Any], rows: int, workers: int
) -> _Plan:
    """Both parties' hello: the same configuration, a joint seed, the bucket count."""
    seed = secrets.token_bytes(16)
    workers = min(workers, MAX_WINDOW)  # a setting without bound; the window has one
    await ctl.send_json(
        "hello", {"config": config, "seed": seed.hex(), "rows": rows, "window": workers}
    )
    # The peer counts and checks its whole input before its hello (a large CSV or SQL
    # table takes minutes): wait as long as a split may take, not one message's timeout. A
    # peer that goes away is noticed at once all the same (its link closes).
    theirs = await ctl.recv_json("hello", timeout=max(_timeout(ctl), MAX_SPLIT_WAIT_S))
    if not isinstance(theirs, dict):
        raise ProtocolViolationError(f"peer {peer!r} sent a malformed PSI hello")
    compare_configs(config, theirs.get("config"), peer)
    try:
        their_seed = bytes.fromhex(str(theirs["seed"]))
        their_rows = int(theirs["rows"])
        their_window = int(theirs["window"])
    except (KeyError, ValueError, TypeError):
        raise ProtocolViolationError(f"peer {peer!r} sent a malformed PSI hello") from None
    if (
        len(their_seed) != 16
        or not 0 <= their_rows < 1 << 40
        or not 1 <= their_window <= MAX_WINDOW
    ):
        raise ProtocolViolationError(f"peer {peer!r} sent an invalid seed, size or window")
    first, second = sorted([(party, seed), (peer, their_seed)])
    joint = hashlib.sha256(b"rainbridge/psi/buckets" + first[1] + second[1]).digest()
    return _Plan(
        seed=joint[:16],
        buckets=bucket_count(max(rows, their_rows), int(config["bucket_items"])),
        run=hashlib.sha256(b"rainbridge/psi/run" + joint).hexdigest()[:16],
        window=min(workers, their_window),
        rows={party: rows, peer: their_rows},
    )


async def _check_run(ctl: Channel, peer: str, plan: _Plan) -> None:
    """After a reconnection: both sides resume the same run."""
    await ctl.send_json("resume", {"run": plan.run})
    theirs = await ctl.recv_json("resume")
    if not isinstance(theirs, dict) or theirs.get("run") != plan.run:
        raise ProtocolViolationError(f"peer {peer!r} resumed another PSI run")


async def _todo(
    ctl: Channel, peer: str, buckets: int, done: set[int], *, timeout: float | None = None
) -> list[int]:
    """The buckets not finished at both parties (each sends a bitmap of its finished ones)."""
    mine = np.zeros(buckets, dtype=bool)
    mine[sorted(done)] = True
    await ctl.send("done", np.packbits(mine).tobytes())
    raw = await ctl.recv("done", timeout=timeout)
    if len(raw) != (buckets + 7) // 8:
        raise ProtocolViolationError(f"peer {peer!r} sent a malformed list of finished buckets")
    theirs = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:buckets].astype(bool)
    both = mine & theirs
    return [int(k) for k in np.flatnonzero(~both)]


async def _split_input(ids: IdInput, plan: _Plan, parts: Path, engine: ComputeEngine) -> None:
    """Hash and split this party's IDs into bucket files (engine tasks for Parquet chunks)."""
    if isinstance(ids, list):
        dirs = [str(parts / f"c{i:05d}") for i in range(len(ids))]
        work = [(c, plan.seed, plan.buckets, d) for c, d in zip(ids, dirs, strict=True)]
        await engine.map(split_parquet_chunk, work)
        return
    if isinstance(ids, IdBatches):
        batches: Iterable[pa.Array] = ids.batches
        expected = ids.rows
    else:
        arr = to_large_string(ids)
        batches = (arr.slice(lo, 1 << 20) for lo in range(0, len(arr), 1 << 20))
        expected = len(arr)
    got = await asyncio.to_thread(_split, batches, plan.seed, plan.buckets, parts / "c00000", 0)
    if got != expected:
        raise DataError(f"input announced {expected} rows but held {got}")


async def _run_buckets(
    mux: Any,
    engine: ComputeEngine,
    job: BucketJob,
    todo: list[int],
    plan: _Plan,
    params: BucketedPsiParams,
    done: set[int],
    stats: dict[str, Any],
    progress: ProgressFn | None,
    attempt: int,
    lost: dict[int, int],
) -> None:
    """Run one round of the ``todo`` bucket sessions (sub-channels ``b<k>.<attempt>``),
    ``plan.window`` at a time, in ascending order at both parties (so the two always share
    the lowest unfinished bucket). A bucket whose task was lost stays unfinished here and
    runs again in the next round; ``max_attempts`` lost tasks fail the PSI."""
    from dataclasses import replace

    sessions = await engine.sessions(mux)
    slots = asyncio.Semaphore(plan.window)

    async def one(k: int) -> None:
        async with slots:
            sub = f"b{k}.{attempt}"
            try:
                await sessions.run(bucket_session, (replace(job, k=k),), sub)
            except BaseException as exc:
                if mux.failure is not None:
                    raise mux.failure from exc
                if isinstance(exc, asyncio.CancelledError) or not _retryable(
                    exc, engine, mux.aborted(sub)
                ):
                    raise
                stats["bucket_retries"] += 1
                lost[k] = lost.get(k, 0) + 1
                if lost[k] >= params.max_attempts:
                    raise BucketFailedError(
                        f"bucket {k} of the PSI failed {params.max_attempts} times (its tasks "
                        "were lost); see the engine's logs"
                    ) from exc
                return
            stats["buckets_run_again"] += k in done
            done.add(k)
            stats["bucket_sessions"] += 1
            if progress is not None:
                progress(len(done) / plan.buckets)

    try:
        async with asyncio.TaskGroup() as tg:
            for k in todo:
                tg.create_task(one(k))
    except BaseExceptionGroup as group:
        raise _first(group) from None
    finally:
        await sessions.close()


def _retryable(exc: BaseException, engine: ComputeEngine, aborted: str | None) -> bool:
    """A lost task here, or the peer's side of the bucket lost (its abort does not say
    ``failed``), is retried; anything else fails the PSI."""
    if engine.lost_task(exc):
        return True
    return aborted is not None and not aborted.startswith("failed")


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first error that says what went wrong (a channel error only if there is none)."""
    flat: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for x in e.exceptions:
                walk(x)
        else:
            flat.append(e)

    walk(group)
    for e in flat:
        if not isinstance(e, ChannelError | asyncio.CancelledError):
            return e
    return flat[0]


def _total(checkpoints: Path, buckets: int, i_receive: bool) -> tuple[int, np.ndarray | None]:
    """The intersection size and (at a receiver) the ascending common rows, from every
    bucket's checkpoint."""
    size = 0
    rows: list[np.ndarray] = []
    for k in range(buckets):
        base = _checkpoint_path(str(checkpoints), k)
        meta = json.loads(base.with_suffix(".json").read_text())
        size += int(meta["size"])
        if i_receive and meta["rows"]:
            with _NPY_HEADER:
                rows.append(np.load(base.with_suffix(".npy")))
    if not i_receive:
        return size, None
    out = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    out.sort(kind="stable")
    return size, out
