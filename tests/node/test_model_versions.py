"""Model versions at a node: a name resolves to its latest version in use, ``name@N`` to
that version, an ID to itself; a retired version is refused by a job that names it (before
any message) and by online scoring; the parties' features are kept for scoring jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config

from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.errors import AuthorizationError, ConfigError, DataError, NotFoundError
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.execute import check_inputs
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.models import ModelRetiredError
from rainbridge.node.service import NodeService

Factory = Callable[[str], NodeService]


def _training(name: str = "risk") -> dict[str, Any]:
    return {
        "name": name,
        "parties": ["bank", "telecom"],
        "components": [
            {"id": "psi", "type": "psi",
             "inputs": {"bank": {"dataset": "customers", "id": "customer_id"},
                        "telecom": {"dataset": "subscribers", "id": "customer_id"}},
             "outputs": {"intersection": {"receivers": ["bank", "telecom"]}}},
            {"id": "lr", "type": "train_lr",
             "inputs": "psi.intersection",
             "params": {"label": {"party": "bank", "column": "age"},
                        "features": {"bank": ["age"], "telecom": ["x", "y"]}},
             "outputs": {"model": {"receivers": ["bank", "telecom"]}}},
        ],
    }  # fmt: skip


def _register(node: NodeService, tmp: Path, job_id: str) -> str:
    part = tmp / f"{job_id}.json"
    part.write_text(json.dumps({
        "format": MODEL_FORMAT, "job": job_id, "component": "lr", "label_party": "bank",
        "parties": ["bank", "telecom"], "features": ["age"], "mean": [40.0], "scale": [10.0],
        "weights": [0.5], "intercept": -1.0,
    }))  # fmt: skip
    result = {"components": {"lr": {"outputs": {"model": {"path": str(part)}}}}}
    node.models.register_models(job_id, JobSpec.model_validate(_training()).to_dict(), result)
    return f"{job_id}.lr"


def _scoring(model: str, parties: tuple[str, ...] = ("bank", "telecom")) -> JobSpec:
    return JobSpec.model_validate({
        "name": "score", "parties": list(parties),
        "components": [
            {"id": "align", "type": "psi",
             "inputs": {p: {"dataset": "customers"} for p in parties},
             "outputs": {"intersection": {"receivers": list(parties)}}},
            {"id": "score", "type": "predict", "inputs": "align.intersection",
             "params": {"model": model},
             "outputs": {"predictions": {"receivers": ["bank"]}}},
        ],
    })  # fmt: skip


@pytest.fixture
def bank(node_factory: Factory, csv_file: Path) -> NodeService:
    node = node_factory("bank")
    node.owners.add_dataset("customers", str(csv_file), "customer_id")
    return node


def test_names_versions_and_ids_resolve(bank: NodeService, tmp_path: Path) -> None:
    v1 = _register(bank, tmp_path, "a" * 16)
    v2 = _register(bank, tmp_path, "b" * 16)
    assert bank.models.resolve("risk/lr").id == v2  # the latest in use
    assert bank.models.resolve("risk/lr@latest").id == v2
    assert bank.models.resolve("risk/lr@1").id == v1
    assert bank.models.resolve(v1).version == 1
    for bad, why in (("risk/lr@3", "no model"), ("risk/lr@x", "a version is a number"),
                     ("other", "no model"), ("", "a model is named")):  # fmt: skip
        with pytest.raises(NotFoundError, match=why):
            bank.models.resolve(bad)
    row = bank.models.model(v1)
    assert row["features_by_party"] == {"bank": ["age"], "telecom": ["x", "y"]}
    assert row["status"] == "active" and row["retired_at"] is None
    assert [m["version"] for m in bank.models.models("risk/lr")] == [1, 2]
    assert bank.models.models("nope") == []


def test_a_retired_version_is_refused_everywhere(bank: NodeService, tmp_path: Path) -> None:
    v1 = _register(bank, tmp_path, "a" * 16)
    v2 = _register(bank, tmp_path, "b" * 16)
    got = bank.models.retire("risk/lr", "user:admin")  # the latest: v2
    assert (got["id"], got["status"], got["retired_by"]) == (v2, "retired", "user:admin")
    with pytest.raises(ConfigError, match="retired already"):
        bank.models.retire(v2, "user:admin")
    # the name now stands for v1; v2 by its version is found but refused by a job
    assert bank.models.resolve("risk/lr").id == v1
    assert bank.models.resolve_job(_scoring("risk/lr"))["risk/lr"]["id"] == v1
    with pytest.raises(ModelRetiredError, match=r"risk/lr v2 .* is retired at 'bank'"):
        bank.models.resolve_job(_scoring("risk/lr@2"))
    # a whole check at the node refuses it too (the proposal's answer), before any message
    with pytest.raises(ModelRetiredError):
        bank.jobs.check_job(_scoring("risk/lr@2"), "telecom")
    # and online scoring
    with pytest.raises(AuthorizationError, match="retired"):
        asyncio.run(bank.models.predict_online(v2, "a", {"age": 30}, "user:admin"))
    bank.models.retire(v1, "user:admin")
    with pytest.raises(NotFoundError, match="no model 'risk/lr'"):
        bank.models.resolve("risk/lr")  # nothing of the name in use
    kinds = [e["kind"] for e in bank.storage.events()]
    assert kinds.count("model_retired") == 2


def test_a_job_naming_a_model_of_other_parties_is_refused(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16)
    with pytest.raises(DataError, match="trained by bank, telecom; component 'score' names"):
        bank.models.resolve_job(_scoring("risk/lr", ("bank", "tax")))
    # a component of the job with the same name is the in-job model, not the registry's
    job = JobSpec.model_validate({**_training(), "components": [
        *_training()["components"],
        {"id": "score", "type": "predict", "inputs": "psi.intersection",
         "params": {"model": "lr"}, "outputs": {"predictions": {"receivers": ["bank"]}}},
    ]})  # fmt: skip
    assert bank.models.resolve_job(job) == {}


def test_the_node_fills_in_its_features_and_checks_the_columns(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16)
    job = _scoring("risk/lr@1")
    local = complete_job(job, "bank", bank.storage.dataset_refs(), bank.models.resolve_job(job))
    score = local.components[1]
    assert score.params["features"] == {"bank": ["age"]}
    assert score.params["id"] == {"bank": "customer_id"}  # the dataset's, through the PSI
    assert score.inputs["bank"].id == "customer_id"
    assert job.components[1].params == {"model": "risk/lr@1"}  # the agreed job is untouched
    # the PSI's output lacks the model's feature here: refused before any message
    with pytest.raises(DataError, match=r"has no column 'age': component 'score'"):
        check_inputs(local, "bank", bank.storage.dataset_refs())


def test_an_imported_part_keeps_its_version(bank: NodeService, tmp_path: Path) -> None:
    _register(bank, tmp_path, "a" * 16)
    v2 = _register(bank, tmp_path, "b" * 16)
    exported = bank.models.export_model("risk/lr@2")
    rebuilt = NodeService(make_config(tmp_path / "rebuilt", "bank"))  # rebuilt from nothing
    got = rebuilt.models.import_model(exported, None, "user:admin")
    assert (got["id"], got["version"]) == (v2, 2)  # the number the other parties know
    assert got["features_by_party"] == {"bank": ["age"], "telecom": ["x", "y"]}
    assert rebuilt.models.resolve("risk/lr@2").id == v2
    # that version of the name is another model here: refused, nothing registered
    other = NodeService(make_config(tmp_path / "other", "bank"))
    _register(other, tmp_path, "c" * 16)
    _register(other, tmp_path, "d" * 16)
    with pytest.raises(ConfigError, match=r"risk/lr@2 is another model at this node"):
        other.models.import_model(exported, None, "user:admin")
    assert [m["id"] for m in other.models.models()] == ["c" * 16 + ".lr", "d" * 16 + ".lr"]
    assert not (tmp_path / "other" / "models" / f"{v2}.json").exists()
    # importing it again where it is: refused before its part's file is touched
    part = tmp_path / "rebuilt" / "models" / f"{v2}.json"
    before = part.read_bytes()
    with pytest.raises(ConfigError, match="already registered"):
        rebuilt.models.import_model({**exported, "part": {**exported["part"], "weights": [9]}},
                                    None, "user:admin")  # fmt: skip
    assert part.read_bytes() == before


def test_an_import_whose_parties_are_not_a_list_is_refused(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16)
    exported = bank.models.export_model("risk/lr@1")
    fresh = NodeService(make_config(tmp_path / "fresh", "bank"))
    for parties in ("bank,telecom", ["bank", 3], None):
        bad = {**exported, "registration": {**exported["registration"], "parties": parties}}
        with pytest.raises(ConfigError, match="its parties are a list of names"):
            fresh.models.import_model(bad, None, "user:admin")
    assert fresh.models.models() == []


def test_a_version_keeps_its_training_figures(bank: NodeService, tmp_path: Path) -> None:
    from rainbridge.cli.models import card_text

    part = tmp_path / "p.json"
    part.write_text(json.dumps({
        "format": MODEL_FORMAT, "job": "e" * 16, "component": "lr", "label_party": "bank",
        "parties": ["bank", "telecom"], "features": ["age"], "mean": [40.0], "scale": [10.0],
        "weights": [0.5], "intercept": -1.0,
    }))  # fmt: skip
    summary = {
        "outputs": {"model": {"path": str(part)}},
        "result": {"auc": 0.8123456, "ks": 0.41, "rows": 1000.0, "positives": float("nan")},
        "epochs_run": 3, "seconds": 1.25, "bytes": 123, "receiver": "bank",
    }  # fmt: skip
    spec = JobSpec.model_validate(_training()).to_dict()
    bank.models.register_models("e" * 16, spec, {"components": {"lr": summary}})
    row = bank.models.model("risk/lr@1")
    # finite figures only; traffic and names are not a model's
    assert row["metrics"] == {"auc": 0.8123456, "ks": 0.41, "rows": 1000.0, "epochs_run": 3.0,
                              "seconds": 1.25}  # fmt: skip
    assert card_text(row["metrics"]) == "AUC 0.8123, KS 0.4100, rows 1000, epochs 3, 1.2 s"
    fresh = NodeService(make_config(tmp_path / "fresh", "bank"))
    got = fresh.models.import_model(bank.models.export_model("risk/lr@1"), None, "user:admin")
    assert got["metrics"] == row["metrics"]
