"""Peers' control requests (propose, start, abort) and the data plane's session checks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_helpers import pin, spec
from sqlalchemy import event

from rainbridge.crypto.certs import create_identity
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.service import NodeService
from rainbridge.node.sessions import pair_session

Factory = Callable[[str], NodeService]


def propose(node: NodeService, peer: str, job: dict[str, Any], job_id: str = "j1") -> Any:
    digest = JobSpec.model_validate(job).digest()
    msg = {"type": "propose", "job_id": job_id, "spec": job, "digest": digest}
    return asyncio.run(node.router.dispatch(peer, msg))


def telecom(node_factory: Factory, tmp_path: Path, csv_file: Path) -> NodeService:
    """The telecom's node, with the bank pinned and 'subscribers' registered."""
    node = node_factory("telecom")
    pin(node, "bank", create_identity(tmp_path / "bank-id", "bank"))
    node.owners.add_dataset("subscribers", str(csv_file), "customer_id")
    for peer in ("bank", "tax"):
        node.owners.add_grant(
            dataset="subscribers",
            peer=peer,
            columns=["customer_id"],
            components=["psi"],
            receivers=["bank", "telecom", "tax"],
        )
    return node


def test_accepts_and_records_a_valid_proposal(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    node = telecom(node_factory, tmp_path, csv_file)
    job = spec({"bank": "customers", "telecom": "subscribers"})
    assert propose(node, "bank", job) == {"accept": True}
    row = node.storage.job_dict("j1")
    assert row["status"] == "accepted" and row["initiator"] == "bank"
    assert row["decisions"]["telecom"] == {"accept": True, "reason": None}
    # the same id again is refused (no replay of a proposal)
    assert propose(node, "bank", job)["reason"] == "job id already used"


def test_refuses_an_unregistered_dataset_and_records_why(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    node = telecom(node_factory, tmp_path, csv_file)
    reply = propose(node, "bank", spec({"bank": "customers", "telecom": "nosuch"}))
    assert reply["accept"] is False
    assert "'nosuch' is not registered at 'telecom'" in reply["reason"]
    row = node.storage.job_dict("j1")
    assert row["status"] == "refused" and "nosuch" in row["error"]
    assert [e["kind"] for e in node.storage.events("j1")] == ["job_refused"]
    assert node.storage.events("j1")[0]["actor"] == "peer:bank"


def test_refuses_a_proposal_naming_an_unknown_party(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    node = telecom(node_factory, tmp_path, csv_file)
    job = spec({"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"})
    reply = propose(node, "bank", job)
    assert reply == {"accept": False, "reason": reply["reason"]}
    assert "'tax' is not a known peer of 'telecom'" in reply["reason"]


def test_refuses_a_tampered_digest_and_a_malformed_spec(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    node = telecom(node_factory, tmp_path, csv_file)
    job = spec({"bank": "customers", "telecom": "subscribers"})
    msg = {"type": "propose", "job_id": "j2", "spec": job, "digest": "0" * 64}
    reply = asyncio.run(node.router.dispatch("bank", msg))
    assert reply["accept"] is False and "digest" in reply["reason"]
    msg = {"type": "propose", "job_id": "j3", "spec": {"name": 1}, "digest": ""}
    assert asyncio.run(node.router.dispatch("bank", msg))["accept"] is False
    assert node.storage.find_job("j3") is None


def test_start_and_abort_rules(node_factory: Factory, tmp_path: Path, csv_file: Path) -> None:
    node = telecom(node_factory, tmp_path, csv_file)
    pin(node, "tax", create_identity(tmp_path / "tax-id", "tax"))
    job = spec({"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"})
    assert propose(node, "bank", job)["accept"] is True

    def handle(peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(node.router.dispatch(peer, msg))

    assert handle("tax", {"type": "start", "job_id": "j1"}) == {
        "ok": False,
        "reason": "only the initiator starts a job",
    }
    assert handle("bank", {"type": "start", "job_id": "zz"})["reason"] == "no such job here"
    assert handle("bank", {"type": "start", "job_id": "../x"})["reason"] == "invalid job id"
    assert "unknown request" in handle("bank", {"type": "drop", "job_id": "j1"})["reason"]
    assert handle("tax", {"type": "abort", "job_id": "j1", "reason": "disk full"}) == {"ok": True}
    row = node.storage.job_dict("j1")
    assert row["status"] == "aborted" and row["error"] == "tax: disk full"
    # a finished job cannot be started or aborted again
    assert "not accepted" in handle("bank", {"type": "start", "job_id": "j1"})["reason"]
    handle("bank", {"type": "abort", "job_id": "j1", "reason": "late"})
    assert node.storage.job("j1").error == "tax: disk full"


def test_job_sessions_are_accepted_only_for_running_jobs_of_that_peer(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    node = telecom(node_factory, tmp_path, csv_file)

    def accept(peer: str, session: str) -> str | None:
        return asyncio.run(node.dataplane._accept(peer, session))

    assert accept("bank", "control:abc") is None
    assert accept("bank", "other:abc") == "unknown kind of session"
    assert accept("bank", pair_session("j1", "bank", "telecom")) == "no such job here"
    propose(node, "bank", spec({"bank": "customers", "telecom": "subscribers"}))
    session = pair_session("j1", "bank", "telecom")
    assert "not running here" in str(accept("bank", session))
    node.storage.update_job("j1", status="running")
    assert accept("bank", session) is None
    assert accept("tax", pair_session("j1", "tax", "telecom")) == (
        "this peer takes no part in that job"
    )
    assert accept("bank", pair_session("j1", "bank", "tax")) == (
        "this peer takes no part in that job"
    )


def test_the_same_proposal_sent_twice_at_once_is_accepted_once(
    node_factory: Factory, tmp_path: Path, csv_file: Path
) -> None:
    # plain handlers run in storage threads: a job's messages must still be taken one by one
    node = telecom(node_factory, tmp_path, csv_file)
    slow = threading.Event()

    def before(*_: Any) -> None:
        if slow.is_set():
            time.sleep(0.05)  # widen the window between "is this ID new?" and the insert

    event.listen(node.storage.engine, "before_cursor_execute", before)
    job = spec({"bank": "customers", "telecom": "subscribers"})
    digest = JobSpec.model_validate(job).digest()
    msg = {"type": "propose", "job_id": "j1", "spec": job, "digest": digest}

    async def twice() -> list[Any]:
        slow.set()
        return list(
            await asyncio.gather(*(node.router.dispatch("bank", dict(msg)) for _ in range(4)))
        )

    replies = asyncio.run(twice())
    assert sum(r == {"accept": True} for r in replies) == 1, replies
    assert sum(r.get("reason") == "job id already used" for r in replies) == 3, replies
    assert [e["kind"] for e in node.storage.events("j1")].count("job_accepted") == 1
