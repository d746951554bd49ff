"""One party of the scale-out PSI benchmark, as its own process
(``python -m rainbridge.bench.scale_party``).

Party ``a`` listens on loopback mutual TLS and prints its port; party ``b`` connects. Each
runs its own compute engine with ``--workers`` slots (``ray``: a Ray instance of its own,
started before the clock; ``local``: threads of this process), then ``--repeat`` PSIs by
bucket pairs over the one link, and with ``--drop-after-bytes`` one more in which b's link
drops after b has sent that many bytes: b dials a's listener again, a accepts the second
connection of the same session, and the PSI resumes. Prints one JSON line with every run's
statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rainbridge.bench.common import id_batches, make_ids, peak_rss_mib
from rainbridge.compute.engine import ComputeEngine, ComputeSettings, LocalEngine, RayEngine
from rainbridge.compute.psi import BucketedPsiParams, IdInput, parquet_chunks, run_bucketed_psi
from rainbridge.crypto.certs import TlsIdentity
from rainbridge.errors import ChannelTimeoutError, PeerDisconnectedError
from rainbridge.net.channel import Buffer, Channel
from rainbridge.net.tls import Peer, TlsChannel, TlsListener, connect, serve
from rainbridge.protocols.psi.rr22 import IdBatches

NAMES = {"a": "alice", "b": "bob"}
SESSION = "bench-scale"
#: IDs per Arrow batch when they are made as a stream (past 2^22 rows)
STREAM_BATCH = 1 << 20
#: the statistics of run_bucketed_psi that the benchmark reports
STATS = (
    "seconds",
    "split_seconds",
    "buckets",
    "window",
    "bucket_sessions",
    "buckets_kept_on_resume",
    "buckets_run_again",
    "bucket_retries",
    "reconnects",
)


class MeteredLink(Channel):
    """The party pair's link, counting this run's bytes from zero, and dropping once (when
    ``drop_after`` is set) after this end has sent that many bytes.

    The drop aborts the TCP connection under TLS without a word to the peer, as a broken
    network would: the peer sees the connection reset, this end's send fails.
    """

    def __init__(self, inner: TlsChannel, drop_after: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.drop_after = drop_after
        self.dropped = False
        self.session_id, self.local, self.peer = inner.session_id, inner.local, inner.peer
        self.timeout = inner.timeout
        self.max_message = inner.max_message
        # the link may have carried earlier runs: count this run's bytes only
        self._sent0, self._received0 = inner.bytes_sent, inner.bytes_received

    def _update(self) -> None:
        self.bytes_sent = self.inner.bytes_sent - self._sent0
        self.bytes_received = self.inner.bytes_received - self._received0

    async def send(self, tag: str, payload: Buffer) -> None:
        await self.send_many(tag, (payload,))

    async def send_many(self, tag: str, parts: Sequence[Buffer]) -> None:
        if self.drop_after and not self.dropped and self.bytes_sent >= self.drop_after:
            self.dropped = True
            self.inner.writer.transport.abort()
            raise PeerDisconnectedError(
                f"the link to {self.peer!r} dropped (benchmark: after {self.bytes_sent} bytes)"
            )
        await self.inner.send_many(tag, parts)
        self._update()

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        data = await self.inner.recv(tag, timeout=timeout)
        self._update()
        return data

    async def close(self) -> None:
        await self.inner.close()

    async def abort(self, reason: str) -> None:
        await self.inner.abort(reason)


def _warm(seconds: float) -> int:
    """A task that holds a worker slot briefly, so that the engine's workers exist before
    the clock starts (Ray starts a worker process per slot on first use)."""
    time.sleep(seconds)
    return os.getpid()


def make_engine(kind: str, workers: int) -> ComputeEngine:
    if kind == "ray":
        # no address: this party's own Ray instance on this machine, num_cpus = workers
        return RayEngine(ComputeSettings(engine="ray", workers=workers))
    return LocalEngine(ComputeSettings(engine="local", workers=workers))


def make_input(args: argparse.Namespace, side: str) -> tuple[IdInput, str]:
    """This party's IDs for one run (made before the clock) and how they are given."""
    if args.parquet:
        # the engine's tasks read the row groups in place and hash them
        chunks = parquet_chunks(args.parquet, "id", target_rows=args.chunk_rows)
        return chunks, "parquet"
    if args.n > 1 << 22:
        rows, gen = id_batches(args.n, args.n, args.overlap, side, batch=STREAM_BATCH)
        return IdBatches(rows, gen), "id_batches"
    return make_ids(args.n, args.n, args.overlap, side), "array"


class Links:
    """Party a's listener: the first connection of the session, then each reconnection."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[TlsChannel] = asyncio.Queue()
        self.listener: TlsListener | None = None

    async def start(
        self,
        host: str,
        ident: TlsIdentity,
        peer: Peer,
        timeout: float,
        announce: Callable[[int], None],
    ) -> None:
        async def on_channel(ch: TlsChannel) -> None:
            await self.queue.put(ch)

        def accept(name: str, session: str) -> str | None:
            return None if session == SESSION else "unexpected session"

        self.listener = await serve(
            host,
            0,
            ident,
            {peer.name: peer},
            NAMES["a"],
            on_channel,
            accept=accept,
            timeout=timeout,
        )
        announce(self.listener.port)

    async def next(self, wait: float) -> TlsChannel:
        try:
            return await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            raise ChannelTimeoutError(f"party b did not connect within {wait:g} s") from None

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()


def _report(stats: dict[str, Any], size: int, link: Channel) -> dict[str, Any]:
    out = {k: stats.get(k) for k in STATS}
    out["intersection"] = size
    out["bytes_sent"] = stats.get("bytes_sent", link.bytes_sent)
    out["bytes_received"] = stats.get("bytes_received", link.bytes_received)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    me, other = ("a", "b") if args.side == "a" else ("b", "a")
    ident = TlsIdentity.load(f"{args.keys}/{me}")
    peer_ident = TlsIdentity.load(f"{args.keys}/{other}")
    peer = Peer(NAMES[other], peer_ident.fingerprint, peer_ident.cert_pem)
    engine = make_engine(args.engine, args.workers)
    # The engine's start (a Ray instance) and its workers' start are not the PSI's time.
    await engine.start()
    await engine.map(_warm, [(0.5,)] * engine.workers)
    links = Links()
    if me == "a":
        await links.start(
            args.host,
            ident,
            peer,
            args.timeout,
            lambda p: print(json.dumps({"port": p}), flush=True),
        )
        ch = await links.next(args.timeout)

        async def reconnect(_peer: str) -> Channel:
            return await links.next(60)

    else:
        ch = await connect(
            args.host,
            args.port,
            ident,
            peer,
            session_id=SESSION,
            local=NAMES[me],
            timeout=args.timeout,
        )

        async def reconnect(_peer: str) -> Channel:
            return await connect(
                args.host, args.port, ident, peer, session_id=SESSION, local=NAMES[me],
                timeout=args.timeout,
            )  # fmt: skip

    params = BucketedPsiParams(protocol=args.protocol, bucket_items=args.bucket_items)
    runs: list[dict[str, Any]] = []
    drop: dict[str, Any] | None = None
    input_kind = ""
    try:
        # the drop run comes last: the link it ends on is not used again
        plans = [0] * args.repeat + ([args.drop_after_bytes] if args.drop_after_bytes else [])
        for drop_after in plans:
            ids, input_kind = make_input(args, me)
            link = MeteredLink(ch, drop_after if me == "b" else 0)
            work = tempfile.mkdtemp(prefix=f"scale-{me}.", dir=args.work)
            try:
                res = await run_bucketed_psi(
                    NAMES[me],
                    {NAMES[other]: link},
                    ids,
                    params,
                    engine,
                    Path(work),
                    # a plain run has no reconnection: a drop there fails it
                    reconnect=reconnect if drop_after else None,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            report = _report(res.stats, res.size, link)
            if drop_after:
                report["dropped_here"] = link.dropped
                drop = report
            else:
                runs.append(report)
    finally:
        await links.close()
        await engine.close()
    return {
        "party": NAMES[me],
        "engine": engine.name,
        "workers": engine.workers,
        "input": input_kind,
        "runs": runs,
        "drop": drop,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["a", "b"], required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--protocol", choices=["rr22", "ecdh"], default="rr22")
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--bucket-items", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--drop-after-bytes", type=int, default=0)
    ap.add_argument("--parquet", default="", help="this party's IDs (column 'id'), else made here")
    ap.add_argument("--chunk-rows", type=int, default=1 << 20, help="Parquet rows per task")
    ap.add_argument("--work", default=None, help="where the runs' bucket files go")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
