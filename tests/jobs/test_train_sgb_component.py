"""The ``train_sgb`` component in a whole job (PSI, then SecureBoost) on the demo data: each
party gets its own part of the model, the bank a report; the joint model beats the bank's
features alone and matches xgboost on the joined plaintext; ``predict`` scores new rows
with it; bad specs and misaligned inputs are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from rainbridge.data import inspect_dataset
from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

ROOT = Path(__file__).resolve().parents[2]
JOB = (
    (ROOT / "examples" / "jobs" / "sgb-2party.yaml")
    .read_text()
    .replace("subsample: 0.8", "subsample: 0.8\n      seed: 5\n      key_bits: 1024")
)
BANK = ["age", "monthly_income", "loan_balance", "max_overdue_days"]
TEL = ["tenure_months", "monthly_spend", "late_payments_12m", "prepaid"]
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
      model: sgb
      label: default_12m
      features:
        bank: [age, monthly_income, loan_balance, max_overdue_days]
        telecom: [tenure_months, monthly_spend, late_payments_12m, prepaid]
    outputs:
      predictions: {receivers: [bank], format: csv}
"""


def _datasets(tmp: Path) -> dict:
    paths = write_demo_data(tmp / "data", DemoSizes(population=9000, bank=5000, telecom=5000,
                                                    tax=2000))  # fmt: skip
    bank = pacsv.read_csv(paths["bank"])
    pacsv.write_csv(bank.slice(0, 3500), tmp / "train.csv")
    pacsv.write_csv(bank.slice(3500), tmp / "new.csv")
    return {
        "bank": {
            "customers": inspect_dataset("customers", tmp / "train.csv", "customer_id"),
            "applicants": inspect_dataset("applicants", tmp / "new.csv", "customer_id"),
        },
        "telecom": {"subscribers": inspect_dataset("subscribers", paths["telecom"], "customer_id")},
    }


def _xy(out: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    b = pq.read_table(out / "bank" / f"{name}.intersection.parquet")
    t = pq.read_table(out / "telecom" / f"{name}.intersection.parquet")
    x = np.column_stack(
        [b.column(c).to_numpy().astype(float) for c in BANK]
        + [t.column(c).to_numpy().astype(float) for c in TEL]
    )
    return x, b.column("default_12m").to_numpy().astype(float)


def test_train_sgb_then_predict_in_one_job(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    out = tmp_path / "out"
    res = run_local(parse_job(JOB.rstrip("\n") + PREDICT), ds, out)
    bank = json.loads((out / "bank" / "sgb.model.json").read_text())
    tel = json.loads((out / "telecom" / "sgb.model.json").read_text())
    assert bank["format"] == tel["format"] == "rainbridge/secureboost/v1"
    assert bank["features"] == BANK and tel["features"] == TEL
    assert "base" in bank and "base" not in tel
    assert all("weights" in t for t in bank["trees"])
    assert not any("weights" in t for t in tel["trees"])
    # each part holds thresholds for its own features only
    for part in (bank, tel):
        for t in part["trees"]:
            assert all(t["owner"][k] == part["party"] for k in t["splits"])
    assert "result" not in res["telecom"]["components"]["sgb"]
    metrics = res["bank"]["components"]["sgb"]["result"]
    x, y = _xy(out, "psi")
    assert metrics["rows"] == len(y) and metrics["trees"] == 10
    # the joint model on new applicants against xgboost (same hyperparameters) and the bank alone
    xn, yn = _xy(out, "psi_new")
    hp = {"n_estimators": 10, "max_depth": 4, "learning_rate": 0.3, "max_bin": 32}
    joint_ref = xgb.XGBClassifier(**hp).fit(x, y).predict_proba(xn)[:, 1]
    alone = xgb.XGBClassifier(**hp).fit(x[:, :4], y).predict_proba(xn[:, :4])[:, 1]
    score = res["bank"]["components"]["score"]["result"]
    assert score["auc"] >= roc_auc_score(yn, joint_ref) - 0.02
    assert score["auc"] > roc_auc_score(yn, alone)
    preds = pacsv.read_csv(out / "bank" / "score.predictions.csv")
    assert preds.column_names == ["customer_id", "score", "predicted", "label"]
    assert preds.num_rows == len(yn)
    assert "result" not in res["telecom"]["components"]["score"]
    report = (out / "bank" / "sgb.report.csv").read_text()
    assert "auc" in report and "he_seconds" in report


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("label: {party: bank", "label: {party: tax"), "label.party"),
        (("model: {receivers: [bank, telecom]}", "model: {receivers: [bank]}"), "every data"),
        (("report: {receivers: [bank]", "report: {receivers: [telecom]"), "label party alone"),
        (("max_depth: 4", "max_depth: 40"), "max_depth"),
        (
            (
                "inputs: psi.intersection ",
                "inputs: {bank: {from: psi.intersection, role: dealer}, telecom: psi.intersection}",
            ),
            "dealer",
        ),
    ],
)
def test_bad_train_sgb_specs_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(JOB.replace(*change))
