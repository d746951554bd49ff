"""``python -m rainbridge.bench predict``: online scoring latency of a joint model.

Three nodes on loopback (bank, telecom, tax as the dealer) with the demo's synthetic data,
the grants, a vertical LR trained by a job; then ``--calls`` applicants scored one by one
through the bank's REST API (``POST /v1/models/{id}/predict``), each gathering the
telecom's partial score over the data plane (mutual TLS, a fresh connection per request).
Latency is measured at the client, end to end, and at the node (its own figure).

``--batch K``: then the bank's rows are scored K times with the registered model in a job of
their own (``rainbridge model score``: a PSI of the two parties' rows, then ``predict``),
timed at the CLI (submit to result) and per component at the bank.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rainbridge.bench.common import machine
from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig

ROOT = Path(__file__).resolve().parents[3]


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def bench(args: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-predict-") as tmp:
        base = Path(tmp)
        sizes = DemoSizes(population=args.rows * 2, bank=args.rows, telecom=args.rows, tax=500)
        paths = write_demo_data(base / "data", sizes)
        f = Federation(base, ["bank", "telecom", "tax"], timeout=60)
        f.start()
        try:
            f.pin_all()
            for party, ds in (("bank", "customers"), ("telecom", "subscribers"),
                              ("tax", "taxpayers")):  # fmt: skip
                f.cli("dataset", "add", ds, "--path", str(paths[party]), "--id", "customer_id",
                      node=party)  # fmt: skip
            for owner, ds, peer in (("bank", "customers", "telecom"),
                                    ("telecom", "subscribers", "bank")):  # fmt: skip
                uses = "psi,train_lr,predict"
                f.cli("grant", "add", ds, "--peer", peer, "--columns", "*", "--components",
                      uses, "--receivers", "bank,telecom", node=owner)  # fmt: skip
            job = base / "lr.yaml"
            job.write_text((ROOT / "examples" / "jobs" / "lr-2party.yaml").read_text()
                           .replace("batch_size: 256", "batch_size: 2048"))  # fmt: skip
            row = f.cli_json("job", "submit", str(job), node="bank")
            model_id = f"{row['id']}.lr"
            inter = f.cli_json("job", "result", row["id"], node="bank")["result"]
            import pyarrow.parquet as pq

            path = inter["components"]["psi"]["outputs"]["intersection"]["path"]
            keys = pq.read_table(path, columns=["customer_id"]).column(0).to_pylist()
            cfg = NodeConfig.load(str(f.nodes["bank"].dir))
            client = httpx.Client(
                base_url=cfg.api_url, headers={"Authorization": f"Bearer {cfg.token()}"}
            )
            client_ms: list[float] = []
            node_ms: list[float] = []
            for k in keys[: args.calls]:
                s = time.perf_counter()
                r = client.post(f"/v1/models/{model_id}/predict", json={"key": k})
                client_ms.append((time.perf_counter() - s) * 1000)
                r.raise_for_status()
                node_ms.append(float(r.json()["milliseconds"]))
            client.close()
            batch = _batch(f, model_id, args.batch) if args.batch else None
        finally:
            f.stop()
    return {
        "benchmark": "predict",
        "machine": machine(),
        "setup": "bank scores one applicant at a time through its REST API; the telecom's "
        "partial score over the data plane (mutual TLS 1.3, a connection per request)",
        "calls": len(client_ms),
        "rows": args.rows,
        "client_ms": {
            "p50": _pct(client_ms, 0.5),
            "p95": _pct(client_ms, 0.95),
            "mean": round(statistics.mean(client_ms), 2),
        },
        "node_ms": {"p50": _pct(node_ms, 0.5), "p95": _pct(node_ms, 0.95)},
        **({"batch": batch} if batch else {}),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }


def _batch(f: Federation, model_id: str, repeat: int) -> dict[str, Any]:
    """Score the bank's rows ``repeat`` times with ``rainbridge model score``: medians."""
    total: list[float] = []
    align: list[float] = []
    score: list[float] = []
    rows = 0
    for _ in range(repeat):
        s = time.perf_counter()
        out = f.cli_json("model", "score", model_id, "--dataset", "bank=customers",
                         "--dataset", "telecom=subscribers", node="bank")  # fmt: skip
        total.append(time.perf_counter() - s)
        comps = f.cli_json("job", "result", out["job"], node="bank")["result"]["components"]
        align.append(float(comps["align"]["seconds"]))
        score.append(float(comps["score"]["seconds"]))
        rows = int(out["rows"])
    med = statistics.median(total)
    return {
        "setup": "a job of its own: RR22 PSI of the bank's and the telecom's rows, then "
        "predict with the registered model; timed from submit to result at the CLI",
        "repeat": repeat,
        "rows_scored": rows,
        "seconds": {"median": round(med, 3), "min": round(min(total), 3)},
        "component_seconds": {
            "align": round(statistics.median(align), 3),
            "score": round(statistics.median(score), 3),
        },
        "rows_per_second": round(rows / med, 1),
    }
