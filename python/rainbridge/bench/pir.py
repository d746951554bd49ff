"""``python -m rainbridge.bench pir``: keyword PIR between two real nodes on loopback.

A bureau node publishes a table of ``--rows`` IDs (18 digits) with a ``--label-bytes``
label; a bank node copies the sealed table (private mode's replica) and then queries one ID
at a time through its REST API (``POST /v1/pir/{service}/query``), half present, half
absent; each query blinds the ID, crosses the data plane to the bureau (mutual TLS 1.3, a
fresh connection per request) for one OPRF evaluation, and opens the answer from the
replica. Also: the same in bucket mode, and queries/s with ``--clients`` concurrent callers.
``--bucket-batch N`` also times ``--batch-runs`` bucket-mode queries of N IDs each (half
present; every answer checked), whose answers arrive in pages of at most 1 MiB.
``--build-rows`` times the sealing alone (in-process) at a larger size (10^7).

``--mode lattice`` times lattice mode beside private mode instead of bucket mode, in the
same run: the bureau publishes both; the bank downloads the hint (seconds, bytes, messages)
and copies the replica, then the same single-ID queries go through each mode; every query's
messages are measured (JSON bytes up and down, their count), and queries/s with
``--clients`` callers are timed for both modes.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

from rainbridge.bench.common import machine, peak_rss_mib
from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def _ids(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(10**17, 10**18, size=n, dtype=np.int64)


def _label(i: int, args: Any) -> str:
    """The label of the ``i``-th ID :func:`_write_table` returns."""
    return f"{i:0{args.label_bytes}d}"


def _write_table(path: Path, n: int, label_bytes: int) -> list[str]:
    ids = _ids(n, 1)
    ids = np.unique(ids)[:n]
    label = pa.array(np.char.mod(f"%0{label_bytes}d", np.arange(len(ids))).astype(str))
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"customer_id": pa.array(ids.astype(str)), "label": label}), path)
    return [str(x) for x in ids[:5000]]


def build_only(rows: int, label_bytes: int) -> dict[str, Any]:
    """Seal ``rows`` IDs in-process: the bureau's preprocessing at scale."""
    from rainbridge.protocols.pir.table import PirTable

    ids = pa.array(np.unique(_ids(rows, 2)).astype(str))
    labels = pa.table({"label": pa.array(np.char.mod(f"%0{label_bytes}d", np.arange(len(ids))))})
    t0 = time.perf_counter()
    table = PirTable.build(ids, labels)
    return {
        "rows": len(ids),
        "seconds": round(time.perf_counter() - t0, 2),
        "bytes_sealed": int(table.rows.sealed.nbytes + table.rows.tags.nbytes),
        "peak_rss_mib": peak_rss_mib(),
    }


def bench(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "pir", "machine": machine(), "rows": args.rows,
                           "label_bytes": args.label_bytes}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rb-pir-") as tmp:
        base = Path(tmp)
        present = _write_table(base / "blacklist.parquet", args.rows, args.label_bytes)
        absent = [str(x) for x in _ids(5000, 3)]
        f = Federation(base, ["bank", "bureau"], timeout=60)
        f.start()
        try:
            f.pin_all()
            f.cli("dataset", "add", "blacklist", "--path", str(base / "blacklist.parquet"),
                  "--id", "customer_id", node="bureau")  # fmt: skip
            other = getattr(args, "mode", "bucket") or "bucket"
            modes = ("private", other)
            t0 = time.perf_counter()
            pub = f.cli_json("pir", "publish", "bl", "--dataset", "blacklist", "--labels",
                             "label", "--rate", "100000", "--burst", "100000",
                             "--modes", ",".join(modes), node="bureau")  # fmt: skip
            out["publish_seconds"] = round(time.perf_counter() - t0, 2)
            out["bucket_bits"] = pub["bucket_bits"]
            if pub.get("lattice"):
                out["lattice_layout"] = pub["lattice"]
            f.cli("grant", "add", "blacklist", "--peer", "bank", "--columns", "*",
                  "--components", "pir", "--receivers", "bank", node="bureau")  # fmt: skip
            sync = f.cli_json("pir", "sync", "bl", "--peer", "bureau", node="bank")
            out["sync"] = {k: sync[k] for k in ("seconds", "messages", "rows")}
            if other == "lattice":
                hint = f.cli_json("pir", "sync", "bl", "--peer", "bureau", "--mode", "lattice",
                                  node="bank")  # fmt: skip
                out["hint"] = {k: hint[k] for k in ("seconds", "bytes", "messages")}
            cfg = NodeConfig.load(str(f.nodes["bank"].dir))
            headers = {"Authorization": f"Bearer {cfg.token()}"}
            for mode in modes:
                client = httpx.Client(base_url=cfg.api_url, headers=headers, timeout=60)
                ms: list[float] = []
                node_ms: list[float] = []
                up: list[int] = []
                down: list[int] = []
                messages: list[int] = []
                for i in range(args.queries):
                    ident = present[i // 2] if i % 2 == 0 else absent[i // 2]
                    s = time.perf_counter()
                    body = {"peer": "bureau", "ids": [ident], "mode": mode}
                    r = client.post("/v1/pir/bl/query", json=body)
                    ms.append((time.perf_counter() - s) * 1000)
                    r.raise_for_status()
                    got = r.json()
                    assert got["results"][0]["found"] == (i % 2 == 0), got
                    if i % 2 == 0:
                        assert got["results"][0]["label"] == {"label": _label(i // 2, args)}
                    node_ms.append(float(got["milliseconds"]))
                    traffic = got.get("traffic") or {}
                    up.append(int(traffic.get("bytes_up", 0)))
                    down.append(int(traffic.get("bytes_down", 0)))
                    messages.append(int(traffic.get("messages", 0)))
                client.close()
                out[mode] = {
                    "queries": len(ms),
                    "client_ms": {"p50": _pct(ms, 0.5), "p95": _pct(ms, 0.95),
                                  "mean": round(statistics.mean(ms), 2)},
                    "node_ms": {"p50": _pct(node_ms, 0.5)},
                }  # fmt: skip
                if any(messages):
                    out[mode]["per_query"] = {
                        "bytes_up": int(statistics.median(up)),
                        "bytes_down": int(statistics.median(down)),
                        "messages": int(statistics.median(messages)),
                    }
            for mode in modes if other == "lattice" else ("private",):
                out[mode]["throughput"] = _throughput(
                    cfg.api_url, headers, present, args.clients, args.seconds, mode
                )
            if getattr(args, "bucket_batch", 0):
                metered = _metered_bytes(f)
                out["bucket_batch"] = _bucket_batches(
                    cfg.api_url, headers, present, absent, args.bucket_batch, args.batch_runs
                )
                answer = (_metered_bytes(f) - metered) / max(1, args.batch_runs)
                out["bucket_batch"]["answer_bytes_mean"] = int(answer)
                out["bucket_batch"]["answer_mib_mean"] = round(answer / (1 << 20), 1)
                info = f.cli_json("pir", "services", node="bureau")[0]
                out["bucket_batch"]["max_reply_bytes"] = info["max_reply_bytes"]
        finally:
            f.stop()
    if args.build_rows:
        out["build"] = build_only(args.build_rows, args.label_bytes)
    return out


def _metered_bytes(f: Federation) -> int:
    """Bytes of answers the bureau has metered for PIR (rows and evaluations, unencoded)."""
    report = f.cli_json("metering", "report", node="bureau")
    return sum(int(r["bytes"]) for r in report["lines"] if r["component_type"] == "pir")


def _bucket_batches(
    url: str,
    headers: dict[str, str],
    present: list[str],
    absent: list[str],
    batch: int,
    runs: int,
) -> dict[str, Any]:
    """``runs`` bucket-mode queries of ``batch`` IDs through the bank's REST API."""
    rng = np.random.default_rng(9)
    seconds: list[float] = []
    node_ms: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        for _ in range(runs):
            ids = [
                present[int(rng.integers(len(present)))]
                if i % 2 == 0
                else absent[int(rng.integers(len(absent)))]
                for i in range(batch)
            ]
            s = time.perf_counter()
            r = client.post("/v1/pir/bl/query", json={"peer": "bureau", "ids": ids,
                                                       "mode": "bucket"})  # fmt: skip
            seconds.append(time.perf_counter() - s)
            r.raise_for_status()
            got = r.json()["results"]
            assert [g["id"] for g in got] == ids
            assert all(g["found"] == (i % 2 == 0) for i, g in enumerate(got)), "wrong answer"
            node_ms.append(float(r.json()["milliseconds"]))
    return {
        "ids_per_query": batch,
        "runs": runs,
        "client_seconds": {"median": round(statistics.median(seconds), 2),
                           "all": [round(x, 2) for x in seconds]},
        "node_seconds_median": round(statistics.median(node_ms) / 1000, 2),
    }  # fmt: skip


def _throughput(
    url: str,
    headers: dict[str, str],
    ids: list[str],
    clients: int,
    seconds: float,
    mode: str = "private",
) -> dict[str, Any]:
    """Single-ID queries from ``clients`` threads for ``seconds``: answered per s."""
    done: list[int] = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def run(c: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            i = c
            while time.perf_counter() < stop:
                r = client.post("/v1/pir/bl/query",
                                json={"peer": "bureau", "ids": [ids[i % len(ids)]],
                                      "mode": mode})  # fmt: skip
                if r.status_code != 200:
                    errors.append(r.text[:200])
                    return
                done[c] += 1
                i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 2), "queries": sum(done),
            "per_second": round(sum(done) / wall, 1), "errors": errors[:3]}  # fmt: skip
