"""Inputs that name files at a node stay where they belong: IDs that become paths cannot
leave their folder, datasets come only from data roots (never the node directory), and the
IDs of people scored online never reach a log."""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from node_helpers import make_config

from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.errors import AuthorizationError, DataError
from rainbridge.node import api as api_mod
from rainbridge.node.config import NodeConfig
from rainbridge.node.paths import InvalidIdError, check_id, under
from rainbridge.node.service import NodeService


def _client(cfg: NodeConfig) -> tuple[TestClient, NodeService]:
    service = NodeService(cfg)
    c = TestClient(api_mod.create_app(service))
    c.headers["Authorization"] = f"Bearer {cfg.token()}"
    return c, service


def _export(model_id: str, job_id: str = "a" * 16, component: str = "lr") -> dict[str, Any]:
    part = {
        "format": MODEL_FORMAT, "label_party": "bank", "features": ["age"], "mean": [40.0],
        "scale": [10.0], "weights": [0.5], "intercept": -1.0,
    }  # fmt: skip
    reg = {
        "id": model_id, "job_id": job_id, "component": component, "name": "risk/lr",
        "parties": ["bank", "telecom"],
    }  # fmt: skip
    return {"party": "bank", "registration": reg, "part": part}


# -- identifiers that become paths ----------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["../../escaped-1", "../node", "..", "a/b", "a\\b", ".hidden", "", "x" * 129, "a..b"]
)
def test_check_id_refuses_what_could_leave_a_folder(bad: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        check_id(bad, "model ID")
    assert info.value.code == "invalid_request"


def test_check_id_keeps_the_ids_the_node_makes() -> None:
    for ok in ("0123456789abcdef.lr", "risk_v2", "A-1.b_c", "x" * 128):
        assert check_id(ok) == ok


def test_under_refuses_a_link_out_of_its_root(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert under(root, "m.json") == (root / "m.json").resolve()
    with pytest.raises(InvalidIdError):
        under(root, "link", "node.toml")
    with pytest.raises(InvalidIdError):
        under(root, "..", "node.toml")


@pytest.mark.parametrize("bad_id", ["../../escaped-1", "../node"])
def test_model_import_with_a_traversal_id_is_refused(tmp_path: Path, bad_id: str) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    before = (tmp_path / "bank" / "node.toml").read_text()
    c, _ = _client(cfg)
    r = c.post("/v1/models/import", json={"model": _export(bad_id)})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    # nothing written outside the models folder, and the node still loads
    assert not list(tmp_path.rglob("escaped-*"))
    assert (tmp_path / "bank" / "node.toml").read_text() == before
    assert not list((tmp_path / "bank").glob("*.json.tmp*"))
    NodeConfig.load(tmp_path / "bank")
    assert c.get("/v1/models").json() == []


@pytest.mark.parametrize("field", ["job_id", "component"])
def test_model_import_checks_every_id_of_the_registration(tmp_path: Path, field: str) -> None:
    c, _ = _client(make_config(tmp_path / "bank", "bank"))
    exported = _export("a" * 16 + ".lr")
    exported["registration"][field] = "../x"
    r = c.post("/v1/models/import", json={"model": exported})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_a_good_import_lands_in_the_models_folder(tmp_path: Path) -> None:
    c, _ = _client(make_config(tmp_path / "bank", "bank"))
    r = c.post("/v1/models/import", json={"model": _export("a" * 16 + ".lr")})
    assert r.status_code == 201, r.text
    assert (tmp_path / "bank" / "models" / ("a" * 16 + ".lr.json")).is_file()


def test_a_model_id_in_a_route_is_checked(tmp_path: Path) -> None:
    c, _ = _client(make_config(tmp_path / "bank", "bank"))
    r = c.post("/v1/models/.x/predict", json={"key": "k"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


# -- datasets only from data roots --------------------------------------------------------


def _rooted(tmp_path: Path) -> tuple[NodeConfig, Path]:
    root = tmp_path / "data"
    root.mkdir()
    cfg = make_config(tmp_path / "bank", "bank")
    cfg.data_roots = [str(root)]
    cfg.save()
    return NodeConfig.load(tmp_path / "bank"), root


def test_outside_the_roots_a_file_and_a_missing_path_read_the_same(tmp_path: Path) -> None:
    cfg, root = _rooted(tmp_path)
    c, _ = _client(cfg)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not a dataset\n")
    answers = []
    for p in (outside, tmp_path / "missing.csv"):
        r = c.post("/v1/datasets", json={"name": "d", "path": str(p)})
        assert r.status_code == 403, r.text
        answers.append(r.json()["error"]["message"].replace(str(p), "PATH"))
    assert answers[0] == answers[1]
    assert "not under a data root" in answers[0]
    # inside a root, existence and format are reported as before
    r = c.post("/v1/datasets", json={"name": "d", "path": str(root / "missing.csv")})
    assert r.status_code == 400 and "does not exist" in r.json()["error"]["message"]
    (root / "ok.csv").write_text("customer_id,age\na,1\n")
    r = c.post("/v1/datasets", json={"name": "d", "path": str(root / "ok.csv")})
    assert r.status_code == 201, r.text


def test_node_secrets_are_refused_by_location_even_through_a_link(tmp_path: Path) -> None:
    cfg, root = _rooted(tmp_path)
    _, service = _client(cfg)
    (root / "token.csv").symlink_to(tmp_path / "bank" / "api.token")
    (root / "keys").symlink_to(tmp_path / "bank")
    for p in (root / "token.csv", root / "keys" / "master.key", tmp_path / "bank" / "x.csv"):
        with pytest.raises(AuthorizationError, match="not under a data root"):
            service.owners.add_dataset("d", str(p), None)


def test_without_roots_anything_but_the_nodes_own_files_is_allowed(
    tmp_path: Path, csv_file: Path
) -> None:
    service = NodeService(make_config(tmp_path / "bank", "bank"))
    service.owners.add_dataset("customers", str(csv_file), "customer_id")
    node = tmp_path / "bank"
    (node / "jobs" / "j").mkdir(parents=True)
    (node / "jobs" / "j" / "context.csv").write_text(csv_file.read_text())
    for own in ("api.token", "master.key", "node.key", "node.db", "node.toml", "ledger.key",
                "jobs/j/context.csv", "certs/x.csv", ".", "missing.key"):  # fmt: skip
        with pytest.raises(AuthorizationError, match="not under a data root"):
            service.owners.add_dataset("c2", str(node / own), None)
    # a master key kept outside the node directory is refused too
    outside_key = tmp_path / "keys" / "mk.hex"
    outside_key.parent.mkdir()
    outside_key.write_text("00" * 32)
    service.config.master_key_file = str(outside_key)
    with pytest.raises(AuthorizationError, match="not under a data root"):
        service.owners.add_dataset("c2", str(outside_key), None)
    # files a user put in the node directory, and released outputs, are still data
    (node / "c.csv").write_text(csv_file.read_text())
    service.owners.add_dataset("c4", str(node / "c.csv"), "customer_id")
    with pytest.raises(DataError, match="does not exist"):
        service.owners.add_dataset("c3", str(tmp_path / "nope.csv"), "customer_id")


def test_node_init_takes_data_roots(tmp_path: Path) -> None:
    from rainbridge.cli import main

    d, r1, r2 = tmp_path / "n", tmp_path / "r1", tmp_path / "r2"
    out = CliRunner().invoke(
        main,
        ["node", "init", "--name", "bank", "--dir", str(d), "--data-root", str(r1),
         "--data-root", str(r2)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert NodeConfig.load(d).data_roots == [str(r1.resolve()), str(r2.resolve())]
    assert tomllib.loads((d / "node.toml").read_text())["data"]["roots"] == [
        str(r1.resolve()),
        str(r2.resolve()),
    ]


# -- no raw IDs in logs ---------------------------------------------------------------------


def test_an_unknown_id_scored_online_never_reaches_the_log(
    tmp_path: Path,
    csv_file: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, service = _client(make_config(tmp_path / "bank", "bank"))
    service.owners.add_dataset("customers", str(csv_file), "customer_id")
    r = c.post("/v1/models/import", json={"model": _export("m1"), "dataset": "customers"})
    assert r.status_code == 201, r.text
    secret = "110101199003071234"
    caplog.set_level(logging.DEBUG)
    r = c.post("/v1/models/m1/predict", json={"key": secret})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    assert caplog.records, "the refusal is logged"
    assert secret not in caplog.text
    assert all(secret not in json.dumps(e) for e in service.storage.events(None, limit=10_000))
    assert secret in r.json()["error"]["message"]  # the caller is told which of its IDs
    # a peer asking for the partial score of an unknown ID: refused, the ID not logged
    caplog.clear()
    monkeypatch.setattr(service.models, "_check_predict_grant", lambda row, peer: None)
    reply = asyncio.run(
        service.router.dispatch("bank", {"type": "score", "model": "m1", "key": secret})
    )
    assert "no row" in reply["reason"]
    assert reply["ok"] is False and secret not in reply["reason"]
    assert secret not in caplog.text
    assert all(secret not in json.dumps(e) for e in service.storage.events(None, limit=10_000))
