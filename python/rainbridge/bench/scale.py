"""``python -m rainbridge.bench scale``: PSI by bucket pairs on a compute engine, by workers.

For each worker count ``W`` two party processes (:mod:`rainbridge.bench.scale_party`) run
over loopback mutual TLS, each with its own engine of ``W`` slots (``ray``: a Ray instance of
its own per party; ``local``: threads), ``--repeat`` times, and with ``--drop-after-bytes``
once more over a link that drops half way and resumes. The IDs are made before the clock:
by default written to one Parquet file per party, whose row groups the engine's tasks read
and hash (``--input array``: in memory, split by the job worker).

Reported per ``W``: median seconds, the parties' split seconds, buckets, bytes on the wire
per input item, seconds per bucket pair at one worker slot and the parallel efficiency
``E(W) = t(1) / (W t(W))``; with ``--protocol rr22`` a projection of 10^9 × 10^9 beside
SecretFlow's published figures. Both parties share this machine's cores: ``W`` workers per
party keep ``2W`` slots busy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rainbridge.bench.common import PY, id_batches, machine, make_ids, median
from rainbridge.compute.psi import bucket_count
from rainbridge.crypto.certs import create_identity

#: Parquet row group (and rows per engine task) of the inputs: 2^20, fewer for tiny inputs
#: so that even a smoke run has several chunks to share out
ROW_GROUP = 1 << 20
#: the projected run: 10^9 IDs at each party
PROJECTION_ROWS = 10**9
#: cores per party in the projection
PROJECTION_CORES = (8, 32)
#: SecretFlow's published RR22 PSI time for 10^9 × 10^9, in hours, by cores per party
#: (SecretFlow's PSI benchmark documentation, RR22 10^9 × 10^9)
SECRETFLOW_RR22_1E9_HOURS = {8: 1.08, 32: 0.62}
#: the link of the projection's lower bound on wire time
PROJECTION_LINK_BITS_PER_S = 10e9


def parse_workers(text: str) -> list[int]:
    """``"1,2,4"`` as a sorted list of distinct positive worker counts."""
    try:
        ws = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--workers {text!r}: a comma list of positive integers") from None
    if not ws or ws[0] < 1:
        raise SystemExit(f"--workers {text!r}: a comma list of positive integers")
    return ws


def write_parquet(n: int, overlap: float, side: str, path: Path) -> int:
    """This side's IDs (the same as the PSI benchmark's) as a Parquet file, column ``id``;
    returns its row group size."""
    group = min(ROW_GROUP, max(1, n // 4))
    schema = pa.schema([("id", pa.large_string())])
    with pq.ParquetWriter(path, schema) as w:
        if n <= 1 << 22:
            w.write_table(pa.table({"id": make_ids(n, n, overlap, side)}), row_group_size=group)
        else:
            # made batch by batch: 10^8 IDs need not be in memory at once
            _, gen = id_batches(n, n, overlap, side, batch=group)
            for arr in gen:
                w.write_table(pa.table({"id": arr}), row_group_size=group)
    return group


def run_pair(
    args: Any, workers: int, keys: Path, inputs: dict[str, Path] | None, chunk_rows: int
) -> dict[str, Any]:
    """Both parties' processes at ``workers`` slots each; their JSON, or an error."""
    common = ["--keys", str(keys), "--n", str(args.n), "--overlap", str(args.overlap),
              "--protocol", args.protocol, "--engine", args.engine, "--workers", str(workers),
              "--bucket-items", str(args.bucket_items), "--repeat", str(args.repeat),
              "--drop-after-bytes", str(args.drop_after_bytes or 0),
              "--chunk-rows", str(chunk_rows), "--work", str(keys),
              "--timeout", str(args.timeout)]  # fmt: skip

    def side(s: str) -> list[str]:
        return ["--parquet", str(inputs[s])] if inputs else []

    # W slots should mean W cores: the core's own threads (rayon) would otherwise use every
    # core of the machine even at W = 1 on the local engine (Ray tasks get 1 thread each)
    env = {**os.environ, "RAYON_NUM_THREADS": str(workers)}

    a = subprocess.Popen(
        [PY, "-m", "rainbridge.bench.scale_party", "--side", "a", *common, *side("a")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert a.stdout is not None
    first = a.stdout.readline()
    try:
        port = int(json.loads(first)["port"])
    except (ValueError, KeyError, TypeError):
        a.kill()
        err = a.stderr.read() if a.stderr else ""
        return {"error": f"party a did not start: {_last_line(err or first)}"}
    b = subprocess.Popen(
        [PY, "-m", "rainbridge.bench.scale_party", "--side", "b", "--port", str(port),
         *common, *side("b")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    limit = args.timeout * (args.repeat + 1) + 120
    try:
        out_b, err_b = b.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop(a, b)
        return {"error": f"timed out after {limit:g} s"}
    try:
        # a party b that failed leaves a waiting for it: a's own error comes at once if any
        out_a, err_a = a.communicate(timeout=15 if b.returncode else limit)
    except subprocess.TimeoutExpired:
        _stop(a)
        if b.returncode:
            return {"error": f"party b exited {b.returncode}: {_last_line(err_b)}"}
        return {"error": f"party a timed out after {limit:g} s"}
    if a.returncode or b.returncode:
        return {
            "error": f"party exited {a.returncode}/{b.returncode}: "
            f"{_last_line(err_a if a.returncode else err_b)}"
        }
    return {"a": _last_json(out_a), "b": _last_json(out_b)}


def _stop(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        p.kill()
        p.communicate()


def _last_line(text: str) -> str:
    lines = text.strip().splitlines() or ["failed"]
    return lines[-1][:300]


def _last_json(out: str) -> dict[str, Any]:
    return dict(json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1]))


def _run(ra: dict[str, Any], rb: dict[str, Any], expected: int) -> dict[str, Any]:
    """One run as both parties saw it: the slower party's seconds, bytes each way."""
    run: dict[str, Any] = {
        "seconds": max(ra["seconds"], rb["seconds"]),
        "split_seconds": {"a": ra["split_seconds"], "b": rb["split_seconds"]},
        "intersection": ra["intersection"],
        "buckets": ra["buckets"],
        "window": ra["window"],
        "bytes_a_to_b": ra["bytes_sent"],
        "bytes_b_to_a": rb["bytes_sent"],
        "bucket_sessions": {"a": ra["bucket_sessions"], "b": rb["bucket_sessions"]},
        "reconnects": max(ra["reconnects"], rb["reconnects"]),
        "buckets_kept_on_resume": {
            "a": ra["buckets_kept_on_resume"],
            "b": rb["buckets_kept_on_resume"],
        },
        "buckets_run_again": {"a": ra["buckets_run_again"], "b": rb["buckets_run_again"]},
    }
    if ra["intersection"] != expected or rb["intersection"] != expected:
        run["error"] = (
            f"intersection {ra['intersection']} (a), {rb['intersection']} (b) "
            f"!= expected {expected}"
        )
    return run


def summarise(pair: dict[str, Any], workers: int, n: int, expected: int) -> dict[str, Any]:
    """The figures at one worker count (efficiency is filled in once all are known)."""
    out: dict[str, Any] = {"workers": workers, "busy_slots": 2 * workers}
    if "error" in pair:
        out["error"] = pair["error"]
        return out
    pa_, pb_ = pair["a"], pair["b"]
    runs = [_run(ra, rb, expected) for ra, rb in zip(pa_["runs"], pb_["runs"], strict=True)]
    ok = [r for r in runs if "error" not in r]
    out["input"] = pa_["input"]
    out["runs"] = runs
    out["peak_rss_mib"] = {"a": pa_["peak_rss_mib"], "b": pb_["peak_rss_mib"]}
    if len(ok) != len(runs):
        out["error"] = next(r["error"] for r in runs if "error" in r)
    if ok:
        t = median([r["seconds"] for r in ok])
        buckets = ok[0]["buckets"]
        wire = median([r["bytes_a_to_b"] + r["bytes_b_to_a"] for r in ok])
        out.update(
            median_seconds=round(t, 3),
            split_seconds={
                s: round(median([r["split_seconds"][s] for r in ok]), 3) for s in ("a", "b")
            },
            buckets=buckets,
            window=ok[0]["window"],
            bytes_per_item=round(wire / (2 * n), 2) if n else None,
            per_bucket_seconds=round(t / (buckets / workers), 4),
        )
    drop = pb_.get("drop")
    if drop is not None and pa_.get("drop") is not None:
        d = _run(pa_["drop"], drop, expected)
        d["dropped_at_b"] = bool(drop.get("dropped_here"))
        if not d["dropped_at_b"]:
            d["note"] = "b sent fewer bytes than --drop-after-bytes: the link never dropped"
        if "median_seconds" in out:
            d["seconds_lost"] = round(d["seconds"] - out["median_seconds"], 3)
        out["drop"] = d
        if "error" in d and "error" not in out:
            out["error"] = f"drop run: {d['error']}"
    return out


def add_efficiency(per_w: list[dict[str, Any]]) -> str | None:
    """``E(W) = t(1) / (W t(W))`` on every summary; the reference is W = 1, else the
    smallest W measured (then ``E`` is relative to it: ``t(w0) w0 / (W t(W))``)."""
    good = [s for s in per_w if "median_seconds" in s]
    if not good:
        return None
    ref = good[0]
    for s in good:
        s["efficiency"] = round(
            ref["median_seconds"] * ref["workers"] / (s["workers"] * s["median_seconds"]), 3
        )
    return (
        "t(1) / (W t(W))"
        if ref["workers"] == 1
        else f"t({ref['workers']}) {ref['workers']} / (W t(W)) (no run at W = 1)"
    )


def projection(per_w: list[dict[str, Any]], bucket_items: int) -> dict[str, Any]:
    """10^9 × 10^9 RR22 from the measured per-bucket time and efficiency (no peer run)."""
    good = [s for s in per_w if "median_seconds" in s]
    one = next((s for s in good if s["workers"] == 1), None)
    if one is None or not good:
        return {"error": "needs a good run at W = 1"}
    largest = good[-1]
    eff = min(1.0, largest["efficiency"])
    buckets = bucket_count(PROJECTION_ROWS, bucket_items)
    pbs = one["per_bucket_seconds"]
    link_s = one["bytes_per_item"] * 2 * PROJECTION_ROWS * 8 / PROJECTION_LINK_BITS_PER_S
    by_cores = {}
    for c in PROJECTION_CORES:
        hours = buckets * pbs / (c * eff) / 3600
        by_cores[str(c)] = {
            "hours": round(hours, 3),
            "secretflow_hours": SECRETFLOW_RR22_1E9_HOURS[c],
            "secretflow_over_ours": round(SECRETFLOW_RR22_1E9_HOURS[c] / hours, 2),
        }
    return {
        "rows_each": PROJECTION_ROWS,
        "buckets": buckets,
        "formula": "hours = buckets * per_bucket_seconds(W=1) / (C * E) / 3600",
        "per_bucket_seconds_w1": pbs,
        "efficiency": round(eff, 3),
        "efficiency_is": (
            f"the measured E at the largest W here (W = {largest['workers']}, "
            f"{largest['busy_slots']} busy slots), capped at 1"
        ),
        "by_cores_per_party": by_cores,
        "link_hours_lower_bound": round(link_s / 3600, 3),
        "link": "bytes_per_item(W=1) * 2e9 items over 10 Gbit/s: wire time alone",
        "secretflow_source": "SecretFlow's PSI benchmark documentation, RR22 10^9 x 10^9",
    }


def bench(args: Any) -> dict[str, Any]:
    """Run both parties at each worker count; figures, efficiency and the projection."""
    workers = parse_workers(args.workers)
    if args.n < 1:
        raise SystemExit("--n must be positive")
    host = machine()  # before the runs: the load average says how busy the machine was
    expected = int(args.n * args.overlap)
    per_w: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rainbridge-scale.") as tmp:
        keys = Path(tmp)
        create_identity(keys / "a", "alice")
        create_identity(keys / "b", "bob")
        inputs: dict[str, Path] | None = None
        chunk_rows = ROW_GROUP
        if args.input == "parquet":
            inputs = {s: keys / f"{s}.parquet" for s in ("a", "b")}
            for s, path in inputs.items():
                chunk_rows = write_parquet(args.n, args.overlap, s, path)
        for w in workers:
            pair = run_pair(args, w, keys, inputs, chunk_rows)
            per_w.append(summarise(pair, w, args.n, expected))
    formula = add_efficiency(per_w)
    input_kind = next((s["input"] for s in per_w if "input" in s), args.input)
    out: dict[str, Any] = {
        "benchmark": "scale",
        "protocol": args.protocol,
        "engine": args.engine,
        "n": args.n,
        "m": args.n,
        "overlap": args.overlap,
        "expected_intersection": expected,
        "bucket_items": args.bucket_items,
        "repeat": args.repeat,
        "drop_after_bytes": args.drop_after_bytes or None,
        "input": {
            "parquet": f"a Parquet file per party, row groups of {chunk_rows} rows, read and "
            "hashed by the engine's tasks (made before the clock)",
            "array": "an Arrow array in memory per party, hashed and split by the job worker",
            "id_batches": "IDs made batch by batch while the job worker hashes and splits them",
        }.get(input_kind, input_kind),
        "definitions": {
            "seconds": "the slower party's run_bucketed_psi time: hello, hashing and split, "
            "every bucket pair, the final count (engine and link set up before)",
            "bytes_per_item": "bytes on the link both ways / (n + m)",
            "per_bucket_seconds": "seconds / (buckets / W): the wall time of one bucket pair "
            "at one worker slot (split included)",
            "efficiency": formula,
            "busy_slots": "2 W: both parties run on this machine's cores",
            "core_threads": "RAYON_NUM_THREADS = W in each party process (the local engine's "
            "core calls); each Ray task runs the core on 1 thread",
            "seconds_lost": "the drop run's seconds minus the median without a drop, same W",
        },
        "ok": bool(per_w) and all("error" not in s for s in per_w),
        "machine": host,
        "date": time.strftime("%Y-%m-%d"),
        "by_workers": per_w,
    }
    if args.protocol == "rr22":
        out["projection"] = projection(per_w, args.bucket_items)
    return _finite(out)


def _finite(obj: Any) -> Any:
    """NaN or infinity (no good run) would make invalid JSON: print null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
