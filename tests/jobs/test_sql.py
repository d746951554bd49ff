"""The SQL front end: queries planned into PSI + stats jobs, answers against the plaintext
join, and refusals that name the clause."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rainbridge.data import inspect_dataset
from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local
from rainbridge.jobs.sql import SqlError, plan_sql, result_table


def _tables(tmp: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(9)
    bank = {
        "id": np.arange(0, 300),
        "balance": np.round(rng.normal(5000, 1500, 300), 2),
        "amount": rng.integers(0, 30000, 300),
    }
    tel = {
        "uid": np.arange(100, 400),
        "plan": rng.choice(np.array(["basic", "plus", "max"]), 300),
        "spend": np.round(rng.normal(100, 20, 300), 2),
    }
    for name, cols in (("bank", bank), ("tel", tel)):
        keys = list(cols)
        lines = [",".join(keys)] + [",".join(str(cols[k][i]) for k in keys) for i in range(300)]
        (tmp / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return bank, tel


def _run(tmp: Path, query: str, dealer: str | None = "tax") -> tuple[list[str], list[list[object]]]:
    plan = plan_sql(query, dealer=dealer, receiver="bank", min_group_size=1)
    ds = {
        "bank": {"loans": inspect_dataset("loans", tmp / "bank.csv", "id")},
        "telecom": {"users": inspect_dataset("users", tmp / "tel.csv", "uid")},
    }
    res = run_local(parse_job(json.dumps(plan.job)), ds, tmp / "out")
    return result_table(plan, res["bank"]["components"]["stats"]["result"])


def test_group_by_with_a_where_on_each_side(tmp_path: Path) -> None:
    bank, tel = _tables(tmp_path)
    headers, rows = _run(
        tmp_path,
        "SELECT t.plan, COUNT(*), AVG(b.balance) AS avg_balance, SUM(b.amount) "
        "FROM bank.loans b JOIN telecom.users t ON b.id = t.uid "
        "WHERE b.amount > 10000 AND 90 <= t.spend GROUP BY t.plan",
    )
    assert headers == ["t.plan", "COUNT(*)", "avg_balance", "SUM(b.amount)"]
    # plaintext: the join on id = uid, both filters, grouped by plan
    b_idx = {int(i): k for k, i in enumerate(bank["id"])}
    want: dict[str, list[tuple[float, int]]] = {}
    for k, uid in enumerate(tel["uid"]):
        j = b_idx.get(int(uid))
        if j is None or not bank["amount"][j] > 10000 or not tel["spend"][k] >= 90:
            continue
        want.setdefault(str(tel["plan"][k]), []).append((bank["balance"][j], bank["amount"][j]))
    assert {r[0] for r in rows} == set(want)
    for plan_name, count, avg, total in rows:
        vals = want[str(plan_name)]
        assert count == len(vals)
        assert avg == pytest.approx(np.mean([v[0] for v in vals]))
        assert total == pytest.approx(sum(v[1] for v in vals))


def test_ungrouped_moments_and_correlation(tmp_path: Path) -> None:
    bank, tel = _tables(tmp_path)
    _, rows = _run(
        tmp_path,
        "SELECT COUNT(*), STDDEV(b.balance), CORR(b.balance, t.spend) "
        "FROM bank.loans b JOIN telecom.users t ON b.id = t.uid",
    )
    (row,) = rows
    bal = bank["balance"][100:300]
    spend = tel["spend"][:200]
    assert row[0] == 200
    assert row[1] == pytest.approx(bal.std(ddof=1))
    assert row[2] == pytest.approx(np.corrcoef(bal, spend)[0, 1])


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT COUNT(*) FROM bank.loans b", "join exactly two tables"),
        ("DELETE FROM bank.loans", "only SELECT"),
        ("SELECT COUNT(*) FROM bank.a x JOIN bank.b y ON x.id = y.id", "two different parties"),
        (
            "SELECT MODE(b.balance) FROM bank.loans b JOIN telecom.users t ON b.id = t.uid",
            "unsupported",
        ),
        (
            "SELECT COUNT(*) FROM bank.loans b JOIN telecom.users t ON b.id = t.uid "
            "WHERE b.amount > t.spend",
            "expected a constant",
        ),
        (
            "SELECT COUNT(*) FROM bank.loans b JOIN telecom.users t ON b.id = t.uid "
            "WHERE b.amount > 1 OR t.spend < 2",
            "joined by AND",
        ),
        (
            "SELECT t.plan, AVG(t.spend) FROM bank.loans b JOIN telecom.users t "
            "ON b.id = t.uid GROUP BY t.plan",
            "aggregate the other party",
        ),
        (
            "SELECT b.balance FROM bank.loans b JOIN telecom.users t ON b.id = t.uid",
            "must be the GROUP BY column",
        ),
        (
            "SELECT COUNT(*) FROM bank.loans b LEFT JOIN telecom.users t ON b.id = t.uid",
            "inner JOIN",
        ),
        (
            "SELECT DISTINCT COUNT(*) FROM bank.loans b JOIN telecom.users t ON b.id = t.uid",
            "DISTINCT",
        ),
        ("SELECT FROM WHERE", "cannot parse"),
    ],
)
def test_refused_queries_name_the_clause(query: str, reason: str) -> None:
    with pytest.raises(SqlError, match=reason):
        plan_sql(query, dealer="tax", receiver="bank")


def test_the_dealer_and_receiver_are_checked() -> None:
    q = "SELECT COUNT(*) FROM bank.loans b JOIN telecom.users t ON b.id = t.uid"
    with pytest.raises(SqlError, match="third party"):
        plan_sql(q, dealer="telecom", receiver="bank")
    with pytest.raises(SqlError, match="not 'tax'"):
        plan_sql(q, dealer="tax", receiver="tax")


def test_count_alone_with_a_filter(tmp_path: Path) -> None:
    bank, _ = _tables(tmp_path)
    headers, rows = _run(
        tmp_path,
        "SELECT COUNT(*) AS n FROM bank.loans b JOIN telecom.users t ON b.id = t.uid "
        "WHERE b.amount > 20000",
    )
    joined = (bank["id"] >= 100) & (bank["amount"] > 20000)  # telecom has ids 100..399
    assert headers == ["n"] and rows == [[float(joined.sum())]]


QUERIES = [
    "SELECT t.plan, COUNT(*), SUM(b.amount), AVG(b.balance), STDDEV(b.balance), "
    "VARIANCE(b.amount), MIN(b.balance), MAX(b.amount) "
    "FROM bank.loans b JOIN telecom.users t ON b.id = t.uid "
    "WHERE b.amount > 5000 AND t.spend < 120 GROUP BY t.plan",
    "SELECT COUNT(*), AVG(t.spend), MIN(b.balance), MAX(t.spend), MEDIAN(b.balance), "
    "CORR(b.balance, t.spend), VARIANCE(b.balance) "
    "FROM bank.loans b JOIN telecom.users t ON b.id = t.uid WHERE t.plan != 'basic'",
]


@pytest.mark.parametrize("dealer", ["tax", None])  # dealer-assisted, and by OT extension
@pytest.mark.parametrize("query", QUERIES)
def test_answers_match_duckdb_running_the_same_query_on_the_plaintext(
    tmp_path: Path, query: str, dealer: str | None
) -> None:
    import duckdb

    _tables(tmp_path)
    _, rows = _run(tmp_path, query, dealer)
    con = duckdb.connect()
    for schema, table, csv in (("bank", "loans", "bank.csv"), ("telecom", "users", "tel.csv")):
        con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"CREATE TABLE {schema}.{table} AS SELECT * FROM read_csv('{tmp_path / csv}')")
    want = con.execute(query).fetchall()
    key = (lambda r: str(r[0])) if "GROUP BY" in query else (lambda r: "")
    assert sorted(map(key, rows)) == sorted(map(key, want))
    by_key = {key(r): r for r in want}
    for row in rows:
        expected = by_key[key(row)]
        for got, exp_ in zip(row, expected, strict=True):
            if isinstance(exp_, str):
                assert str(got) == exp_
            else:  # statistics from 2-decimal integers: exact up to float rounding
                assert got == pytest.approx(float(exp_), rel=1e-9, abs=1e-6)


SQL_JOB = """
name: plans-by-balance
parties: [bank, telecom, tax]
components:
  - id: answer
    type: sql
    params:
      query: >-
        SELECT t.plan, COUNT(*), AVG(b.balance) FROM bank.loans b
        JOIN telecom.users t ON b.id = t.uid WHERE b.amount > 10000 GROUP BY t.plan
      receiver: bank
      dealer: tax
"""


def test_a_sql_component_in_a_job_file_runs_its_planned_steps(tmp_path: Path) -> None:
    _tables(tmp_path)
    job = parse_job(SQL_JOB)
    assert [c.id for c in job.components] == ["answer_join", "answer"]
    assert [c.type for c in job.components] == ["psi", "stats"]
    ds = {
        "bank": {"loans": inspect_dataset("loans", tmp_path / "bank.csv", "id")},
        "telecom": {"users": inspect_dataset("users", tmp_path / "tel.csv", "uid")},
    }
    res = run_local(job, ds, tmp_path / "out")
    rows = res["bank"]["components"]["answer"]["result"]
    plan = plan_sql(
        "SELECT t.plan, COUNT(*), AVG(b.balance) FROM bank.loans b JOIN telecom.users t "
        "ON b.id = t.uid WHERE b.amount > 10000 GROUP BY t.plan",
        dealer="tax",
        receiver="bank",
    )
    _, table = result_table(plan, rows)
    _, direct = _run(
        tmp_path,
        "SELECT t.plan, COUNT(*), AVG(b.balance) FROM bank.loans b JOIN telecom.users t "
        "ON b.id = t.uid WHERE b.amount > 10000 GROUP BY t.plan",
    )
    assert sorted(table) == sorted(direct)


QUERY_BY_PLAN = (
    "SELECT t.plan, COUNT(*), AVG(b.balance) FROM bank.loans b JOIN telecom.users t "
    "ON b.id = t.uid WHERE b.amount > 10000 GROUP BY t.plan"
)


def test_without_a_dealer_silent_ot_answers_as_ot_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the job chooses the dealer-free correlations' source; both give the same exact answer
    from rainbridge.protocols.mpc import ot

    used: list[str] = []
    real_init = ot.OtProvider.__init__

    def spy(self: ot.OtProvider, party: int, channel: Any, source: str = "iknp") -> None:
        used.append(source)
        real_init(self, party, channel, source)

    monkeypatch.setattr(ot.OtProvider, "__init__", spy)
    _tables(tmp_path)
    ds = {
        "bank": {"loans": inspect_dataset("loans", tmp_path / "bank.csv", "id")},
        "telecom": {"users": inspect_dataset("users", tmp_path / "tel.csv", "uid")},
    }
    tables = {}
    for source in ("iknp", "silent"):
        text = SQL_JOB.replace("parties: [bank, telecom, tax]", "parties: [bank, telecom]")
        text = text.replace("      dealer: tax\n", f"      ot: {source}\n")
        job = parse_job(text)
        assert job.components[1].params["ot"] == source
        res = run_local(job, ds, tmp_path / f"out-{source}")
        plan = plan_sql(QUERY_BY_PLAN, dealer=None, receiver="bank")
        _, tables[source] = result_table(plan, res["bank"]["components"]["answer"]["result"])
    assert used == ["iknp", "iknp", "silent", "silent"]
    assert sorted(tables["silent"]) == sorted(tables["iknp"])
    _, direct = _run(tmp_path, QUERY_BY_PLAN)
    assert sorted(tables["silent"]) == sorted(direct)
    with pytest.raises(JobSpecError, match="ot"):
        parse_job(SQL_JOB.replace("      dealer: tax\n", "      ot: telepathy\n"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("      receiver: bank\n", ""), "sql needs query and receiver"),
        (
            ("      dealer: tax\n", "      dealer: tax\n      colour: red\n"),
            "unknown sql parameter",
        ),
        (("GROUP BY t.plan", "GROUP BY t.plan QUALIFY 1 = 1"), r"\(answer\): QUALIFY"),
    ],
)
def test_bad_sql_components_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(SQL_JOB.replace(*change))
