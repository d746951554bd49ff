"""The job ``rainbridge model score`` submits: a PSI of every party's new rows with the
model's features, then ``predict`` naming the version; bad arguments refused."""

from __future__ import annotations

from typing import Any

import pytest

from rainbridge.errors import ConfigError
from rainbridge.jobs import parse_job
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.scoring import scoring_job

MODEL: dict[str, Any] = {
    "id": "0123456789abcdef.sgb",
    "name": "joint-default/sgb",
    "version": 3,
    "parties": ["telecom", "bank"],
    "label_party": "bank",
    "features_by_party": {"bank": ["age", "income"], "telecom": ["spend"]},
}


def test_the_scoring_job_aligns_then_predicts_with_the_version() -> None:
    spec = scoring_job(MODEL, {"bank": "applicants", "telecom": "subscribers"}, label="y",
                       ids={"telecom": "phone"})  # fmt: skip
    job = parse_job(__import__("json").dumps(spec))
    assert job.name == "score-joint-default-sgb-v3" and job.parties == ["bank", "telecom"]
    align, score = job.components
    assert align.params == {"protocol": "rr22"}
    assert align.inputs["telecom"].id == "phone" and align.inputs["bank"].id is None
    assert align.outputs["intersection"].columns == {
        "bank": ["age", "income", "y"], "telecom": ["spend"],
    }  # fmt: skip
    assert score.params == {"model": "joint-default/sgb@3", "label": "y"}
    assert score.outputs["predictions"].receivers == ["bank"]
    assert {p: r.from_ for p, r in score.inputs.items()} == {
        "bank": "align.intersection", "telecom": "align.intersection",
    }  # fmt: skip
    # the telecom's view: the PSI's ID column reaches the predict
    local = complete_job(job, "telecom", models={"joint-default/sgb@3": {"features": ["spend"]}})
    assert local.components[1].params["id"] == {"telecom": "phone"}
    assert local.components[1].params["features"] == {"telecom": ["spend"]}


def test_three_parties_use_ecdh() -> None:
    three = {**MODEL, "parties": ["a", "b", "bank"], "features_by_party": {
        "a": ["x"], "b": [], "bank": ["age"]}}  # fmt: skip
    spec = scoring_job(three, {"a": "d1", "b": "d2", "bank": "d3"})
    assert spec["components"][0]["params"] == {"protocol": "ecdh"}
    assert spec["components"][0]["outputs"]["intersection"]["columns"] == {
        "a": ["x"], "bank": ["age"],
    }  # fmt: skip
    parse_job(__import__("json").dumps(spec))


@pytest.mark.parametrize(
    ("model", "datasets", "why"),
    [
        (MODEL, {"bank": "d"}, "telecom missing"),
        (MODEL, {"bank": "d", "telecom": "d", "tax": "d"}, "tax not a party of the model"),
        ({**MODEL, "features_by_party": None}, {"bank": "d", "telecom": "d"}, "by hand"),
        ({**MODEL, "features_by_party": {"bank": []}}, {"bank": "d", "telecom": "d"}, "by hand"),
    ],
)
def test_bad_arguments_are_refused(model: Any, datasets: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        scoring_job(model, datasets)
