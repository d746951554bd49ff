"""Datasets in SQL databases between real node processes: the bank's customers live in
PostgreSQL, the telecom's subscribers in MariaDB; a PSI job between them gives the plaintext
intersection, also after the bank's node restarts (its sealed credentials reopen), and the
databases' passwords appear nowhere a node writes or answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow

PG_PASSWORD = "pg-Pa55word-never-shown"  # trust authentication ignores it: it must not leak

JOB = """\
name: sql-psi
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank]
        columns: {bank: [income]}
"""


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory, pg_server: Any, mariadb_server: Any
) -> Iterator[tuple[Federation, dict[str, Any]]]:
    base = tmp_path_factory.mktemp("sqlfed")
    pg_db = pg_server.create_database("bank")
    pg_server.psql(
        "CREATE TABLE customers (customer_id text, income numeric(12,2));"
        "INSERT INTO customers SELECT 'c' || lpad(g::text, 7, '0'), g * 10.25 "
        "FROM generate_series(0, 2999) g",
        pg_db,
    )
    my_db = mariadb_server.create_database("telecom")
    mariadb_server.sql(
        "CREATE TABLE subscribers (customer_id varchar(16), plan varchar(8));"
        "INSERT INTO subscribers SELECT concat('c', lpad(seq, 7, '0')), "
        "if(seq % 2 = 0, 'gold', 'basic') FROM seq_1500_to_4499",
        my_db,
    )
    pg_url = pg_server.url(pg_db).replace(f"{pg_server.user}@", f"{pg_server.user}:{PG_PASSWORD}@")
    f = Federation(base, ["bank", "telecom"], timeout=10)
    f.start()
    try:
        f.pin_all()
        yield (
            f,
            {
                "pg_url": pg_url,
                "my_url": mariadb_server.url(my_db),
                "my_password": mariadb_server.password,
                "pg_server": pg_server,
                "pg_db": pg_db,
            },
        )
    finally:
        f.stop()


def grant(f: Federation, owner: str, dataset: str, peer: str) -> None:
    f.cli(
        "grant", "add", dataset, "--peer", peer, "--columns", "*", "--components", "psi",
        "--receivers", "*", node=owner,
    )  # fmt: skip


def test_psi_between_postgres_and_mariadb(
    fed: tuple[Federation, dict[str, Any]], tmp_path: Path
) -> None:
    f, db = fed
    bank = f.cli_json(
        "dataset", "add", "customers", "--sql-url", db["pg_url"], "--table", "customers",
        "--id", "customer_id", node="bank",
    )  # fmt: skip
    assert bank["format"] == "sql" and bank["num_rows"] == 3000
    assert bank["columns"] == {"customer_id": "string", "income": "decimal128(12, 2)"}
    assert bank["path"].startswith("postgresql://rainbridge:***@127.0.0.1:")
    # the telecom keeps the password off the command line: the URL comes from the environment
    env = {**os.environ, "RAINBRIDGE_SQL_URL": db["my_url"]}
    r = subprocess.run(
        [
            sys.executable, "-m", "rainbridge.cli", "dataset", "add", "subscribers", "--query",
            "SELECT customer_id, plan FROM subscribers WHERE plan IN ('gold', 'basic')",
            "--id", "customer_id", "--dir", str(f.nodes["telecom"].dir), "--json",
        ],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert db["my_password"] not in r.stdout + r.stderr
    grant(f, "bank", "customers", "telecom")
    grant(f, "telecom", "subscribers", "bank")
    job = tmp_path / "job.yaml"
    job.write_text(JOB)

    def run_psi() -> None:
        row = f.cli_json("job", "submit", str(job), node="bank")
        assert row["status"] == "succeeded", row
        res = f.cli_json("job", "result", row["id"], node="bank")["result"]
        out = pq.read_table(res["components"]["psi"]["outputs"]["intersection"]["path"])
        want = sorted(f"c{i:07d}" for i in range(1500, 3000))
        assert sorted(out.column("customer_id").to_pylist()) == want
        incomes = dict(
            zip(
                out.column("customer_id").to_pylist(), out.column("income").to_pylist(), strict=True
            )
        )
        assert str(incomes["c0002000"]) == "20500.00"  # the decimal passed through exactly

    run_psi()
    # a restarted node opens its sealed credentials again
    f.kill("bank")
    f._start_one(f.nodes["bank"])
    f._wait_ready(f.nodes["bank"])
    run_psi()
    _nothing_holds_the_passwords(f, db)


def test_refusals_through_the_cli(fed: tuple[Federation, dict[str, Any]]) -> None:
    f, db = fed
    bad = db["my_url"].replace(db["my_password"], "wrong-" + db["my_password"][:6])
    r = f.cli(
        "dataset", "add", "x", "--sql-url", bad, "--table", "subscribers", "--id",
        "customer_id", node="telecom", check=False,
    )  # fmt: skip
    assert r.returncode == 3 and "refused the credentials" in r.stderr
    assert db["my_password"][:6] not in r.stderr
    r = f.cli(
        "dataset", "add", "x", "--sql-url", db["pg_url"], "--query", "DELETE FROM customers",
        "--id", "customer_id", node="bank", check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "not a SELECT" in r.stderr
    r = f.cli(
        "dataset", "add", "x", "--sql-url", db["pg_url"], "--table", "nope", "--id", "id",
        node="bank", check=False,
    )  # fmt: skip
    assert r.returncode == 3 and "nope" in r.stderr and PG_PASSWORD not in r.stderr
    r = f.cli(
        "dataset", "add", "x", "--sql-url", "postgresql://u:pw@127.0.0.1:1/db", "--table", "t",
        "--id", "id", node="bank", check=False,
    )  # fmt: skip
    assert r.returncode == 3 and "cannot connect" in r.stderr
    r = f.cli("dataset", "add", "x", "--sql-url", db["pg_url"], "--id", "id", node="bank",
              check=False)  # fmt: skip
    assert r.returncode == 2 and "a --table or a --query" in r.stderr
    assert db["pg_server"].psql("SELECT count(*) FROM customers", db["pg_db"]).strip() == "3000"


def _nothing_holds_the_passwords(f: Federation, db: dict[str, Any]) -> None:
    secrets = [PG_PASSWORD.encode(), db["my_password"].encode()]
    answers = [
        f.cli("dataset", "list", "--json", node=n).stdout
        + f.cli("ledger", "show", "--json", node=n).stdout
        + f.cli("job", "list", "--json", node=n).stdout
        + f.cli("catalogue", "--json", node=n, check=False).stdout
        for n in f.names
    ]
    for text in answers:
        assert '"sealed"' not in text  # not even the sealed form leaves the node
        for s in secrets:
            assert s.decode() not in text
    for node in f.nodes.values():
        for p in node.dir.rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                for s in secrets:
                    assert s not in data, f"{p.relative_to(node.dir)} holds a password"
