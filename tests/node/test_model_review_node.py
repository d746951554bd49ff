"""A reviewer's cases of the model registry at a node: a name whose latest version changes
between a job's acceptance and its start, and versions written oddly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config, pin

from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.crypto.certs import create_identity
from rainbridge.errors import ConfigError, DataError, NotFoundError
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.service import NodeService

Factory = Callable[[str], NodeService]


def _register(node: NodeService, tmp: Path, job_id: str, feature: str) -> str:
    """A vertical LR part of ``risk/lr`` at the bank scoring with ``feature``."""
    part = tmp / f"{job_id}.json"
    part.write_text(json.dumps({
        "format": MODEL_FORMAT, "job": job_id, "component": "lr", "label_party": "bank",
        "parties": ["bank", "telecom"], "features": [feature], "mean": [0.0], "scale": [1.0],
        "weights": [0.5], "intercept": -1.0,
    }))  # fmt: skip
    training = {
        "name": "risk", "parties": ["bank", "telecom"],
        "components": [
            {"id": "psi", "type": "psi",
             "inputs": {"bank": {"dataset": "customers"}, "telecom": {"dataset": "subscribers"}},
             "outputs": {"intersection": {"receivers": ["bank", "telecom"]}}},
            {"id": "lr", "type": "train_lr", "inputs": "psi.intersection",
             "params": {"label": {"party": "bank", "column": "age"},
                        "features": {"bank": [feature], "telecom": ["x"]}},
             "outputs": {"model": {"receivers": ["bank", "telecom"]}}},
        ],
    }  # fmt: skip
    result = {"components": {"lr": {"outputs": {"model": {"path": str(part)}}}}}
    node.models.register_models(job_id, JobSpec.model_validate(training).to_dict(), result)
    return f"{job_id}.lr"


@pytest.fixture
def bank(node_factory: Factory, tmp_path: Path) -> NodeService:
    node = node_factory("bank")
    pin(node, "telecom", create_identity(tmp_path / "telecom-id", "telecom"))
    data = tmp_path / "customers.csv"
    data.write_text("customer_id,age,income\na,1,10\nb,2,20\nc,3,30\n")
    node.owners.add_dataset("customers", str(data), "customer_id")
    return node


def test_a_version_is_written_in_digits(bank: NodeService, tmp_path: Path) -> None:
    for c in "abcdefghijk":
        _register(bank, tmp_path, c * 16, "age")
    assert bank.models.resolve("risk/lr@10").id == "j" * 16 + ".lr"
    assert bank.models.resolve("risk/lr@1").id == "a" * 16 + ".lr"
    # what int() would read as another number is no version: never the wrong model, nor a
    # crash in the database driver
    for odd in ("risk/lr@1_0", "risk/lr@+1", "risk/lr@ 1", "risk/lr@\u0661", "risk/lr@-1",
                "risk/lr@" + "9" * 30):  # fmt: skip
        with pytest.raises(NotFoundError, match="a version is a number"):
            bank.models.resolve(odd)


def test_an_imported_name_is_one_a_job_can_name(bank: NodeService, tmp_path: Path) -> None:
    _register(bank, tmp_path, "a" * 16, "age")
    exported = bank.models.export_model("risk/lr@1")
    rebuilt = NodeService(make_config(tmp_path / "rebuilt", "bank"))  # rebuilt from nothing
    # 'x@3' would read as version 3 of 'x': a part no job and no command could name
    forged = {**exported, "registration": {**exported["registration"], "name": "x@3"}}
    with pytest.raises(ConfigError, match=r"'x@3'.*'@'"):
        rebuilt.models.import_model(forged, None, "user:admin")
    assert rebuilt.models.models() == []
    parts = tmp_path / "rebuilt" / "models"
    assert not parts.exists() or not any(parts.iterdir())
    got = rebuilt.models.import_model(exported, None, "user:admin")
    assert rebuilt.models.resolve(f"{got['name']}@{got['version']}").id == "a" * 16 + ".lr"


def _scoring(model: str) -> dict[str, Any]:
    return {
        "name": "score", "parties": ["bank", "telecom"],
        "components": [
            {"id": "align", "type": "psi",
             "inputs": {"bank": {"dataset": "customers"}, "telecom": {"dataset": "subscribers"}},
             "outputs": {"intersection": {"receivers": ["bank", "telecom"],
                                          "columns": {"bank": ["age"]}}}},
            {"id": "score", "type": "predict", "inputs": "align.intersection",
             "params": {"model": model},
             "outputs": {"predictions": {"receivers": ["bank"]}}},
        ],
    }  # fmt: skip


def test_a_start_refused_for_a_retired_model_uses_no_quota(
    bank: NodeService, tmp_path: Path
) -> None:
    g = bank.owners.add_grant(
        dataset="customers", peer="telecom", columns=["customer_id", "age"],
        components=["psi", "predict"], receivers=["bank", "telecom"], max_calls=1,
        actor="user:olivia",
    )  # fmt: skip
    _register(bank, tmp_path, "a" * 16, "age")
    job = _scoring("risk/lr@1")
    msg = {"type": "propose", "job_id": "j1", "spec": job,
           "digest": JobSpec.model_validate(job).digest()}  # fmt: skip
    assert asyncio.run(bank.router.dispatch("telecom", msg)) == {"accept": True}
    bank.models.retire("risk/lr@1", "user:admin")  # between the acceptance and the start
    reply = asyncio.run(bank.router.dispatch("telecom", {"type": "start", "job_id": "j1"}))
    assert reply["ok"] is False and "retired" in reply["reason"]
    assert bank.storage.job_dict("j1")["status"] == "failed"
    # the job never ran: the grant's one call is still there
    (left,) = [x for x in bank.owners.grants() if x.id == g["id"]]
    assert left.calls_used == 0


def test_predictions_for_another_party_than_the_label_party_are_refused_at_the_proposal(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16, "age")
    job = _scoring("risk/lr@1")
    job["components"][1]["outputs"]["predictions"]["receivers"] = ["telecom"]
    # the label party adds the partial scores up: the PSI would have run for nothing
    with pytest.raises(DataError, match=r"'score'.*label party of model 'risk/lr@1', 'bank'"):
        bank.models.resolve_job(JobSpec.model_validate(job))


def test_a_part_whose_file_is_gone_is_refused_at_the_proposal(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16, "age")
    (tmp_path / f"{'a' * 16}.json").unlink()  # a disk restored without the models folder
    with pytest.raises(DataError, match=r"risk/lr v1 .*part.*missing at 'bank'") as err:
        bank.models.resolve_job(JobSpec.model_validate(_scoring("risk/lr@1")))
    assert str(tmp_path) not in str(err.value)  # the proposing peer is told no path


def test_an_imported_part_lacking_what_scoring_reads_is_refused(
    bank: NodeService, tmp_path: Path
) -> None:
    _register(bank, tmp_path, "a" * 16, "age")
    exported = bank.models.export_model("risk/lr@1")
    rebuilt = NodeService(make_config(tmp_path / "rebuilt", "bank"))
    part = exported["part"]
    # each was registered, then online scoring and the predict failed with a KeyError
    for key in ("scale", "intercept"):
        bad = {**exported, "part": {k: v for k, v in part.items() if k != key}}
        with pytest.raises(ConfigError, match=f"'{key}'"):
            rebuilt.models.import_model(bad, None, "user:admin")
    bad = {**exported, "part": {**part, "scale": [1.0, 2.0]}}
    with pytest.raises(ConfigError, match="standardisation differ"):
        rebuilt.models.import_model(bad, None, "user:admin")
    assert rebuilt.models.models() == []


def test_online_scoring_refuses_a_nan_feature_before_asking_anyone(
    bank: NodeService, tmp_path: Path
) -> None:
    model = _register(bank, tmp_path, "a" * 16, "age")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DataError, match=r"'age'.*not a finite number"):
            asyncio.run(bank.models.predict_online(model, "k", {"age": bad}, "user:admin"))
    assert not any(e["kind"] == "model_scored" for e in bank.storage.events())


class _Forger:
    """A peer whose every answer to a score request is ``reply``."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.router = self

    async def dispatch(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        return self.reply


@pytest.mark.parametrize("z", [float("nan"), float("inf"), True])
def test_online_scoring_refuses_a_forged_partial_score(tmp_path: Path, z: Any) -> None:
    from inprocess_plane import Plane

    plane = Plane()
    bank = plane.node(tmp_path, "bank")
    model = _register(bank, tmp_path, "a" * 16, "age")
    plane.nodes["telecom"] = _Forger({"ok": True, "z": z})  # type: ignore[assignment]
    with pytest.raises(DataError, match=r"'telecom' answered without a partial score"):
        asyncio.run(bank.models.predict_online(model, "k", {"age": 1.0}, "user:admin"))
