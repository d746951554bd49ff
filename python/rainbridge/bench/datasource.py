"""``python -m rainbridge.bench datasource``: datasets read in place from SQL databases.

The same generated rows (an 18-character ID, an int64, a double, a 16-character text) in a
Parquet file, a PostgreSQL table and a MySQL/MariaDB table (servers given by URL, their
databases used for scratch tables that are dropped at the end):

* rows/s and peak RSS of a full read of every column through the dataset readers
  (``iter_dataset``, the production path of a job), each in a child process;
* with ``--candidates``, rows/s of each candidate driver on the first ``--candidate-rows``
  rows: ADBC's PostgreSQL driver, ConnectorX (both servers), and DB-API with server-side
  cursors (psycopg's named cursor, pymysql's SSCursor) feeding pyarrow;
* the peak RSS of a local RR22 PSI (both parties in one child process) whose party ``a``
  reads its IDs from the Parquet file or from the PostgreSQL table; party ``b`` reads the
  same Parquet file in both runs, so the difference is the reading's.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.bench.common import machine, make_ids

_TABLE = "rb_bench_rows"


def _rows(n: int, side: str, overlap: float) -> pa.Table:
    ids = make_ids(n, n, overlap, side)
    rng = np.random.default_rng(5 if side == "a" else 6)
    ints = rng.integers(-(1 << 62), 1 << 62, n)
    text = pa.array(np.char.mod("%016x", rng.integers(0, 1 << 62, n)).astype(object), pa.string())
    return pa.table({"id": ids.cast(pa.string()), "a": ints, "b": rng.random(n), "c": text})


def _load_pg(url: str, table: pa.Table, name: str) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    from rainbridge.data.sql_source import parse_url

    u = parse_url(url)
    libpq = u.libpq().replace(
        "default_transaction_read_only%3Don", "default_transaction_read_only%3Doff"
    )
    with adbc.connect(libpq) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.adbc_ingest(name, table, mode="create")
        conn.commit()


def _load_mysql(url: str, table: pa.Table, name: str, tmp: Path) -> None:
    import pymysql

    from rainbridge.data.sql_source import parse_url

    u = parse_url(url)
    path = tmp / f"{name}.csv"
    pacsv.write_csv(table, path, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    conn = pymysql.connect(
        host=u.host, port=u.port or 3306, user=u.user, password=u.password, database=u.database,
        local_infile=True,
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(
            f"CREATE TABLE {name} (id varchar(18), a bigint, b double, c varchar(16)) "
            "CHARACTER SET utf8mb4"
        )
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {name} FIELDS TERMINATED BY ','")
    conn.commit()
    conn.close()
    path.unlink()


def _drop(url: str, names: list[str]) -> None:
    from rainbridge.data.sql_source import parse_url

    u = parse_url(url)
    if u.dialect == "postgresql":
        import psycopg

        with psycopg.connect(u.libpq().replace("%3Don", "%3Doff")) as conn:
            for n in names:
                conn.execute(f"DROP TABLE IF EXISTS {n}")
    else:
        import pymysql

        conn = pymysql.connect(
            host=u.host, port=u.port or 3306, user=u.user, password=u.password,
            database=u.database,
        )  # fmt: skip
        with conn.cursor() as cur:
            for n in names:
                cur.execute(f"DROP TABLE IF EXISTS {n}")
        conn.commit()
        conn.close()


def _peak_rss_mib() -> int:
    """This process image's peak RSS. Not ru_maxrss: Linux keeps that across execve, so a
    child forked from a large parent would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def read_child() -> None:
    """Register one source and read all its columns (in a child process: its peak RSS is
    the reading's)."""
    from rainbridge.data import inspect_dataset, iter_dataset
    from rainbridge.data.sql_source import inspect_sql

    spec = json.loads(sys.stdin.readline())
    t0 = time.perf_counter()
    if spec["source"] == "parquet":
        ref = inspect_dataset("rows", spec["path"], "id")
    else:
        ref = inspect_sql("rows", spec["url"], "id", table=spec["table"])
    t1 = time.perf_counter()
    n = 0
    for batch in iter_dataset(ref, list(ref.columns)):
        n += batch.num_rows
    s = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "register_seconds": round(t1 - t0, 2),
                "rows": n,
                "seconds": round(s, 2),
                "rows_per_s": round(n / s),
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def _child(fn: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-c", f"from rainbridge.bench.datasource import {fn}; {fn}()"],
        input=json.dumps(spec) + "\n",  # a URL on stdin, not in the process list
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1][:300] if r.stderr.strip() else "failed"}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def _candidates(pg: str | None, my: str | None, name: str, rows: int) -> dict[str, Any]:
    """Each driver reads ``rows`` rows of ``name`` into Arrow batches."""
    from rainbridge.data.sql_source import parse_url

    sql = f"SELECT id, a, b, c FROM {name}"
    out: dict[str, Any] = {}

    def timed(label: str, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            n = fn()
        except Exception as exc:  # a candidate that fails is reported, not fatal
            out[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            return
        s = time.perf_counter() - t0
        out[label] = {"rows": n, "seconds": round(s, 2), "rows_per_s": round(n / s)}

    def from_rows(rows_: list[tuple[Any, ...]]) -> pa.RecordBatch:
        cols = list(zip(*rows_, strict=True))
        return pa.record_batch(
            [pa.array(cols[0], pa.string()), pa.array(cols[1], pa.int64()),
             pa.array(cols[2], pa.float64()), pa.array(cols[3], pa.string())],
            names=["id", "a", "b", "c"],
        )  # fmt: skip

    if pg:
        u = parse_url(pg)

        def adbc() -> int:
            import adbc_driver_postgresql.dbapi as a

            with a.connect(u.libpq()) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return sum(b.num_rows for b in cur.fetch_record_batch())

        def psycopg_named() -> int:
            import psycopg

            n = 0
            with psycopg.connect(u.libpq()) as conn, conn.cursor(name="rb_bench") as cur:
                cur.execute(sql)
                while chunk := cur.fetchmany(65536):
                    n += from_rows(chunk).num_rows
            return n

        def cx_pg() -> int:
            import connectorx

            uri = u.libpq().split("?")[0]
            reader = connectorx.read_sql(uri, sql, return_type="arrow_stream", batch_size=65536)
            return sum(b.num_rows for b in reader)

        timed("postgresql_adbc", adbc)
        timed("postgresql_connectorx", cx_pg)
        timed("postgresql_psycopg_named_cursor", psycopg_named)
    if my:
        m = parse_url(my)

        def cx_my() -> int:
            import connectorx

            reader = connectorx.read_sql(
                m.mysql_uri(), sql, return_type="arrow_stream", batch_size=65536
            )
            return sum(b.num_rows for b in reader)

        def pymysql_ss() -> int:
            import pymysql
            import pymysql.cursors

            conn = pymysql.connect(
                host=m.host, port=m.port or 3306, user=m.user, password=m.password,
                database=m.database, cursorclass=pymysql.cursors.SSCursor,
            )  # fmt: skip
            n = 0
            with conn.cursor() as cur:
                cur.execute(sql)
                while chunk := cur.fetchmany(65536):
                    n += from_rows(chunk).num_rows
            conn.close()
            return n

        timed("mysql_connectorx", cx_my)
        timed("mysql_pymysql_sscursor", pymysql_ss)
    return out


def psi_child() -> None:
    """One local RR22 PSI (run in a child process: its peak RSS is the measurement)."""
    from rainbridge.data import inspect_dataset
    from rainbridge.data.sql_source import inspect_sql
    from rainbridge.jobs.local import run_local
    from rainbridge.jobs.spec import JobSpec

    spec = json.loads(sys.stdin.readline())
    if spec["source"] == "parquet":
        a = inspect_dataset("ids", spec["a"], "id")
    else:
        a = inspect_sql("ids", spec["a"], "id", table=spec["table"])
    b = inspect_dataset("ids", spec["b"], "id")
    job = JobSpec.model_validate(
        {
            "name": "datasource-bench",
            "parties": ["a", "b"],
            "components": [
                {
                    "id": "psi",
                    "type": "psi",
                    "params": {"protocol": "rr22", "memory_limit_mb": spec["memory_limit_mb"]},
                    "inputs": {
                        "a": {"dataset": "ids", "id": "id"},
                        "b": {"dataset": "ids", "id": "id"},
                    },
                    "outputs": {"intersection": {"receivers": ["a"]}},
                }
            ],
        }
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-ds-psi-") as out:
        res = run_local(job, {"a": {"ids": a}, "b": {"ids": b}}, out, timeout=3600)
        size = res["a"]["components"]["psi"]["intersection_size"]
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - t0, 2),
                "intersection": size,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def _psi(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    return _child("psi_child", spec, timeout)


def bench(args: Any) -> dict[str, Any]:
    from rainbridge.data.sql_source import mask_url

    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "datasource",
        "machine": machine(),
        "rows": args.rows,
        "columns": "id (18-char text), a (int64), b (double), c (16-char text)",
        "servers": {"postgresql": mask_url(args.pg_url) if args.pg_url else None,
                    "mysql": mask_url(args.mysql_url) if args.mysql_url else None},
    }  # fmt: skip
    cand = f"{_TABLE}_cand"
    with tempfile.TemporaryDirectory(prefix="rb-ds-") as tmp:
        base = Path(tmp)
        table = _rows(args.rows, "a", args.overlap)
        pq.write_table(table, base / "a.parquet")
        pq.write_table(_rows(args.rows, "b", args.overlap).select(["id"]), base / "b.parquet")
        load: dict[str, float] = {}
        if args.pg_url:
            s = time.perf_counter()
            _load_pg(args.pg_url, table, _TABLE)
            load["postgresql_seconds"] = round(time.perf_counter() - s, 1)
        if args.mysql_url:
            s = time.perf_counter()
            _load_mysql(args.mysql_url, table, _TABLE, base)
            load["mysql_seconds"] = round(time.perf_counter() - s, 1)
        if args.candidates:
            head = table.slice(0, min(args.candidate_rows, args.rows))
            if args.pg_url:
                _load_pg(args.pg_url, head, cand)
            if args.mysql_url:
                _load_mysql(args.mysql_url, head, cand, base)
        del table
        result["load"] = load
        try:
            reads: dict[str, Any] = {
                "setup": "register, then read every column through iter_dataset, in a child "
                "process (its peak RSS)",
                "parquet": _child(
                    "read_child", {"source": "parquet", "path": str(base / "a.parquet")},
                    args.timeout,
                ),
            }  # fmt: skip
            for label, url in (("postgresql", args.pg_url), ("mysql", args.mysql_url)):
                if url:
                    spec = {"source": "sql", "url": url, "table": _TABLE}
                    reads[label] = _child("read_child", spec, args.timeout)
            result["read_all_columns"] = reads
            if args.candidates:
                result["candidates"] = {
                    "rows": min(args.candidate_rows, args.rows),
                    **_candidates(args.pg_url, args.mysql_url, cand, args.candidate_rows),
                }
            if not args.skip_psi:
                common = {"b": str(base / "b.parquet"), "memory_limit_mb": args.memory_limit_mb}
                psi = {
                    "parquet": _psi(
                        {**common, "source": "parquet", "a": str(base / "a.parquet")},
                        args.timeout,
                    )
                }
                if args.pg_url:
                    psi["postgresql"] = _psi(
                        {**common, "source": "sql", "a": args.pg_url, "table": _TABLE},
                        args.timeout,
                    )
                result["psi_rr22"] = {
                    "setup": "local RR22 PSI, both parties in one child process; party a reads "
                    "its IDs from the source, party b from a Parquet file",
                    "expected_intersection": int(args.rows * args.overlap),
                    "memory_limit_mb": args.memory_limit_mb,
                    **psi,
                }
        finally:
            for url in (args.pg_url, args.mysql_url):
                if url:
                    _drop(url, [_TABLE, cand])
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return result
