"""One party of the PSI benchmark, as its own process (``python -m rainbridge.bench.party``).

Party ``a`` listens on loopback and prints its port; party ``b`` connects. Both are pinned
to each other's certificates (mutual TLS 1.3). Each prints one JSON line: protocol seconds
(from connection to result), bytes each way, intersection size and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge.bench.common import id_batches, make_ids, peak_rss_mib
from rainbridge.crypto.certs import TlsIdentity
from rainbridge.interop import IcLink, IcPsiParams, IcTls, run_ic_ecdh_psi
from rainbridge.net.tls import Peer, accept_one, connect
from rainbridge.protocols.psi import EcdhPsiParams, IdBatches, Rr22PsiParams, run_role, run_rr22

NAMES = {"a": "alice", "b": "bob"}


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    me, other = ("a", "b") if args.side == "a" else ("b", "a")
    ident = TlsIdentity.load(f"{args.keys}/{me}")
    peer_ident = TlsIdentity.load(f"{args.keys}/{other}")
    peer = Peer(NAMES[other], peer_ident.fingerprint, peer_ident.cert_pem)
    ids: object
    if args.protocol == "rr22" and max(args.n, args.m) > 1 << 22:
        # made batch by batch while the protocol reads them (inside the timing: IDs are
        # produced about as fast as a file is read)
        ids = IdBatches(*id_batches(args.n, args.m, args.overlap, args.side))
    else:
        ids = make_ids(args.n, args.m, args.overlap, args.side)
    payload = None
    if args.variant == "payload" and me == "b":
        # made before the clock starts, like the IDs: a float and a string column per row
        col = ids if isinstance(ids, pa.Array) else None
        if col is None:
            raise SystemExit("--variant payload needs in-memory IDs (at most 2^22)")
        payload = pa.table({"score": np.arange(len(col), dtype=np.float64) * 0.5, "label": col})
    if args.protocol == "ic-ecdh":
        return await _interconnection(args, me, other, ident, peer_ident, ids)
    session = "bench"
    if me == "a":

        def announce(port: int) -> None:
            print(json.dumps({"port": port}), flush=True)

        ch = await accept_one(
            args.host,
            0,
            ident,
            peer,
            session_id=session,
            local=NAMES[me],
            on_listening=announce,
            timeout=600,
        )
    else:
        ch = await connect(
            args.host, args.port, ident, peer, session_id=session, local=NAMES[me], timeout=600
        )
    t0 = time.perf_counter()
    if args.protocol == "rr22":
        res = await run_rr22(
            NAMES[me],
            {NAMES[other]: ch},
            ids,  # type: ignore[arg-type]
            Rr22PsiParams(
                receivers=(NAMES["a"],),
                memory_limit_mb=args.memory_limit_mb,
                payload_from=NAMES["b"] if args.variant == "payload" else None,
                payload_columns=("score", "label") if args.variant == "payload" else (),
            ),
            payload=payload,
        )
    else:
        res = await run_role(
            NAMES[me],
            {NAMES[other]: ch},
            ids,  # type: ignore[arg-type]
            EcdhPsiParams(
                curve=args.curve,
                receivers=(NAMES["a"],),
                batch_size=args.batch,
                cardinality_only=args.variant == "cardinality",
            ),
        )
    seconds = time.perf_counter() - t0
    await ch.close()
    return {
        "party": NAMES[me],
        "seconds": round(seconds, 3),
        "bytes_sent": ch.bytes_sent,
        "bytes_received": ch.bytes_received,
        "intersection": res.size,
        "payload_rows": None if res.payload is None else res.payload.num_rows,
        "buckets": res.stats.get("buckets", 1),
        "phases": res.stats.get("phases", {}),
        "peak_rss_mib": peak_rss_mib(),
    }


async def _interconnection(
    args: argparse.Namespace, me: str, other: str, ident: Any, peer_ident: Any, ids: Any
) -> dict[str, object]:
    """The interconnection standard's ECDH-PSI over its gRPC link (mutual TLS): a is rank 0.

    a prints its port, b (given it) prints its own, and a reads b's from its stdin."""
    rank = 0 if me == "a" else 1
    tls = IcTls.from_identity(ident, peer_ident.cert_pem, "localhost")
    link = IcLink(rank, f"{args.host}:0", tls=tls, timeout=600)
    port = await link.start()
    print(json.dumps({"port": port}), flush=True)
    if me == "a":
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        link.peers = {1: f"{args.host}:{json.loads(line)['port']}"}
    else:
        link.peers = {0: f"{args.host}:{args.port}"}
    t0 = time.perf_counter()
    res = await run_ic_ecdh_psi(link, ids, IcPsiParams(result_to_rank=0))
    seconds = time.perf_counter() - t0
    await link.close()
    return {
        "party": NAMES[me],
        "seconds": round(seconds, 3),
        "bytes_sent": link.bytes_sent,
        "bytes_received": link.bytes_received,
        "intersection": res.size if rank == 0 else None,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["a", "b"], required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--m", type=int, required=True)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--curve", default="curve25519")
    ap.add_argument("--batch", type=int, default=1 << 16)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1", help="a: address to listen on; b: of a")
    ap.add_argument("--protocol", choices=["ecdh", "rr22", "ic-ecdh"], default="ecdh")
    ap.add_argument("--memory-limit-mb", type=int, default=2048)
    ap.add_argument("--variant", choices=["plain", "cardinality", "payload"], default="plain")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
