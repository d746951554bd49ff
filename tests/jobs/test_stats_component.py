"""The ``stats`` component in a whole job (PSI, then statistics), against pandas-style
numpy on the joined plaintext."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from rainbridge.data import inspect_dataset
from rainbridge.errors import JobSpecError, ParameterMismatchError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

ROOT = Path(__file__).resolve().parents[2]
JOB = (ROOT / "examples" / "jobs" / "stats-2party.yaml").read_text()


def _data(tmp: Path) -> tuple[dict, dict]:
    rng = np.random.default_rng(2)
    ids = np.arange(400)
    bank = {
        "customer_id": [f"c{i:04d}" for i in ids[:300]],
        "monthly_income": np.round(rng.normal(9000, 2000, 300), 2),
        "age": rng.integers(18, 80, 300),
    }
    t_ids = ids[100:400]
    tel = {
        "customer_id": [f"c{i:04d}" for i in t_ids],
        "monthly_spend": np.round(rng.normal(120, 30, 300), 2),
        "prepaid": rng.integers(0, 2, 300),
    }
    for name, cols in (("bank", bank), ("tel", tel)):
        lines = [",".join(cols)] + [",".join(str(cols[c][i]) for c in cols) for i in range(300)]
        (tmp / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return bank, tel


def test_stats_job_matches_the_joined_plaintext(tmp_path: Path) -> None:
    bank, tel = _data(tmp_path)
    ds = {
        "bank": {"customers": inspect_dataset("customers", tmp_path / "bank.csv", "customer_id")},
        "telecom": {
            "subscribers": inspect_dataset("subscribers", tmp_path / "tel.csv", "customer_id")
        },
    }
    res = run_local(parse_job(JOB), ds, tmp_path / "out")
    assert res["tax"]["components"]["stats"]["role"] == "dealer"
    assert "result" not in res["telecom"]["components"]["stats"]  # only the bank learns it
    rows = res["bank"]["components"]["stats"]["result"]
    table = pacsv.read_csv(tmp_path / "out" / "bank" / "stats.result.csv").to_pylist()
    assert len(table) == len(rows)
    got = {(r["statistic"], r["column"], r["column2"], r["group"]): r["value"] for r in rows}
    # the join: ids 100..299, in both tables' order
    b = {k: np.asarray(v)[100:300] for k, v in bank.items()}
    t = {k: np.asarray(v)[:200] for k, v in tel.items()}
    assert got[("count", "monthly_income", "", "")] == 200
    assert got[("mean", "monthly_income", "", "")] == pytest.approx(b["monthly_income"].mean())
    assert got[("std", "monthly_spend", "", "")] == pytest.approx(t["monthly_spend"].std(ddof=1))
    want = np.corrcoef(b["monthly_income"], t["monthly_spend"])[0, 1]
    assert got[("corr", "monthly_income", "monthly_spend", "")] == pytest.approx(want)
    for g in (0, 1):
        sel = t["prepaid"] == g
        assert got[("count", "", "", g)] == sel.sum()
        assert got[("mean", "monthly_income", "", g)] == pytest.approx(
            b["monthly_income"][sel].mean()
        )


def test_misaligned_tables_are_refused(tmp_path: Path) -> None:
    _data(tmp_path)
    job = JOB.replace("telecom: {from: psi.intersection}", "telecom: {dataset: subscribers}")
    ds = {
        "bank": {"customers": inspect_dataset("customers", tmp_path / "bank.csv", "customer_id")},
        "telecom": {
            "subscribers": inspect_dataset("subscribers", tmp_path / "tel.csv", "customer_id")
        },
    }
    with pytest.raises(ParameterMismatchError, match="not aligned"):
        run_local(parse_job(job), ds, tmp_path / "out")
    assert not (tmp_path / "out" / "bank" / "stats.result.csv").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("tax: {role: dealer}", "tax: {from: psi.intersection}"), "does not receive"),
        (("receivers: [bank]\n        format: csv", "receivers: [bank, telecom]"), "one receiver"),
        (("group_by: {party: telecom", "group_by: {party: tax"), "group_by.party"),
        (("telecom: [monthly_spend]", "tax: [x]"), "not a data party"),
    ],
)
def test_bad_stats_specs_are_refused_with_the_field(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(JOB.replace(*change))


def test_stats_with_differential_privacy(tmp_path: Path) -> None:
    _, tel = _data(tmp_path)
    dp = "      dp: {epsilon: 100, bounds: {monthly_income: 20000, age: 100, monthly_spend: 400}}\n"
    job = JOB.replace("      min_group_size: 10\n", "      min_group_size: 10\n" + dp)
    ds = {
        "bank": {"customers": inspect_dataset("customers", tmp_path / "bank.csv", "customer_id")},
        "telecom": {
            "subscribers": inspect_dataset("subscribers", tmp_path / "tel.csv", "customer_id")
        },
    }
    res = run_local(parse_job(job), ds, tmp_path / "out")
    rows = res["bank"]["components"]["stats"]["result"]
    got = {(r["statistic"], r["column"], r["column2"], r["group"]): r["value"] for r in rows}
    spend = np.asarray(tel["monthly_spend"])[:200]
    # epsilon 100 over 9 released values: noise scale B·9/100 on sums of 200 rows, so the
    # mean moves by a few hundredths at most
    assert got[("mean", "monthly_spend", "", "")] == pytest.approx(spend.mean(), abs=2.0)
    with pytest.raises(JobSpecError, match=r"dp\.bounds must give a bound for 'age'"):
        parse_job(job.replace("age: 100, ", ""))
    # the Gaussian mechanism (ε below 1 per released value: 9 moments share 3)
    gauss = job.replace("epsilon: 100,", "epsilon: 3, mechanism: gaussian, delta: 0.000001,")
    res = run_local(parse_job(gauss), ds, tmp_path / "out2")
    rows = res["bank"]["components"]["stats"]["result"]
    got = {(r["statistic"], r["column"], r["column2"], r["group"]): r["value"] for r in rows}
    assert got[("mean", "monthly_spend", "", "")] == pytest.approx(spend.mean(), abs=100.0)


def _datasets(tmp: Path) -> dict:
    return {
        "bank": {"customers": inspect_dataset("customers", tmp / "bank.csv", "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", tmp / "tel.csv", "customer_id")},
    }


def _job_with(params: str) -> str:
    """The example job with its stats parameters after ``columns`` replaced."""
    start = JOB.index("      statistics:")
    end = JOB.index("    outputs:\n      result:")
    return JOB[:start] + params + JOB[end:]


def _run(tmp: Path, params: str) -> dict:
    res = run_local(parse_job(_job_with(params)), _datasets(tmp), tmp / "out")
    rows = res["bank"]["components"]["stats"]["result"]
    return {(r["statistic"], r["column"], r["column2"], r["group"]): r["value"] for r in rows}


def test_order_statistics_histograms_and_crosstab_match_the_plaintext(tmp_path: Path) -> None:
    bank, tel = _data(tmp_path)
    got = _run(
        tmp_path,
        "      statistics: [min, max, median, quantile, histogram]\n"
        "      quantiles: [0.1, 0.9]\n"
        "      bins: {monthly_income: [0, 8000, 10000, 20000], age: [18, 50, 80],"
        " monthly_spend: [0, 100, 1000]}\n"
        "      crosstab: {rows: {party: telecom, column: prepaid},"
        " columns: {party: bank, column: age}}\n"
        "      min_group_size: 3\n",
    )
    b = {k: np.asarray(v)[100:300] for k, v in bank.items()}
    t = {k: np.asarray(v)[:200] for k, v in tel.items()}
    inc, spend = b["monthly_income"], t["monthly_spend"]
    assert got[("min", "monthly_income", "", "")] == pytest.approx(inc.min())
    assert got[("max", "monthly_spend", "", "")] == pytest.approx(spend.max())
    assert got[("median", "age", "", "")] == pytest.approx(np.median(b["age"]))
    assert got[("quantile", "monthly_spend", "0.9", "")] == pytest.approx(
        np.quantile(spend, 0.9), abs=0.01
    )
    hist = np.histogram(inc, [0, 8000, 10000, 20000])[0]
    assert got[("histogram", "monthly_income", "[0, 8000)", "")] == hist[0]
    assert got[("histogram", "monthly_income", "[10000, 20000]", "")] == hist[2]
    for p in (0, 1):
        for age in np.unique(b["age"]):
            n = int(np.sum((t["prepaid"] == p) & (b["age"] == age)))
            assert got[("crosstab", "prepaid", "age", f"{p}|{age}")] == (n if n >= 3 else 0)


def test_grouped_variance_extrema_and_histograms_match_the_plaintext(tmp_path: Path) -> None:
    bank, tel = _data(tmp_path)
    got = _run(
        tmp_path,
        "      statistics: [count, var, std, min, max, histogram]\n"
        "      bins: {monthly_income: [0, 9000, 20000], age: [18, 40, 80],"
        " monthly_spend: [0, 1000]}\n"
        "      group_by: {party: telecom, column: prepaid}\n"
        "      min_group_size: 10\n",
    )
    b = {k: np.asarray(v)[100:300] for k, v in bank.items()}
    t = {k: np.asarray(v)[:200] for k, v in tel.items()}
    for g in (0, 1):
        sel = t["prepaid"] == g
        inc = b["monthly_income"][sel]
        assert got[("var", "monthly_income", "", g)] == pytest.approx(inc.var(ddof=1))
        assert got[("std", "age", "", g)] == pytest.approx(b["age"][sel].std(ddof=1))
        assert got[("min", "monthly_income", "", g)] == pytest.approx(inc.min())
        assert got[("max", "age", "", g)] == b["age"][sel].max()
        hist = np.histogram(inc, [0, 9000, 20000])[0]
        assert got[("histogram", "monthly_income", "[0, 9000)", g)] == hist[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("      statistics: [histogram]\n", "histogram needs bins"),
        (
            "      statistics: [median]\n      group_by: {party: telecom, column: prepaid}\n",
            "per group are not supported",
        ),
        ("      statistics: [min]\n      quantiles: [1.5]\n", "strictly between 0 and 1"),
        (
            "      statistics: [count]\n      crosstab: {rows: {party: bank, column: age},"
            " columns: {party: bank, column: age}}\n",
            "two different data parties",
        ),
        (
            "      statistics: [max]\n      dp: {epsilon: 1, bounds: {monthly_income: 1,"
            " age: 1, monthly_spend: 1}}\n",
            "differential privacy covers",
        ),
        (
            "      statistics: [mean]\n      dp: {epsilon: 0.5, mechanism: gaussian, bounds:"
            " {monthly_income: 1, age: 1, monthly_spend: 1}}\n",
            "needs dp.delta",
        ),
    ],
)
def test_bad_order_statistic_params_are_refused(params: str, message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(_job_with(params))


def test_one_column_name_at_both_parties_is_refused() -> None:
    from rainbridge.components.stats import StatsComponent, StatsParams

    params = StatsParams(columns={"bank": ["x"], "telecom": ["x"]}, statistics=["sum"])
    with pytest.raises(JobSpecError, match="'x' is named at both data parties"):
        StatsComponent._check_more(params, ["bank", "telecom"])
