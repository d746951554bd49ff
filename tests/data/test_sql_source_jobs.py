"""Jobs read SQL datasets as they read files: PSI, statistics and a trained model over a
PostgreSQL table and a MariaDB query give the same outputs as the same rows in Parquet files
(every party in one process, :func:`rainbridge.jobs.local.run_local`)."""

from __future__ import annotations

import decimal
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.data import inspect_dataset, read_columns
from rainbridge.data.sql_source import inspect_sql
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

JOB = """\
name: sql-jobs
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    params: {protocol: rr22}
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns:
          bank: [income, age, defaulted]
          telecom: [spend, prepaid]
  - id: stats
    type: stats
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
      tax: {role: dealer}
    params:
      columns: {bank: [age], telecom: [spend]}
      statistics: [count, mean, std]
      group_by: {party: telecom, column: prepaid}
    outputs:
      result: {receivers: [bank], format: csv}
  - id: lr
    type: train_lr
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
      tax: {role: dealer}
    params:
      label: {party: bank, column: defaulted}
      features: {bank: [age], telecom: [spend]}
      epochs: 2
      batch_size: 64
    outputs:
      model: {receivers: [bank, telecom]}
      report: {receivers: [bank], format: csv}
"""


def _rows(seed: int = 3) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    bank = [
        (
            f"c{i:05d}",
            decimal.Decimal(rng.randrange(10**8)).scaleb(-2),
            rng.randrange(18, 90),
            rng.randrange(2),
        )
        for i in range(0, 600)
    ]
    tel = [(f"c{i:05d}", round(rng.uniform(0, 500), 2), rng.randrange(2)) for i in range(300, 900)]
    return bank, tel


def test_jobs_over_sql_equal_jobs_over_files(
    pg_server: Any, mariadb_server: Any, tmp_path: Path
) -> None:
    import psycopg
    import pymysql

    bank, tel = _rows()
    pdb = pg_server.create_database("sqljobs")
    with psycopg.connect(pg_server.url(pdb).replace("+psycopg", "")) as conn:
        conn.execute(
            "CREATE TABLE customers (customer_id text, income numeric(12,2), age int4, "
            "defaulted int4)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s)", bank)
    mdb = mariadb_server.create_database("sqljobs")
    mariadb_server.sql(
        "CREATE TABLE subs (customer_id varchar(10), spend double, prepaid int)", mdb
    )
    conn2 = pymysql.connect(
        host="127.0.0.1", port=mariadb_server.port, user=mariadb_server.user,
        password=mariadb_server.password, database=mdb,
    )  # fmt: skip
    with conn2.cursor() as cur:
        cur.executemany("INSERT INTO subs VALUES (%s, %s, %s)", tel)
    conn2.commit()
    conn2.close()

    sql = {
        "bank": {"customers": inspect_sql("customers", pg_server.url(pdb), "customer_id",
                                          table="customers")},
        "telecom": {"subscribers": inspect_sql(
            "subscribers", mariadb_server.url(mdb), "customer_id",
            query="SELECT customer_id, spend, prepaid FROM subs",
        )},
        "tax": {},
    }  # fmt: skip
    files: dict[str, dict[str, Any]] = {"tax": {}}
    for party, dss in sql.items():
        for name, ref in dss.items():
            p = tmp_path / f"{party}.parquet"
            pq.write_table(read_columns(ref, list(ref.columns)), p)
            files[party] = {name: inspect_dataset(name, p, "customer_id")}
            assert files[party][name].columns == ref.columns  # the same types as a file's
    job = parse_job(JOB)
    from_sql = run_local(job, sql, tmp_path / "sql", timeout=120)
    from_files = run_local(job, files, tmp_path / "files", timeout=120)

    def outputs(res: dict[str, Any]) -> dict[str, pa.Table]:
        comps = res["bank"]["components"]
        psi = pq.read_table(comps["psi"]["outputs"]["intersection"]["path"])
        stats = pacsv.read_csv(comps["stats"]["outputs"]["result"]["path"])
        report = pacsv.read_csv(comps["lr"]["outputs"]["report"]["path"])
        return {"psi": psi, "stats": stats, "report": report}

    a, b = outputs(from_sql), outputs(from_files)
    want = sorted({r[0] for r in bank} & {r[0] for r in tel})
    assert sorted(a["psi"].column("customer_id").to_pylist()) == want
    assert a["psi"].schema.field("income").type == pa.decimal128(12, 2)
    assert a["psi"].equals(b["psi"])
    assert a["stats"].equals(b["stats"])
    assert a["stats"].num_rows > 0
    assert a["report"].column_names == b["report"].column_names
