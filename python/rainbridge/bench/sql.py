"""``python -m rainbridge.bench sql``: a two-party GROUP BY over aligned rows.

``SELECT t.plan, COUNT(*), SUM(b.amount), AVG(b.amount) … GROUP BY t.plan`` after PSI
alignment: the group keys at one party, the amounts at the other, the result to the key
party; two parties and a dealer as three processes over loopback mutual TLS 1.3, 10^7 rows
and 5 groups by default. The receiver checks its answer against the plaintext. The same
query over the joined plaintext in DuckDB and in numpy, in this process, is the reference:
what it costs when one party sees everything.
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


def _plaintext(rows: int, groups: int) -> dict[str, Any]:
    """The same GROUP BY on the joined plaintext: DuckDB (if installed) and numpy."""
    rng = np.random.default_rng(11)
    keys = rng.integers(0, groups, rows)
    amounts = rng.gamma(2.0, 5_000.0, rows).round(2)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    np.bincount(keys, minlength=groups)
    np.bincount(keys, weights=amounts, minlength=groups)
    out["numpy_seconds"] = round(time.perf_counter() - t0, 3)
    try:
        import duckdb
        import pyarrow as pa
    except ImportError:
        out["duckdb"] = "not installed"
        return out
    joined = pa.table({"plan": keys, "amount": amounts})  # noqa: F841 - DuckDB scans it by name
    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute(
        "SELECT plan, COUNT(*), SUM(amount), AVG(amount) FROM joined GROUP BY plan"
    ).fetchall()
    out["duckdb_seconds"] = round(time.perf_counter() - t0, 3)
    out["duckdb_version"] = duckdb.__version__
    return out


def bench(args: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-sql-") as tmp:
        keys = Path(tmp)
        for name in ("p0", "p1", "dealer"):
            create_identity(keys / name, name)
        work = ["--group-rows", str(args.rows), "--groups", str(args.groups)]
        runs = [run_once(keys, work, args.timeout, args.setup) for _ in range(args.repeat)]
    ok = [r for r in runs if "error" not in r]
    secs = median([r["seconds"] for r in ok]) if ok else None
    plain = [_plaintext(args.rows, args.groups) for _ in range(args.repeat)]
    return {
        "benchmark": "sql",
        "machine": machine(),
        "setup": "GROUP BY (keys at p0, amounts at p1) with COUNT/SUM/AVG over PSI-aligned rows; "
        + ("two parties + dealer, three" if args.setup == "dealer" else "two parties by OT, two")
        + " processes, loopback mutual TLS 1.3, result to p0",
        "rows": args.rows,
        "groups": args.groups,
        "ok": bool(ok) and len(ok) == len(runs) and all(r["counts_match"] for r in ok),
        "rainbridge": {
            "seconds": round(secs, 3) if secs is not None else None,
            "rows_per_s": round(args.rows / secs) if secs else None,
            "runs": runs,
        },
        "plaintext": {
            "numpy_seconds": median([p["numpy_seconds"] for p in plain]),
            "duckdb_seconds": median([p["duckdb_seconds"] for p in plain if "duckdb_seconds" in p])
            if any("duckdb_seconds" in p for p in plain)
            else None,
            "runs": plain,
        },
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
