"""``predict`` with a model from an earlier job (each party's registered part) gives the
scores the in-job prediction gives; things are said once (inputs, ID columns, features);
parts of different models never mix; a missing column is refused before any message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from rainbridge.data import inspect_dataset
from rainbridge.errors import DataError, JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

TRAIN = """
name: risk
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cust_no}
      telecom: {dataset: subscribers, id: client}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [a, b, default], telecom: [c, d]}
  - id: sgb
    type: train_sgb
    inputs: psi.intersection
    params:
      label: {party: bank, column: default}
      features: {bank: [a, b], telecom: [c, d]}
      trees: 3
      max_depth: 3
      key_bits: 1024
      seed: SEED
    outputs:
      model: {receivers: [bank, telecom]}
"""
SCORE_IN_JOB = """
  - id: psi_new
    type: psi
    inputs:
      bank: {dataset: applicants, id: cust_no}
      telecom: {dataset: subscribers, id: client}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [a, b, default], telecom: [c, d]}
  - id: score
    type: predict
    inputs: psi_new.intersection
    params: {model: MODEL, label: default}
    outputs:
      predictions: {receivers: [bank], format: csv}
"""


def _data(tmp: Path) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(7)
    n = 1600
    x = rng.normal(size=(n, 4))
    y = (x @ [1.0, -0.8, 0.6, 0.9] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    ids = [f"id{i:05d}" for i in range(n)]
    bank = pa.table({"cust_no": ids, "a": x[:, 0], "b": x[:, 1], "default": y})
    pacsv.write_csv(bank.slice(0, 1000), tmp / "train.csv")
    pacsv.write_csv(bank.slice(1000), tmp / "new.csv")
    tel = pa.table({"client": ids[::-1], "c": x[::-1, 2], "d": x[::-1, 3]})
    pacsv.write_csv(tel, tmp / "tel.csv")
    return {
        "bank": {
            "customers": inspect_dataset("customers", tmp / "train.csv", "cust_no"),
            "applicants": inspect_dataset("applicants", tmp / "new.csv", "cust_no"),
        },
        "telecom": {"subscribers": inspect_dataset("subscribers", tmp / "tel.csv", "client")},
    }


def _job(text: str, seed: int = 1) -> Any:
    return parse_job(text.replace("SEED", str(seed)))


def _registered(result: dict[str, Any], name: str, version: int) -> dict[str, Any]:
    """What a node's registry resolves for a job (see Models.resolve_job), from a run."""
    out: dict[str, Any] = {}
    for party, res in result.items():
        o = res["components"]["sgb"]["outputs"]["model"]
        out[party] = {
            f"{name}@{version}": {
                "id": f"{res['job_id']}.sgb",
                "name": name,
                "version": version,
                "path": o["path"],
                "features": o["columns"],
            }
        }
    return out


def _scores(out: Path) -> dict[str, float]:
    t = pacsv.read_csv(out / "bank" / "score.predictions.csv")
    return dict(zip(t.column("cust_no").to_pylist(), t.column("score").to_pylist(), strict=True))


def test_a_registered_model_scores_as_the_model_in_the_job(tmp_path: Path) -> None:
    data = _data(tmp_path)
    first = run_local(_job(TRAIN + SCORE_IN_JOB.replace("MODEL", "sgb")), data, tmp_path / "a")
    in_job = _scores(tmp_path / "a")
    assert len(in_job) == 600
    summary = first["bank"]["components"]["score"]
    assert summary["result"]["auc"] > 0.8 and "model" not in summary
    # a second job: only the new rows' PSI and the predict, naming the registered model;
    # no features, no ID columns repeated
    head, _, _ = TRAIN.partition("  - id: psi\n")
    second = _job(head + SCORE_IN_JOB.replace("MODEL", '"risk/sgb@1"'))
    got = run_local(second, data, tmp_path / "b", models=_registered(first, "risk/sgb", 1))
    assert _scores(tmp_path / "b") == in_job  # exactly, row by row
    assert got["bank"]["components"]["score"]["model"] == {
        "id": f"{first['bank']['job_id']}.sgb", "name": "risk/sgb", "version": 1,
    }  # fmt: skip
    assert got["bank"]["components"]["score"]["result"] == summary["result"]


def test_parts_of_different_models_are_refused_at_every_party(tmp_path: Path) -> None:
    data = _data(tmp_path)
    a = run_local(_job(TRAIN, 1), data, tmp_path / "a")
    b = run_local(_job(TRAIN, 2), data, tmp_path / "b")
    models = {"bank": _registered(a, "m", 1)["bank"], "telecom": _registered(b, "m", 1)["telecom"]}
    head, _, _ = TRAIN.partition("  - id: psi\n")
    job = _job(head + SCORE_IN_JOB.replace("MODEL", '"m@1"'))
    with pytest.raises(DataError, match=r"different models.*bank holds .*\.sgb; telecom holds"):
        run_local(job, data, tmp_path / "c", models=models)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.csv"))


def test_a_model_feature_missing_from_the_new_rows_is_refused_before_any_message(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    a = run_local(_job(TRAIN), data, tmp_path / "a")
    head, _, _ = TRAIN.partition("  - id: psi\n")
    # the new rows' PSI forgets the telecom's column d, which the model needs
    job = _job(head + SCORE_IN_JOB.replace("MODEL", '"m@1"').replace("[c, d]", "[c]"))
    with pytest.raises(DataError, match=r"has no column 'd': component 'score'"):
        run_local(job, data, tmp_path / "b", models=_registered(a, "m", 1))
    # a model nobody registered under that name
    with pytest.raises(DataError, match=r"no model 'm@2' at 'bank'"):
        run_local(
            _job(head + SCORE_IN_JOB.replace("MODEL", '"m@2"')),
            data,
            tmp_path / "c",
            models=_registered(a, "m", 1),
        )


def test_features_named_in_predict_must_be_the_models(tmp_path: Path) -> None:
    data = _data(tmp_path)
    text = TRAIN + SCORE_IN_JOB.replace("MODEL", "sgb").replace(
        "label: default}", "label: default, features: {bank: [b, a], telecom: [c, d]}}"
    )
    with pytest.raises(DataError, match=r"model's features at 'bank' are \['a', 'b'\]"):
        run_local(_job(text), data, tmp_path / "a")


def test_inputs_named_once() -> None:
    job = _job(TRAIN)
    assert {p: r.from_ for p, r in job.components[1].inputs.items()} == {
        "bank": "psi.intersection", "telecom": "psi.intersection",
    }  # fmt: skip
    one = _job(TRAIN.replace("inputs: psi.intersection", "inputs: {bank: psi.intersection, "
                             "telecom: psi.intersection}"))  # fmt: skip
    assert one.digest() == job.digest()  # the same job, however it is written
    with pytest.raises(JobSpecError, match=r"job>:\d+: components\[1\].inputs: 'psi.nope' is"):
        _job(TRAIN.replace("inputs: psi.intersection", "inputs: psi.nope"))
    with pytest.raises(JobSpecError, match="not an output of an earlier component"):
        _job(TRAIN.replace("inputs: psi.intersection", "inputs: {bank: psi.other}"))


def test_run_local_scores_with_model_parts_of_an_earlier_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rainbridge.cli import main

    _data(tmp_path)
    (tmp_path / "train.yaml").write_text(TRAIN.replace("SEED", "3"))
    head, _, _ = TRAIN.partition("  - id: psi\n")
    (tmp_path / "score.yaml").write_text(head + SCORE_IN_JOB.replace("MODEL", '"risk@1"'))
    sets = ["--dataset", f"bank.customers={tmp_path / 'train.csv'}",
            "--dataset", f"telecom.subscribers={tmp_path / 'tel.csv'}"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(tmp_path / "train.yaml"), "--local", *sets,
                                 "--out", str(tmp_path / "a")])  # fmt: skip
    assert first.exit_code == 0, first.output
    parts = [f"--model={p}:risk@1={tmp_path / 'a' / p / 'sgb.model.json'}"
             for p in ("bank", "telecom")]  # fmt: skip
    sets[1] = f"bank.applicants={tmp_path / 'new.csv'}"
    second = runner.invoke(main, ["run", str(tmp_path / "score.yaml"), "--local", *sets,
                                  *parts, "--out", str(tmp_path / "b")])  # fmt: skip
    assert second.exit_code == 0, second.output
    assert len(_scores(tmp_path / "b")) == 600 and "auc" in second.output.lower()
    bad = runner.invoke(main, ["run", str(tmp_path / "score.yaml"), "--local", *sets,
                               "--model=bank:risk@1=" + str(tmp_path / "new.csv")])  # fmt: skip
    assert bad.exit_code == 2 and "not a model part" in bad.output
