"""`dataset policy --column` changes the named columns and keeps the others; `--replace`
sets the whole column policy; a refusal's advice is a command that does what it says."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from node_helpers import pin, spec

from rainbridge.cli import main
from rainbridge.crypto.certs import create_identity
from rainbridge.errors import ConfigError
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService


@pytest.fixture
def telecom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[NodeService, str]:
    """A node's API served in process; the CLI's HTTP calls are routed to it."""
    d = tmp_path / "telecom"
    r = CliRunner().invoke(main, ["node", "init", "--name", "telecom", "--dir", str(d)])
    assert r.exit_code == 0, r.output
    cfg = NodeConfig.load(d)
    service = NodeService(cfg)
    client = TestClient(create_app(service, cfg.token()))

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        assert url.startswith(cfg.api_url)
        kw.pop("timeout", None)
        kw.pop("verify", None)
        return client.request(method, url[len(cfg.api_url) :], **kw)

    monkeypatch.setattr(httpx, "request", request)
    csv = tmp_path / "subscribers.csv"
    csv.write_text("customer_id,age,income,late_payments_12m\na,1,10,0\nb,2,20,1\nc,3,30,2\n")
    service.owners.add_dataset("subscribers", str(csv), "customer_id")
    pin(service, "bank", create_identity(tmp_path / "bank-id", "bank"))
    service.owners.add_grant(
        dataset="subscribers",
        peer="bank",
        columns=["*"],
        components=["psi"],
        receivers=["bank", "telecom"],
    )
    return service, str(d)


def cli(directory: str, *args: str) -> Any:
    r = CliRunner().invoke(main, [*args, "--dir", directory, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def propose(node: NodeService, job_id: str) -> Any:
    job = spec({"bank": "customers", "telecom": "subscribers"})
    digest = JobSpec.model_validate(job).digest()
    msg = {"type": "propose", "job_id": job_id, "spec": job, "digest": digest}
    return asyncio.run(node.router.dispatch("bank", msg))


def test_the_advised_command_adds_a_column_and_keeps_the_others(
    telecom: tuple[NodeService, str],
) -> None:
    node, d = telecom
    out = cli(d, "dataset", "policy", "subscribers", "--column", "age=aggregate",
              "--column", "income=compare")  # fmt: skip
    assert out["column_policy"] == {"age": "aggregate", "income": "compare"}
    refused = propose(node, "j1")
    assert refused["accept"] is False and "column 'customer_id'" in refused["reason"]
    advice = re.search(r"`(rainbridge dataset policy [^`]*)`", refused["reason"])
    assert advice is not None, refused["reason"]
    argv = shlex.split(advice.group(1).replace("=LEVEL", "=join"))
    assert argv[0] == "rainbridge"
    out = cli(d, *argv[1:])
    assert out["column_policy"] == {"age": "aggregate", "income": "compare", "customer_id": "join"}
    assert propose(node, "j2") == {"accept": True}
    # a named column changes level; the others stay
    out = cli(d, "dataset", "policy", "subscribers", "--column", "income=aggregate")
    assert out["column_policy"] == {
        "age": "aggregate",
        "income": "aggregate",
        "customer_id": "join",
    }
    # --replace: the given columns become the whole policy
    out = cli(d, "dataset", "policy", "subscribers", "--replace", "--column", "customer_id=join")
    assert out["column_policy"] == {"customer_id": "join"}
    (ds,) = node.storage.datasets()
    assert ds.column_policy == {"customer_id": "join"}
    out = cli(d, "dataset", "policy", "subscribers", "--clear-columns")
    assert not out["column_policy"]


def test_policy_options_that_contradict_each_other_are_refused(
    telecom: tuple[NodeService, str],
) -> None:
    _, d = telecom
    r = CliRunner().invoke(main, ["dataset", "policy", "subscribers", "--replace", "--dir", d])
    assert r.exit_code == 2 and "--replace" in r.output
    r = CliRunner().invoke(
        main,
        ["dataset", "policy", "subscribers", "--clear-columns", "--column", "age=join", "--dir", d],
    )
    assert r.exit_code == 2 and "--clear-columns" in r.output


def test_column_updates_are_merged_at_the_node_in_one_step(
    telecom: tuple[NodeService, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, d = telecom
    node.owners.set_dataset_policy(
        "subscribers", columns={"customer_id": "join", "age": "aggregate"}
    )
    sent: list[tuple[str, str, Any]] = []
    routed = httpx.request

    def spy(method: str, url: str, **kw: Any) -> httpx.Response:
        sent.append((method, url.rsplit("/v1/", 1)[1], kw.get("json")))
        return routed(method, url, **kw)

    monkeypatch.setattr(httpx, "request", spy)
    # another writer changes the policy "between" a read and a write: there is no read
    node.owners.set_dataset_policy("subscribers", column_updates={"income": "compare"})
    out = cli(d, "dataset", "policy", "subscribers", "--column", "age=plaintext")
    assert out["column_policy"] == {"customer_id": "join", "age": "plaintext", "income": "compare"}
    assert [(m, p) for m, p, _ in sent] == [("POST", "datasets/subscribers/policy")]
    assert sent[0][2]["column_updates"] == {"age": "plaintext"} and "columns" not in sent[0][2]
    with pytest.raises(ConfigError, match="not both"):
        node.owners.set_dataset_policy("subscribers", columns={}, column_updates={"age": "join"})
    with pytest.raises(ConfigError, match="no column 'nope'"):
        node.owners.set_dataset_policy("subscribers", column_updates={"nope": "join"})
    with pytest.raises(ConfigError, match="unknown level"):
        node.owners.set_dataset_policy("subscribers", column_updates={"age": "secret"})
    (ds,) = node.storage.datasets()
    assert ds.column_policy == {"customer_id": "join", "age": "plaintext", "income": "compare"}
