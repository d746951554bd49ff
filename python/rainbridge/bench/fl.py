"""``python -m rainbridge.bench fl``: vertical logistic regression, two parties (and a dealer),
or SecureBoost (``--model sgb``: two parties, 2048-bit Okamoto–Uchiyama) as processes over
loopback mutual TLS 1.3.

Synthetic rows (the same seeded table at both parties, each keeping its half of the
features; the label at party 1), mini-batch SGD with the piecewise sigmoid computed on
shares. The label party's training AUC is reported next to the AUC of the true weights,
and scikit-learn's on the joined plaintext, in this process, is the reference.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rainbridge.bench.common import machine, median
from rainbridge.bench.mpc import run_once
from rainbridge.crypto.certs import create_identity


def _plaintext(rows: int, features: int) -> dict[str, Any]:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return {"sklearn": "not installed"}
    rng = np.random.default_rng(13)
    x = rng.normal(size=(rows, features))
    w_true = rng.normal(size=features) / np.sqrt(features) * 2
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ w_true)))).astype(float)
    t0 = time.perf_counter()
    ref = LogisticRegression(max_iter=200).fit(x, y)
    seconds = time.perf_counter() - t0
    return {
        "sklearn_seconds": round(seconds, 3),
        "sklearn_auc": roc_auc_score(y, ref.decision_function(x)),
    }


def _xgboost(rows: int, features: int, trees: int, depth: int) -> dict[str, Any]:
    try:
        import xgboost as xgb

        from rainbridge.bench.mpc_party import sgb_data
        from rainbridge.protocols.fl.metrics import auc
    except ImportError:
        return {"xgboost": "not installed"}
    x, y = sgb_data(rows, features)
    t0 = time.perf_counter()
    m = xgb.XGBClassifier(n_estimators=trees, max_depth=depth, learning_rate=0.3, max_bin=32)
    m.fit(x, y)
    seconds = time.perf_counter() - t0
    return {"xgboost_seconds": round(seconds, 3), "xgboost_auc": auc(m.predict_proba(x)[:, 1], y)}


def bench_sgb(args: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-fl-") as tmp:
        keys = Path(tmp)
        for name in ("p0", "p1"):
            create_identity(keys / name, name)
        work = [
            "--sgb-rows", str(args.rows), "--sgb-features", str(args.features),
            "--sgb-trees", str(args.trees), "--sgb-depth", str(args.depth),
            "--sgb-engine", args.engine, "--sgb-workers", str(args.workers),
        ]  # fmt: skip
        runs = [run_once(keys, work, args.timeout, "ot") for _ in range(args.repeat)]
    ok = [r for r in runs if "error" not in r]
    secs = median([r["seconds"] for r in ok]) if ok else None
    # each party's median seconds per phase over the runs (where its time goes)
    phases: dict[str, dict[str, float]] = {}
    for party in ("p0", "p1"):
        per = [r["phases"][party] for r in ok if (r.get("phases") or {}).get(party)]
        names = sorted({k for d in per for k in d})
        phases[party] = {k: round(median([d.get(k, 0.0) for d in per]), 2) for k in names}
    return {
        "benchmark": "fl-sgb",
        "machine": machine(),
        "setup": f"SecureBoost, {args.features} features split in half, label at p1, "
        "2048-bit OU, two processes, loopback mutual TLS 1.3",
        "rows": args.rows,
        "engine": args.engine,
        "workers": args.workers,
        "trees": args.trees,
        "max_depth": args.depth,
        "ok": bool(ok) and len(ok) == len(runs),
        "rainbridge": {
            "seconds": round(secs, 2) if secs is not None else None,
            "phases_median": phases,
            "runs": runs,
        },
        "plaintext": _xgboost(args.rows, args.features, args.trees, args.depth),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }


def bench(args: Any) -> dict[str, Any]:
    if getattr(args, "model", "lr") == "sgb":
        return bench_sgb(args)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-fl-") as tmp:
        keys = Path(tmp)
        for name in ("p0", "p1", "dealer"):
            create_identity(keys / name, name)
        work = [
            "--lr-rows", str(args.rows), "--lr-features", str(args.features),
            "--lr-epochs", str(args.epochs), "--lr-batch", str(args.batch),
        ]  # fmt: skip
        source = getattr(args, "ot_source", "iknp")
        runs = [run_once(keys, work, args.timeout, args.setup, source) for _ in range(args.repeat)]
    ok = [r for r in runs if "error" not in r]
    secs = median([r["seconds"] for r in ok]) if ok else None
    return {
        "benchmark": "fl",
        "machine": machine(),
        "setup": f"vertical LR, {args.features} features split in half, label at p1; "
        + (
            "two parties + dealer, three"
            if args.setup == "dealer"
            else f"two parties by OT ({source}), two"
        )
        + " processes, loopback mutual TLS 1.3",
        "rows": args.rows,
        "epochs": args.epochs,
        "batch": args.batch,
        "ok": bool(ok) and len(ok) == len(runs),
        "rainbridge": {"seconds": round(secs, 2) if secs is not None else None, "runs": runs},
        "plaintext": _plaintext(args.rows, args.features),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
