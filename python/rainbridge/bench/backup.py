"""Backup and restore of a node: time, archive size and peak memory.

A node directory is made with the default SQLite database, ``--entries`` signed ledger
entries and a job output of ``--output-mb`` MB; then ``node backup`` (with and without job
outputs) and ``node restore`` each run ``--repeat`` times in a child process of their own, so
each peak RSS is that step's alone. Restore includes verifying the whole ledger, which is
most of its time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rainbridge.bench.common import machine, median, run_json


def _make_node(base: Path, entries: int, output_mb: int) -> Path:
    from rainbridge.bench.governance import _node

    node = _node(base, "bank", "standard")
    body = {"dataset": "customers", "rows": 1000, "grants": {"telecom": "g-1"}}
    for i in range(entries):
        node.storage.log("dataset_read", body, f"job{i % 50}", actor="node")
    node.ledger.flush()
    # a succeeded job's output of the given size (random bytes: it compresses as little as
    # a Parquet file); outputs of jobs that did not succeed are not backed up
    from rainbridge.node.storage import JobRow

    job_id = "0" * 16
    node.storage.put_job(
        JobRow(id=job_id, name="j", spec={"parties": ["bank"]}, digest="0" * 64,
               initiator="bank", status="succeeded", result={})
    )  # fmt: skip
    out = base / "bank" / "outputs" / job_id
    out.mkdir(parents=True)
    with open(out / "intersection.parquet", "wb") as f:
        for _ in range(output_mb):
            f.write(os.urandom(1 << 20))
    return base / "bank"


def step_child() -> None:
    """One backup or restore, timed, in this process; prints JSON."""
    spec = json.loads(os.environ["RB_BENCH_STEP"])
    t0 = time.perf_counter()
    if spec["step"] == "restore":
        from rainbridge.node.restore import restore_node

        restore_node(spec["archive"], spec["target"])
        size = 0
    else:
        from rainbridge.node.backup import backup_node

        res = backup_node(spec["node"], spec["archive"], job_outputs=spec["outputs"])
        size = res.path.stat().st_size
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        hwm = next((ln.split()[1] for ln in f if ln.startswith("VmHWM:")), "0")
    print(json.dumps({"seconds": seconds, "bytes": size, "peak_rss_mib": int(hwm) // 1024}))


def _step(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-c", "from rainbridge.bench.backup import step_child; step_child()"]
    return run_json(cmd, timeout, env={"RB_BENCH_STEP": json.dumps(spec)})


def bench(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="rb-bench-backup-"))
    try:
        t0 = time.perf_counter()
        node = _make_node(base, args.entries, args.output_mb)
        made = time.perf_counter() - t0
        db_bytes = (node / "node.db").stat().st_size
        runs: dict[str, list[dict[str, Any]]] = {"backup": [], "backup_no_outputs": [],
                                                 "restore": []}  # fmt: skip
        for i in range(args.repeat):
            archive = base / f"b{i}.tgz"
            for name, outputs in (("backup", True), ("backup_no_outputs", False)):
                target = archive if outputs else base / f"n{i}.tgz"
                r = _step({"step": "backup", "node": str(node), "archive": str(target),
                           "outputs": outputs}, args.timeout)  # fmt: skip
                runs[name].append(r)
            r = _step({"step": "restore", "archive": str(archive),
                       "target": str(base / f"restored{i}")}, args.timeout)  # fmt: skip
            runs["restore"].append(r)
        out: dict[str, Any] = {
            "what": "node backup and restore (SQLite)",
            "machine": machine(),
            "entries": args.entries,
            "output_mb": args.output_mb,
            "database_bytes": db_bytes,
            "setup_seconds": round(made, 1),
        }
        for name, rs in runs.items():
            errors = [r["error"] for r in rs if "error" in r]
            if errors:
                out[name] = {"error": errors[0]}
                continue
            out[name] = {
                "seconds_median": round(median([r["seconds"] for r in rs]), 2),
                "seconds": [round(r["seconds"], 2) for r in rs],
                "archive_bytes": rs[0]["bytes"] or None,
                "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rs),
            }
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)
