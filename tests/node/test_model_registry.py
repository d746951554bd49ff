"""The model registry: registration at the end of a job, versions, export and import."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config

from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.errors import ConfigError, NotFoundError
from rainbridge.node.service import NodeService

Factory = Callable[[str], NodeService]


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "parties": ["bank", "telecom"],
        "components": [
            {"id": "psi", "type": "psi",
             "inputs": {"bank": {"dataset": "customers", "id": "customer_id"},
                        "telecom": {"dataset": "subscribers", "id": "customer_id"}},
             "outputs": {"intersection": {"receivers": ["bank", "telecom"]}}},
            {"id": "lr", "type": "train_lr",
             "inputs": {"bank": {"from": "psi.intersection"},
                        "telecom": {"from": "psi.intersection"}},
             "params": {"label": {"party": "bank", "column": "age"},
                        "features": {"bank": ["age"], "telecom": ["x"]}},
             "outputs": {"model": {"receivers": ["bank", "telecom"]}}},
        ],
    }  # fmt: skip


def _part(tmp: Path, name: str) -> Path:
    p = tmp / f"{name}.json"
    p.write_text(json.dumps({
        "format": MODEL_FORMAT, "label_party": "bank", "features": ["age"], "mean": [40.0],
        "scale": [10.0], "weights": [0.5], "intercept": -1.0,
    }))  # fmt: skip
    return p


def _register(node: NodeService, tmp: Path, job_id: str, name: str = "risk") -> None:
    result = {"components": {"lr": {"outputs": {"model": {"path": str(_part(tmp, job_id))}}}}}
    node.models.register_models(job_id, _spec(name), result)


def test_models_are_registered_versioned_exported_and_imported(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    bank = node_factory("bank")
    bank.owners.add_dataset("customers", str(csv_file), "customer_id")
    _register(bank, tmp_path, "a" * 16)
    _register(bank, tmp_path, "a" * 16)  # the end of a job handled twice: one model
    _register(bank, tmp_path, "b" * 16)
    models = bank.models.models()
    assert [(m["id"], m["name"], m["version"]) for m in models] == [
        ("a" * 16 + ".lr", "risk/lr", 1),
        ("b" * 16 + ".lr", "risk/lr", 2),
    ]
    assert models[0]["dataset"] == "customers" and models[0]["label_party"] == "bank"
    assert bank.models.model(models[0]["id"])["part"]["weights"] == [0.5]
    # this node's partial score from features given in a request
    row = bank.models.model_row(models[0]["id"])
    assert bank.models._partial(row, None, {"age": 50}) == pytest.approx(0.5 * 1.0 - 1.0)
    with pytest.raises(NotFoundError, match="no row with ID"):
        bank.models._partial(row, "nobody", None)
    # export, then import on a rebuilt node
    exported = bank.models.export_model(models[0]["id"])
    with pytest.raises(ConfigError, match="'bank''s part of the model, not this node's"):
        node_factory("telecom").models.import_model(exported, None, "user:admin")
    fresh = NodeService(make_config(tmp_path / "rebuilt", "bank"))  # the bank, rebuilt
    got = fresh.models.import_model(exported, None, "user:admin")
    assert (got["name"], got["version"]) == ("risk/lr", 1)
    with pytest.raises(ConfigError, match="already registered"):
        fresh.models.import_model(exported, None, "user:admin")
    again = NodeService(make_config(tmp_path / "again", "bank"))
    with pytest.raises(NotFoundError, match="no dataset 'nope'"):
        again.models.import_model(exported, "nope", "user:admin")
    with pytest.raises(ConfigError, match=r"malformed|registration"):
        fresh.models.import_model(
            {"registration": {}, "part": exported["part"]}, None, "user:admin"
        )
    kinds = [e["kind"] for e in fresh.storage.events()]
    assert "model_imported" in kinds and "model_registered" in kinds


def test_models_registered_at_once_get_distinct_versions(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    # jobs ending together: each model of the name takes the next version, none the same
    # (on PostgreSQL too: the tests' database switch)
    bank = node_factory("bank")
    bank.owners.add_dataset("customers", str(csv_file), "customer_id")
    job_ids = [f"{i:016x}" for i in range(12)]
    barrier = threading.Barrier(len(job_ids))

    def register(job_id: str) -> None:
        barrier.wait()
        _register(bank, tmp_path, job_id)

    with ThreadPoolExecutor(len(job_ids)) as pool:
        list(pool.map(register, job_ids))
    versions = sorted(m["version"] for m in bank.models.models())
    assert versions == list(range(1, len(job_ids) + 1))
