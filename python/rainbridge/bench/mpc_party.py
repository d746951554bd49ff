"""One process of the MPC benchmark: the dealer, party 0 or party 1 (mutual TLS on loopback).

The dealer listens for party 1, then for party 0 (printing each port); party 1 connects to
the dealer and listens for party 0 (printing its port); party 0 connects to both. Each party
then runs the workload and prints one JSON line with its timings and bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np

from rainbridge.bench.common import peak_rss_mib
from rainbridge.crypto.certs import TlsIdentity
from rainbridge.net.channel import Channel
from rainbridge.net.tls import Peer, accept_one, connect
from rainbridge.protocols.mpc import (
    DealerClient,
    Mpc,
    Provider,
    SeedProvider,
    receive_seed,
    run_dealer,
)
from rainbridge.protocols.mpc.ot import OtProvider

NAMES = ("p0", "p1", "dealer")


def _peer(keys: str, name: str) -> Peer:
    ident = TlsIdentity.load(f"{keys}/{name}")
    return Peer(name, ident.fingerprint, ident.cert_pem)


async def _listen(keys: str, me: str, peer: str) -> Channel:
    def announce(port: int) -> None:
        print(json.dumps({"listening_for": peer, "port": port}), flush=True)

    return await accept_one(
        "127.0.0.1",
        0,
        TlsIdentity.load(f"{keys}/{me}"),
        _peer(keys, peer),
        session_id=f"mpc/{min(me, peer)}-{max(me, peer)}",
        local=me,
        on_listening=announce,
        timeout=600,
    )


async def _dial(keys: str, me: str, peer: str, port: int) -> Channel:
    return await connect(
        "127.0.0.1",
        port,
        TlsIdentity.load(f"{keys}/{me}"),
        _peer(keys, peer),
        session_id=f"mpc/{min(me, peer)}-{max(me, peer)}",
        local=me,
        timeout=600,
    )


async def workload(mpc: Mpc, n: int, reps: int, n_cmp: int, n_sort: int = 0) -> dict[str, float]:
    """Timed multiplications, comparisons and a sort; with each phase's bytes sent by this
    party and, dealer-free, the random OTs it chose in (the OTs of the other party's
    products are that party's)."""
    rng = np.random.default_rng(7 + mpc.party)
    x = np.clip(rng.normal(scale=100, size=n), -30000, 30000)
    a = await mpc.input(x if mpc.party == 0 else None, 0, (n,))
    b = await mpc.input(x if mpc.party == 1 else None, 1, (n,))
    ot = getattr(mpc.provider, "ot", None)

    def counters() -> tuple[int, int]:
        return int(getattr(mpc.ch, "bytes_sent", 0)), int(getattr(ot, "random_ots", 0))

    out: dict[str, float] = {}

    def record(phase: str, t0: float, before: tuple[int, int]) -> None:
        after = counters()
        out[f"{phase}_seconds"] = time.perf_counter() - t0
        out[f"{phase}_bytes_sent"] = after[0] - before[0]
        if ot is not None:
            out[f"{phase}_random_ots"] = after[1] - before[1]

    c0, t0 = counters(), time.perf_counter()
    for _ in range(reps):
        await mpc.mul(a, b)
    record("mul", t0, c0)
    c = a[:n_cmp]
    c0, t0 = counters(), time.perf_counter()
    await mpc.ltz(c)
    record("cmp", t0, c0)
    # the same values compared over 32 bits, which hold them (|x| < 2^15 at 16 fractional
    # bits): what a program with a public bound on its operands pays
    c0, t0 = counters(), time.perf_counter()
    await mpc.ltz(c, 32)
    record("cmp32", t0, c0)
    if n_sort:
        from rainbridge.protocols.mpc.sort import sort

        c0, t0 = counters(), time.perf_counter()
        await sort(mpc, a[:n_sort])
        record("sort", t0, c0)
    return out


async def group_workload(mpc: Mpc, rows: int, groups: int) -> dict[str, float]:
    """COUNT/SUM/AVG of party 1's column GROUP BY party 0's key over aligned rows, with the
    ``stats`` component's encoding: the value party picks the scale from its data (no
    NULLs here, so no presence column) and the receiver decodes exactly."""
    from fractions import Fraction

    from rainbridge.components.stats_columns import Column
    from rainbridge.components.stats_plans import ColumnPlan, GroupResult, value_matrix
    from rainbridge.protocols.mpc.stats import group_sums

    # the same synthetic table at both (seeded); each party keeps only its own column
    rng = np.random.default_rng(11)
    keys = rng.integers(0, groups, rows)
    amounts = rng.gamma(2.0, 5_000.0, rows).round(2)
    t0 = time.perf_counter()
    mat = None
    if mpc.party == 1:  # the value party encodes, and tells the receiver its plan
        col = Column("amount", amounts, np.ones(rows, dtype=bool), False)
        vm = value_matrix([col], {"amount": {"sum", "mean"}}, rows, masks=False)
        mat, plans = vm.matrix(rows), vm.plans
        await mpc.ch.send_json("bench/plan", [p.to_json() for p in plans])
        width = mat.shape[1]
    else:
        got = await mpc.ch.recv_json("bench/plan")
        plans = [ColumnPlan.from_json(p, 1) for p in got]
        width = 1
    res = await group_sums(
        mpc,
        key_party=0,
        keys=keys if mpc.party == 0 else None,
        groups=[f"g{i}" for i in range(groups)],
        values=mat,
        value_shape=(rows, width),
        receiver=0,
        decimals=None,
    )
    out: dict[str, float] = {}
    if res is not None:  # the receiver decodes, then checks against the plaintext
        got = [
            GroupResult(g, int(res.counts[i]), [int(x) for x in res.sums[i]]).column(
                plans[0], {"sum"}, False
            )[0]["sum"]
            for i, g in enumerate(res.groups)
        ]
        seconds = time.perf_counter() - t0
        # the amounts have two decimals: their exact sums, as integers of cents
        cents = np.bincount(keys, weights=np.rint(amounts * 100), minlength=groups)
        out["max_abs_error"] = float(
            max(abs(Fraction(g) - Fraction(int(c), 100)) for g, c in zip(got, cents, strict=True))
        )
        out["counts_match"] = float(np.array_equal(res.counts, np.bincount(keys)))
    else:
        seconds = time.perf_counter() - t0
    out["group_seconds"] = seconds
    return out


async def lr_workload(
    mpc: Mpc, rows: int, features: int, epochs: int, batch: int
) -> dict[str, float]:
    """Vertical LR: party 1 holds the label and the first half of the features."""
    from rainbridge.protocols.fl.metrics import auc
    from rainbridge.protocols.fl.vertical_lr import LrParams, train

    rng = np.random.default_rng(13)  # the same synthetic table at both
    x = rng.normal(size=(rows, features))
    w_true = rng.normal(size=features) / np.sqrt(features) * 2
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ w_true)))).astype(float)
    half = features // 2
    mine = x[:, :half] if mpc.party == 1 else x[:, half:]
    t0 = time.perf_counter()
    res = await train(
        mpc,
        mine,
        y if mpc.party == 1 else None,
        label_party=1,
        their_features=(features - half) if mpc.party == 1 else half,
        params=LrParams(epochs=epochs, batch_size=batch, learning_rate=0.1, tol=0.0, seed=1),
        scores_to_label=True,
    )
    out = {"lr_seconds": time.perf_counter() - t0, "epochs_run": float(res.epochs_run)}
    if res.train_scores is not None:
        out["train_auc"] = auc(res.train_scores, y)
        out["true_auc"] = auc(x @ w_true, y)
    return out


def sgb_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded table both SecureBoost parties draw (each keeps its half of the columns):
    a label from a non-linear function of every feature."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=(rows, features))
    z = np.sin(x[:, 0]) * 2 + x[:, 1] * x[:, -1] + np.abs(x[:, features // 2]) - 0.8
    z += x[:, 2:features:3].sum(axis=1) * 0.3
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(float)
    return x, y


async def sgb_workload(args: argparse.Namespace, other: Channel) -> dict[str, object]:
    """SecureBoost: p1 holds the label and the first half of the features, p0 the rest."""
    from rainbridge.compute import make_engine
    from rainbridge.protocols.fl.metrics import auc
    from rainbridge.protocols.fl.secureboost import SgbParams, train_feature, train_label

    x, y = sgb_data(args.sgb_rows, args.sgb_features)
    half = args.sgb_features // 2
    # each party's own engine, started (and its workers warmed) before the clock
    engine = make_engine({"engine": args.sgb_engine, "workers": args.sgb_workers})
    await engine.start()
    await engine.map(sgb_data, [(64, 2)] * max(1, engine.workers))
    try:
        t0 = time.perf_counter()
        if args.role == "p1":
            params = SgbParams(trees=args.sgb_trees, max_depth=args.sgb_depth, max_bin=32, seed=1)
            res = await train_label({"p0": other}, x[:, :half], y, params, me="p1", engine=engine)
            out: dict[str, object] = {"he_seconds": res.he_seconds, "trees": len(res.trees)}
            if res.train_scores is not None:
                out["train_auc"] = auc(res.train_scores, y)
        else:
            res = await train_feature(other, x[:, half:], me="p0", max_bin=32, engine=engine)
            out = {"trees": len(res.trees)}
        out["phases"] = res.phases
        seconds = time.perf_counter() - t0
    finally:
        await engine.close()
    return {"sgb_seconds": seconds, "engine": engine.name, **out}


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    if args.sgb_rows:  # two parties, no MPC engine: p1 listens for p0
        if args.role == "p1":
            other = await _listen(args.keys, "p1", "p0")
        else:
            other = await _dial(args.keys, "p0", "p1", args.peer_port)
        sgb = await sgb_workload(args, other)
        await other.close()
        return {
            "role": args.role,
            **sgb,
            "bytes_sent": other.bytes_sent,
            "bytes_received": other.bytes_received,
            "peak_rss_mib": peak_rss_mib(),
        }
    if args.role == "dealer":
        to1 = await _listen(args.keys, "dealer", "p1")
        to0 = await _listen(args.keys, "dealer", "p0")
        served = await run_dealer(to0, to1)
        return {"role": "dealer", "requests": served, "bytes_sent": to1.bytes_sent + to0.bytes_sent}
    provider: Provider
    party = 1 if args.role == "p1" else 0
    if args.setup == "ot":  # no dealer: p1 listens for p0, then both run the OT setup
        if party == 1:
            other = await _listen(args.keys, "p1", "p0")
        else:
            other = await _dial(args.keys, "p0", "p1", args.peer_port)
        provider = OtProvider(party, other, source=args.ot_source)
        t0 = time.perf_counter()
        await provider.setup()
        setup_seconds = time.perf_counter() - t0
    elif party == 1:
        dealer = await _dial(args.keys, "p1", "dealer", args.dealer_port)
        other = await _listen(args.keys, "p1", "p0")
        provider = DealerClient(await receive_seed(dealer), dealer)
    else:
        dealer = await _dial(args.keys, "p0", "dealer", args.dealer_port)
        other = await _dial(args.keys, "p0", "p1", args.peer_port)
        provider = SeedProvider(await receive_seed(dealer))
    mpc = Mpc(party, other, provider, args.frac)
    if args.lr_rows:
        out = await lr_workload(mpc, args.lr_rows, args.lr_features, args.lr_epochs, args.lr_batch)
    elif args.group_rows:
        out = await group_workload(mpc, args.group_rows, args.groups)
    else:
        out = await workload(mpc, args.n, args.reps, args.n_cmp, args.n_sort)
    await mpc.close()
    await other.close()
    return {
        "role": args.role,
        **out,
        "bytes_sent": other.bytes_sent,
        "bytes_received": other.bytes_received,
        "rounds": mpc.rounds,
        **({"ot_setup_seconds": setup_seconds} if args.setup == "ot" else {}),
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=NAMES, required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--dealer-port", type=int, default=0)
    ap.add_argument("--peer-port", type=int, default=0)
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-cmp", type=int, default=1 << 18)
    ap.add_argument("--n-sort", type=int, default=0)
    ap.add_argument("--setup", choices=["dealer", "ot"], default="dealer")
    ap.add_argument("--ot-source", choices=["silent", "iknp"], default="iknp")
    ap.add_argument("--frac", type=int, default=16)
    ap.add_argument("--group-rows", type=int, default=0, help="GROUP BY instead of mul/cmp")
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--lr-rows", type=int, default=0, help="vertical LR instead")
    ap.add_argument("--lr-features", type=int, default=30)
    ap.add_argument("--lr-epochs", type=int, default=5)
    ap.add_argument("--lr-batch", type=int, default=4096)
    ap.add_argument("--sgb-rows", type=int, default=0, help="SecureBoost instead (two parties)")
    ap.add_argument("--sgb-features", type=int, default=30)
    ap.add_argument("--sgb-trees", type=int, default=10)
    ap.add_argument("--sgb-depth", type=int, default=5)
    ap.add_argument("--sgb-engine", choices=["local", "ray"], default="local")
    ap.add_argument("--sgb-workers", type=int, default=0, help="engine workers; 0: one per CPU")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
