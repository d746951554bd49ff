"""A reviewer's cases of ``predict`` with registered and in-job models: a model name that is
no model, a part that cannot be read at one party, and what the parties then see."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_registered_predict import SCORE_IN_JOB, TRAIN, _data, _job, _registered

from rainbridge.errors import DataError
from rainbridge.jobs.local import run_local

HEAD = TRAIN.partition("  - id: psi\n")[0]


def test_a_predict_naming_a_component_that_is_no_model_is_refused_before_any_message(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    # the PSI is an earlier component, but it gives no model: refused at the checks, so
    # nothing runs (no output is staged or written)
    text = TRAIN + SCORE_IN_JOB.replace("MODEL", "psi_new")
    with pytest.raises(DataError, match=r"component 'score'.*'psi_new' gives no model"):
        run_local(_job(text), data, tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").rglob("*.*"))


def test_a_part_unreadable_at_one_party_fails_every_party_promptly(tmp_path: Path) -> None:
    data = _data(tmp_path)
    first = run_local(_job(TRAIN), data, tmp_path / "a")
    models = _registered(first, "m", 1)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    models["telecom"]["m@1"] = {**models["telecom"]["m@1"], "path": str(broken)}
    job = _job(HEAD + SCORE_IN_JOB.replace("MODEL", '"m@1"'))
    t0 = time.monotonic()
    with pytest.raises(DataError, match=r"model 'm@1' cannot be read at 'telecom'") as err:
        run_local(job, data, tmp_path / "b", models=models, timeout=30)
    assert time.monotonic() - t0 < 20
    assert str(tmp_path) not in str(err.value)  # no path in what the others are told
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.csv"))


def test_predictions_for_another_party_than_the_label_party_are_refused_before_training(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    text = TRAIN + SCORE_IN_JOB.replace("MODEL", "sgb").replace(
        "predictions: {receivers: [bank]", "predictions: {receivers: [telecom]"
    )
    text = text.replace("params: {model: sgb, label: default}", "params: {model: sgb}")
    with pytest.raises(DataError, match=r"component 'score'.*label party of model 'sgb', 'bank'"):
        run_local(_job(text), data, tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").rglob("*.*"))


def test_an_id_column_for_a_party_not_of_the_model_is_refused() -> None:
    from test_scoring_job import MODEL

    from rainbridge.errors import ConfigError
    from rainbridge.jobs.scoring import scoring_job

    sets = {"bank": "applicants", "telecom": "subscribers"}
    # a misspelt party would leave the telecom matching on its registered ID column instead
    # of the one asked for: other rows, silently
    with pytest.raises(ConfigError, match=r"--id telcom: not a party of the model"):
        scoring_job(MODEL, sets, ids={"telcom": "phone"})
    spec = scoring_job(MODEL, sets, ids={"telecom": "phone"})
    assert spec["components"][0]["inputs"]["telecom"] == {"dataset": "subscribers", "id": "phone"}


def test_a_forged_verdict_of_the_same_model_check_is_refused_in_few_words() -> None:
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from rainbridge.components.predict import same_model
    from rainbridge.net.local import LocalChannel

    async def go(verdict: Any) -> str:
        hub, other = LocalChannel.pair("s", "bank", "telecom")
        ctx: Any = SimpleNamespace(party="telecom", channels={"bank": other})
        await hub.send_json("predict/model-ok", verdict)
        try:
            await same_model(ctx, "j1.sgb", "bank", ["bank", "telecom"])
        except DataError as exc:
            assert await hub.recv_json("predict/model") == {"model": "j1.sgb"}
            return str(exc)
        raise AssertionError("a forged verdict was accepted")

    # the label party says no and names what each holds: its words are kept short
    huge = {f"p{i}": "x" * 100_000 for i in range(100)}
    said = asyncio.run(go({"ok": False, "held": huge}))
    assert "different models" in said and len(said) < 2_000
    assert "different models" in asyncio.run(go(["ok"]))
    assert "different models" in asyncio.run(go({"ok": "yes"}))


def test_a_psi_input_without_an_id_column_anywhere_is_refused_before_any_message(
    tmp_path: Path,
) -> None:
    from rainbridge.data import inspect_dataset

    data = _data(tmp_path)
    # the new rows are registered without an ID column and the job names none: the first
    # PSI and the training must not run before the second PSI finds it has nothing to match
    data["bank"]["applicants"] = inspect_dataset("applicants", tmp_path / "new.csv", None)
    text = TRAIN + SCORE_IN_JOB.replace("MODEL", "sgb").replace(
        "bank: {dataset: applicants, id: cust_no}", "bank: {dataset: applicants}"
    )
    with pytest.raises(DataError, match=r"'applicants' at 'bank' has no ID column.*'psi_new'"):
        run_local(_job(text), data, tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").rglob("*.*"))


THREE = """
name: three
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cust_no}
      telecom: {dataset: subscribers, id: client}
      tax: {dataset: filings, id: tin}
    params: {protocol: ecdh}
    outputs:
      intersection:
        receivers: [bank, telecom, tax]
        columns: {bank: [a, b, default], telecom: [c, d], tax: [e]}
  - id: lr
    type: train_lr
    inputs: psi.intersection
    params:
      label: {party: bank, column: default}
      features: {bank: [a, b], telecom: [c, d], tax: [e]}
    outputs:
      model: {receivers: [bank, telecom, tax]}
  - id: score
    type: predict
    inputs: {bank: psi.intersection, telecom: psi.intersection}
    params: {model: lr}
    outputs:
      predictions: {receivers: [bank]}
"""


def test_a_predict_over_other_parties_than_the_in_job_models_is_refused_before_training(
    tmp_path: Path,
) -> None:
    from rainbridge.jobs.complete import complete_job
    from rainbridge.jobs.execute import check_inputs

    data = _data(tmp_path)
    # the tax office's part is needed for every score: without it, the training would run
    # and the predict fail after it
    with pytest.raises(
        DataError, match=r"component 'score'.*'lr' was trained by bank, tax, telecom"
    ):
        check_inputs(complete_job(_job(THREE), "bank", data["bank"]), "bank", data["bank"])


def test_features_named_for_another_party_only_leave_the_models_to_fill_in(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    first = run_local(_job(TRAIN), data, tmp_path / "a")
    # the job names the telecom's features only; the bank's new rows lack its feature b,
    # which its part of the model needs: refused at the checks, before any message
    score = SCORE_IN_JOB.replace("MODEL", '"m@1"').replace(
        "label: default}", "label: default, features: {telecom: [c, d]}}"
    )
    job = _job(HEAD + score.replace("[a, b, default]", "[a, default]"))
    with pytest.raises(DataError, match=r"has no column 'b': component 'score'"):
        run_local(job, data, tmp_path / "b", models=_registered(first, "m", 1))
    # the same with the model trained earlier in the job: refused before the training
    job = _job(TRAIN + score.replace('"m@1"', "sgb").replace("[a, b, default]", "[a, default]"))
    with pytest.raises(DataError, match=r"has no column 'b': component 'score'"):
        run_local(job, data, tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.*"))
    # a malformed list of features (a peer's proposal) is left for the component's check
    from rainbridge.jobs.complete import complete_job
    from rainbridge.jobs.spec import JobSpec

    raw = _job(HEAD + score).to_dict()
    raw["components"][1]["params"]["features"] = ["a"]
    mine = complete_job(JobSpec.model_validate(raw), "bank", data["bank"])
    assert mine.components[1].params["features"] == ["a"]


def test_a_local_model_part_given_for_another_party_is_refused(tmp_path: Path) -> None:
    from rainbridge.errors import ConfigError
    from rainbridge.jobs.local import models_from_args

    data = _data(tmp_path)
    first = run_local(_job(TRAIN), data, tmp_path / "a")
    bank_part = first["bank"]["components"]["sgb"]["outputs"]["model"]["path"]
    job = _job(HEAD + SCORE_IN_JOB.replace("MODEL", '"m@1"'))
    # both parts name the same training, so the same-model check would pass: the telecom
    # would score with the bank's splits
    with pytest.raises(ConfigError, match=r"--model 'telecom:m@1=.*': it is 'bank''s part"):
        models_from_args(job, [f"bank:m@1={bank_part}", f"telecom:m@1={bank_part}"])
    assert models_from_args(job, [f"bank:m@1={bank_part}"])["bank"]["m@1"]["name"] == "m@1"


def test_a_local_run_naming_a_model_it_is_not_given_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    # a later component's name, or a registered model no --model gives: the training
    # would run for nothing before the predict finds no model
    for model in ("later", '"m@1"'):
        text = TRAIN + SCORE_IN_JOB.replace("MODEL", model)
        with pytest.raises(DataError, match=r"component 'score': no model '(later|m@1)' at 'bank'"):
            run_local(_job(text), data, tmp_path / "a")
        assert not (tmp_path / "a").exists()


LR_SCORE = """
name: lr-score
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
  - id: lr
    type: train_lr
    inputs: psi.intersection
    params:
      label: {party: bank, column: default}
      features: {bank: [a, b], telecom: [c, d]}
      epochs: 2
    outputs:
      model: {receivers: [bank, telecom]}
  - id: psi_new
    type: psi
    inputs:
      bank: {dataset: applicants, id: cust_no}
      telecom: {dataset: newsubs, id: client}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [a, b, default], telecom: [c, d]}
  - id: score
    type: predict
    inputs: psi_new.intersection
    params: {model: lr, label: default}
    outputs:
      predictions: {receivers: [bank], format: csv}
"""


@pytest.mark.parametrize("where", ["bank", "telecom"])
def test_a_nan_feature_in_the_rows_scored_with_lr_is_refused_at_its_party(
    tmp_path: Path, where: str
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rainbridge.data import inspect_dataset

    data = _data(tmp_path)
    rng = np.random.default_rng(3)
    ids = [f"id{i:05d}" for i in range(1000, 1600)]
    x = rng.normal(size=(600, 4))
    x[17, 0 if where == "bank" else 2] = np.nan  # a NaN is no missing value to Arrow
    y = (x[:, 0] > 0).astype(int)
    pq.write_table(pa.table({"cust_no": ids, "a": x[:, 0], "b": x[:, 1], "default": y}),
                   tmp_path / "new.parquet")  # fmt: skip
    pq.write_table(pa.table({"client": ids, "c": x[:, 2], "d": x[:, 3]}), tmp_path / "ns.parquet")
    data["bank"]["applicants"] = inspect_dataset("applicants", tmp_path / "new.parquet", "cust_no")
    data["telecom"]["newsubs"] = inspect_dataset("newsubs", tmp_path / "ns.parquet", "client")
    # a NaN score (class 0) at the label party, or the telecom taken for a forger there
    col = "a" if where == "bank" else "c"
    with pytest.raises(DataError, match=f"feature column '{col}' of '{where}' holds NaN"):
        run_local(_job(LR_SCORE), data, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_a_predict_naming_a_later_component_is_refused_even_if_a_model_has_that_name(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    first = run_local(_job(TRAIN), data, tmp_path / "a")
    # the job's own sgb comes after the predict: a registered part that happens to be
    # named sgb would score instead, silently
    later = TRAIN.partition("components:\n")[2]
    text = HEAD + SCORE_IN_JOB.replace("MODEL", "sgb") + later
    with pytest.raises(DataError, match=r"component 'score': 'sgb' comes after it"):
        models = {p: {"sgb": m["sgb@1"]} for p, m in _registered(first, "sgb", 1).items()}
        run_local(_job(text), data, tmp_path / "b", models=models)
