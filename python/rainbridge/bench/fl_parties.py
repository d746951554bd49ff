"""``python -m rainbridge.bench fl --model lr --parties N``: vertical LR with the label party
and N - 1 feature parties beside the same data split between two parties, in one process.

The synthetic table of ``fl`` (seeded, standard normal features, a label from known
weights); with two parties the label party holds the first half of the features, with N the
first 1/N-th and each feature party the next. Every pair of the label party and a feature
party sets its engine up by OT extension (a dealer serves two parties only). All parties
run in this process over in-process channels, one asyncio loop: the seconds are the sum of
every party's work (no network, no parallelism between parties), which is the fair way to
compare party counts on one small machine; run ``fl`` without ``--parties`` for two parties
over loopback TLS.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np

from rainbridge.bench.common import machine
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.metrics import auc
from rainbridge.protocols.fl.vertical_lr import LrParams, LrResult, LrRoles, train_parties
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.ot import OtProvider


def _table(rows: int, features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(13)  # the table of ``fl``
    x = rng.normal(size=(rows, features))
    w_true = rng.normal(size=features) / np.sqrt(features) * 2
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ w_true)))).astype(float)
    return x, y, w_true


async def _run(parts: list[np.ndarray], y: np.ndarray, params: LrParams) -> dict[str, Any]:
    names = [f"p{i}" for i in range(len(parts))]  # p0 holds the label
    label, feature_parties = names[0], tuple(names[1:])
    mesh = LocalChannel.mesh("bench-lr", names, timeout=3600)
    counts = {n: p.shape[1] for n, p in zip(names, parts, strict=True)}

    async def party(i: int) -> LrResult:
        me = names[i]
        peers = feature_parties if me == label else (label,)

        async def session(peer: str) -> Mpc:
            idx = 0 if me < peer else 1
            provider = OtProvider(idx, mesh[me][peer])
            await provider.setup()
            return Mpc(idx, mesh[me][peer], provider)

        sessions = dict(zip(peers, await asyncio.gather(*map(session, peers)), strict=True))
        channels = {} if me == label else {p: mesh[me][p] for p in feature_parties if p != me}
        res = await train_parties(
            LrRoles(me, label, feature_parties, counts), sessions, channels, parts[i],
            y if me == label else None, params=params, scores_to_label=True,
        )  # fmt: skip
        for mpc in sessions.values():
            await mpc.close()
        return res

    t0 = time.perf_counter()
    results = await asyncio.gather(*(party(i) for i in range(len(parts))))
    seconds = time.perf_counter() - t0
    scores = results[0].train_scores
    assert scores is not None
    return {
        "parties": len(parts),
        "seconds": round(seconds, 2),
        "epochs_run": results[0].epochs_run,
        "train_auc": round(auc(scores, y), 4),
        "bytes_sent_by_label_party": sum(ch.bytes_sent for ch in mesh[label].values()),
        "bytes_sent_by_feature_parties": sum(
            ch.bytes_sent for n in feature_parties for ch in mesh[n].values()
        ),
    }


def _split(x: np.ndarray, parties: int) -> list[np.ndarray]:
    bounds = np.linspace(0, x.shape[1], parties + 1).round().astype(int)
    return [x[:, a:b] for a, b in itertools.pairwise(bounds)]


def bench_parties(args: Any) -> dict[str, Any]:
    from rainbridge.bench.fl import _plaintext

    t0 = time.perf_counter()
    x, y, w_true = _table(args.rows, args.features)
    params = LrParams(epochs=args.epochs, batch_size=args.batch, learning_rate=0.1, tol=0.0, seed=1)
    runs = [asyncio.run(_run(_split(x, n), y, params)) for n in (2, args.parties)]
    return {
        "benchmark": "fl-lr-parties",
        "machine": machine(),
        "setup": f"vertical LR, {args.features} features split evenly, label at the first "
        "party; each pair by OT extension; every party in one process over in-process "
        "channels (seconds: all parties' work added up)",
        "rows": args.rows,
        "features": args.features,
        "epochs": args.epochs,
        "batch": args.batch,
        "runs": runs,
        "slowdown": round(runs[1]["seconds"] / runs[0]["seconds"], 2),
        "true_auc": round(auc(x @ w_true, y), 4),
        "plaintext": _plaintext(args.rows, args.features),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
