"""The ``train_lr`` component in a whole job (PSI, then vertical LR) on the demo data:
each party gets its own part of the model, the bank a report; the joint model scores better
than the bank's features alone, and matches scikit-learn on the joined plaintext."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from rainbridge.data import inspect_dataset
from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.errors import DataError, JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

ROOT = Path(__file__).resolve().parents[2]
JOB = (ROOT / "examples" / "jobs" / "lr-2party.yaml").read_text()
BANK = ["age", "monthly_income", "loan_balance", "max_overdue_days"]
TEL = ["tenure_months", "monthly_spend", "late_payments_12m", "prepaid"]


def _datasets(tmp: Path) -> dict:
    paths = write_demo_data(tmp / "data", DemoSizes(population=9000, bank=5000, telecom=5000,
                                                    tax=2000))  # fmt: skip
    return {
        "bank": {"customers": inspect_dataset("customers", paths["bank"], "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", paths["telecom"], "customer_id")},
    }


def test_train_lr_job_gives_each_party_its_part_and_the_bank_a_report(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    job = JOB.replace("epochs: 10", "epochs: 10\n      seed: 7")
    res = run_local(parse_job(job), ds, tmp_path / "out")
    bank = json.loads((tmp_path / "out" / "bank" / "lr.model.json").read_text())
    tel = json.loads((tmp_path / "out" / "telecom" / "lr.model.json").read_text())
    assert bank["features"] == BANK and tel["features"] == TEL
    assert bank["intercept"] is not None and tel["intercept"] is None
    assert "result" not in res["telecom"]["components"]["lr"]  # no metrics at the telecom
    metrics = res["bank"]["components"]["lr"]["result"]
    # the joint model against scikit-learn on the joined plaintext (same standardisation)
    from rainbridge.data import read_columns

    inter_b = read_columns(ds["bank"]["customers"], ["customer_id", *BANK, "default_12m"])
    inter_t = read_columns(ds["telecom"]["subscribers"], ["customer_id", *TEL])
    common = np.intersect1d(
        inter_b.column("customer_id").to_numpy(zero_copy_only=False),
        inter_t.column("customer_id").to_numpy(zero_copy_only=False),
    )
    tb = inter_b.filter(pc.is_in(inter_b.column("customer_id"), value_set=_arr(common)))
    tt = inter_t.filter(pc.is_in(inter_t.column("customer_id"), value_set=_arr(common)))
    tb = tb.sort_by("customer_id")
    tt = tt.sort_by("customer_id")
    xb = np.column_stack([tb.column(c).to_numpy().astype(float) for c in BANK])
    xt = np.column_stack([tt.column(c).to_numpy().astype(float) for c in TEL])
    y = tb.column("default_12m").to_numpy().astype(float)
    assert metrics["rows"] == len(y)
    zb = ((xb - bank["mean"]) / bank["scale"]) @ bank["weights"] + bank["intercept"]
    zt = ((xt - tel["mean"]) / tel["scale"]) @ tel["weights"]
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, zb + zt), abs=1e-9)
    joined = np.hstack([xb, xt])
    ref = LogisticRegression(max_iter=2000).fit((joined - joined.mean(0)) / joined.std(0), y)
    ref_auc = roc_auc_score(y, ref.decision_function((joined - joined.mean(0)) / joined.std(0)))
    assert metrics["auc"] >= ref_auc - 0.01
    bank_only = LogisticRegression(max_iter=2000).fit((xb - xb.mean(0)) / xb.std(0), y)
    alone = roc_auc_score(y, bank_only.decision_function((xb - xb.mean(0)) / xb.std(0)))
    assert metrics["auc"] > alone  # the telecom's features add signal
    report = (tmp_path / "out" / "bank" / "lr.report.csv").read_text()
    assert report.startswith('"metric","value"') and "auc" in report


def _arr(values: np.ndarray):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.array(values.tolist())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("label: {party: bank", "label: {party: tax"), "label.party"),
        (("model: {receivers: [bank, telecom]}", "model: {receivers: [bank]}"), "both data"),
        (("report: {receivers: [bank]", "report: {receivers: [telecom]"), "label party alone"),
        (
            (
                "bank: [age, monthly_income, loan_balance, max_overdue_days]\n        telecom",
                "tax: [x]\n        telecom",
            ),
            "not a data party",
        ),
    ],
)
def test_bad_train_lr_specs_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(JOB.replace(*change))


def test_a_label_that_is_not_binary_is_refused(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    job = JOB.replace("column: default_12m}", "column: max_overdue_days}").replace(
        "bank: [age, monthly_income, loan_balance, max_overdue_days]\n",
        "bank: [age, monthly_income, loan_balance]\n",
    )
    with pytest.raises(DataError, match="must hold 0 and 1"):
        run_local(parse_job(job), ds, tmp_path / "out")
    assert not (tmp_path / "out" / "bank" / "lr.model.json").exists()


PREDICT = """
  - id: psi_new
    type: psi
    inputs:
      bank: {dataset: applicants, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns:
          bank: [age, monthly_income, loan_balance, max_overdue_days, default_12m]
          telecom: [tenure_months, monthly_spend, late_payments_12m, prepaid]
  - id: score
    type: predict
    inputs:
      bank: {from: psi_new.intersection}
      telecom: {from: psi_new.intersection}
    params:
      model: lr
      label: default_12m
      features:
        bank: [age, monthly_income, loan_balance, max_overdue_days]
        telecom: [tenure_months, monthly_spend, late_payments_12m, prepaid]
    outputs:
      predictions: {receivers: [bank], format: csv}
  - id: eval
    type: evaluate
    inputs:
      bank: {from: score.predictions}
    params: {threshold: 0.3}
    outputs:
      report: {receivers: [bank], format: csv}
"""


def test_predict_scores_new_rows_with_the_model_trained_in_the_job(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    # the bank's customers split: the first 3,000 train, the rest are "new applicants"
    import pyarrow.csv as pacsv

    bank = pacsv.read_csv(ds["bank"]["customers"].path)
    pacsv.write_csv(bank.slice(0, 3000), tmp_path / "train.csv")
    pacsv.write_csv(bank.slice(3000), tmp_path / "new.csv")
    ds["bank"] = {
        "customers": inspect_dataset("customers", tmp_path / "train.csv", "customer_id"),
        "applicants": inspect_dataset("applicants", tmp_path / "new.csv", "customer_id"),
    }
    job = JOB.replace("epochs: 10", "epochs: 10\n      seed: 3").rstrip("\n") + PREDICT
    res = run_local(parse_job(job), ds, tmp_path / "out")
    score = res["bank"]["components"]["score"]
    assert "result" not in res["telecom"]["components"]["score"]
    preds = pacsv.read_csv(tmp_path / "out" / "bank" / "score.predictions.csv")
    assert preds.column_names == ["customer_id", "score", "predicted", "label"]
    assert preds.num_rows == score["rows"] > 100
    # the model's own parts applied in plaintext give the same scores
    bank_m = json.loads((tmp_path / "out" / "bank" / "lr.model.json").read_text())
    tel_m = json.loads((tmp_path / "out" / "telecom" / "lr.model.json").read_text())
    import pyarrow.parquet as pq

    rows_b = pq.read_table(tmp_path / "out" / "bank" / "psi_new.intersection.parquet")
    rows_t = pq.read_table(tmp_path / "out" / "telecom" / "psi_new.intersection.parquet")

    def part(rows, m):  # type: ignore[no-untyped-def]
        x = np.column_stack([rows.column(c).to_numpy().astype(float) for c in m["features"]])
        return ((x - m["mean"]) / m["scale"]) @ m["weights"]

    z = part(rows_b, bank_m) + part(rows_t, tel_m) + bank_m["intercept"]
    assert np.allclose(preds.column("score").to_numpy(), 1 / (1 + np.exp(-z)))
    assert 0.5 < score["result"]["auc"] <= 1.0
    assert bank_m["features"] == BANK and tel_m["features"] == TEL
    # the bank evaluates the predictions alone: the same AUC, and the report's other rows
    ev = res["bank"]["components"]["eval"]
    assert ev["result"]["auc"] == pytest.approx(score["result"]["auc"])
    report = pacsv.read_csv(tmp_path / "out" / "bank" / "eval.report.csv").to_pylist()
    cm = {r["key"]: r["value"] for r in report if r["metric"] == "confusion"}
    y = preds.column("label").to_numpy()
    s = preds.column("score").to_numpy()
    assert cm["tp"] == np.sum((s >= 0.3) & (y == 1)) and sum(cm.values()) == len(y)
    assert "eval" not in res["telecom"]["components"]


def test_predict_refuses_a_model_that_was_not_trained(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    ds["bank"]["applicants"] = ds["bank"]["customers"]
    job = JOB.rstrip("\n") + PREDICT.replace("model: lr", "model: nothing")
    with pytest.raises(DataError, match="no model 'nothing'"):
        run_local(parse_job(job), ds, tmp_path / "out")


@pytest.mark.parametrize(
    ("inputs", "receivers", "message"),
    [
        ({"bank": {"dataset": "p"}, "telecom": {"dataset": "q"}}, ["bank"], "one party"),
        ({"bank": {"dataset": "p"}}, ["telecom"], "stays with its party"),
    ],
)
def test_bad_evaluate_specs_are_refused(inputs: dict, receivers: list, message: str) -> None:
    from rainbridge.components import ComponentParamError, get_component
    from rainbridge.components.spec import ComponentSpec

    spec = ComponentSpec.model_validate(
        {"id": "e", "type": "evaluate", "inputs": inputs,
         "outputs": {"report": {"receivers": receivers}}}
    )  # fmt: skip
    with pytest.raises(ComponentParamError, match=message):
        get_component("evaluate").check(spec)
