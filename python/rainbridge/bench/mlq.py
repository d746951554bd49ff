"""``python -m rainbridge.bench mlq``: the multi-lender count between five real nodes.

Four lenders, each with ``--rows`` applications over 60 days (IDs drawn from a population
twice that size, so people appear at several lenders), and a merger, on loopback with
mutual TLS. Measured: the build (the ring over the four 30-day windows) and ``--counts``
single-ID counts through the first lender's REST API (``POST /v1/mlq/{name}/count``), each
a blinded pass through the three other lenders (a fresh TLS connection per hop).
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rainbridge.bench.common import machine
from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig

LENDERS = ["bank", "fintech", "consumer", "microloan"]


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def bench(args: Any) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    population = rng.integers(10**17, 10**18, size=2 * args.rows).astype(str)
    end = dt.date(2026, 12, 1)
    out: dict[str, Any] = {"benchmark": "mlq", "machine": machine(), "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="rb-mlq-") as tmp:
        base = Path(tmp)
        f = Federation(base, [*LENDERS, "operator"], timeout=120)
        f.start()
        try:
            f.pin_all()
            for lender in LENDERS:
                ids = rng.choice(population, size=args.rows, replace=False)
                days = rng.integers(0, 60, size=args.rows)
                dates = (np.datetime64(end.isoformat()) - days).astype(str)
                path = base / f"{lender}.csv"
                with open(path, "w") as fh:
                    fh.write("customer_id,applied_on\n")
                    fh.writelines(f"{i},{d}\n" for i, d in zip(ids, dates, strict=True))
                f.cli(
                    "dataset",
                    "add",
                    "apps",
                    "--path",
                    str(path),
                    "--id",
                    "customer_id",
                    node=lender,
                )
                f.cli(
                    "mlq",
                    "join",
                    "m",
                    "--lenders",
                    ",".join(LENDERS),
                    "--merger",
                    "operator",
                    "--dataset",
                    "apps",
                    "--date-column",
                    "applied_on",
                    "--rate",
                    "1000",
                    node=lender,
                )
            f.cli(
                "mlq",
                "join",
                "m",
                "--lenders",
                ",".join(LENDERS),
                "--merger",
                "operator",
                node="operator",
            )
            built = f.cli_json("mlq", "build", "m", "--end", end.isoformat(), node="operator")
            out["build"] = {k: built[k] for k in ("seconds", "people", "sizes")}
            cfg = NodeConfig.load(str(f.nodes["bank"].dir))
            client = httpx.Client(
                base_url=cfg.api_url,
                headers={"Authorization": f"Bearer {cfg.token()}"},
                timeout=60,
            )
            client.post("/v1/mlq/m/count", json={"id": "warm-up"}).raise_for_status()
            ms: list[float] = []
            node_ms: list[float] = []
            counts: list[int] = []
            for who in population[: args.counts]:
                s = time.perf_counter()
                r = client.post("/v1/mlq/m/count", json={"id": str(who)})
                ms.append((time.perf_counter() - s) * 1000)
                r.raise_for_status()
                node_ms.append(float(r.json()["milliseconds"]))
                counts.append(int(r.json()["count"]))
            client.close()
        finally:
            f.stop()
    out["counts"] = {
        "calls": len(ms),
        "client_ms": {
            "p50": _pct(ms, 0.5),
            "p95": _pct(ms, 0.95),
            "mean": round(statistics.mean(ms), 2),
        },
        "node_ms": {"p50": _pct(node_ms, 0.5)},
        "answers": {str(c): counts.count(c) for c in sorted(set(counts))},
    }
    return out
