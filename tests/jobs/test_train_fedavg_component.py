"""The ``train_fedavg`` component in a job: three clients' rows, one aggregator; the global
model matches centralised training on the pooled rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from rainbridge.data import inspect_dataset
from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

ROOT = Path(__file__).resolve().parents[2]
JOB = (ROOT / "examples" / "jobs" / "fedavg-3banks.yaml").read_text()
FEATURES = ["income", "debt_ratio", "age", "late_payments"]


def _job_over_breast_cancer(tmp: Path) -> tuple[str, dict, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = x[:, :8]
    names = [f"f{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train = order[150:]  # the first 150 rows are held out for the test
    ds = {}
    for i, shard in enumerate(np.array_split(train, 3)):
        party = f"bank_{'abc'[i]}"
        lines = [",".join([*names, "defaulted"])]
        lines += [",".join([*map(str, x[j]), str(int(y[j]))]) for j in shard]
        path = tmp / f"{party}.csv"
        path.write_text("\n".join(lines) + "\n")
        ds[party] = {"loans": inspect_dataset("loans", path, None)}
    job = JOB.replace("features: [income, debt_ratio, age, late_payments]",
                      f"features: [{', '.join(names)}]")  # fmt: skip
    return job, ds, x, y


def test_fedavg_job_matches_centralised_training(tmp_path: Path) -> None:
    job, ds, x, y = _job_over_breast_cancer(tmp_path)
    res = run_local(parse_job(job), ds, tmp_path / "out")
    assert res["hub"]["components"]["fl"]["clients_per_round"] == [3] * 20
    models = [json.loads((tmp_path / "out" / p / "fl.model.json").read_text())
              for p in ("bank_a", "bank_b", "bank_c", "hub")]  # fmt: skip
    assert all(m["theta"] == models[0]["theta"] for m in models)
    m = models[0]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    test, train = order[:150], order[150:]
    theta = np.array(m["theta"])
    z = ((x[test] - m["mean"]) / m["scale"]) @ theta[:-1] + theta[-1]
    ours = roc_auc_score(y[test], z)
    mu, sd = x[train].mean(0), x[train].std(0)
    assert np.allclose(m["mean"], mu) and np.allclose(m["scale"], sd)
    ref = LogisticRegression(max_iter=5000).fit((x[train] - mu) / sd, y[train])
    central = roc_auc_score(y[test], ref.decision_function((x[test] - mu) / sd))
    assert ours >= central - 0.01, (ours, central)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("hub: {role: aggregator}", "hub: {role: dealer}"), "aggregator"),
        (("receivers: [bank_a, bank_b, bank_c, hub]", "receivers: [bank_a]"), "every client"),
        (("rounds: 20", "rounds: 20\n      threshold: 9"), "above the 3 clients"),
    ],
)
def test_bad_fedavg_specs_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(JOB.replace(*change))
