"""Job records: a party countersigns only the record of a job it ran, with its own part as it
wrote it; forged, replayed or oversized reports and records are refused and logged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_helpers import spec

from rainbridge.audit import verify_ledger as v
from rainbridge.node import records
from rainbridge.node.service import NodeService
from rainbridge.node.storage import JobRow, PeerRow

Factory = Callable[[str], NodeService]


def _pin(a: NodeService, b: NodeService) -> None:
    """Pin ``b`` at ``a`` straight in storage, its ledger key included."""
    a.storage.put_peer(
        PeerRow(
            name=b.name,
            host="127.0.0.1",
            port=1,
            fingerprint=b.keys.fingerprint,
            cert_pem=b.keys.cert_pem,
        )
    )
    a.storage.keep_certificate(b.name, b.keys.fingerprint, b.keys.cert_pem)


@pytest.fixture
def pair(node_factory: Factory) -> tuple[NodeService, NodeService]:
    bank, telecom = node_factory("bank"), node_factory("telecom")
    _pin(bank, telecom)
    _pin(telecom, bank)
    job = spec({"bank": "customers", "telecom": "subscribers"}, receivers=["bank"])
    for node in (bank, telecom):
        node.storage.put_job(
            JobRow(
                id="j1",
                name="j",
                spec=job,
                digest="d" * 64,
                initiator="bank",
                status="succeeded",
                progress={},
                grants={},
            )
        )
    return bank, telecom


def _parts(bank: NodeService, telecom: NodeService) -> dict[str, Any]:
    parts = {}
    for node in (bank, telecom):
        part = records.make_part(
            party=node.name, status="succeeded", grants={}, rows={"x": 3}, result=None
        )
        node.closing._store_report("j1", node.name, part)
        parts[node.name] = part
    return parts


def handle(node: NodeService, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(node.router.dispatch(peer, msg))


def test_countersigned_record_lands_at_both(pair: tuple[NodeService, NodeService]) -> None:
    bank, telecom = pair
    parts = _parts(bank, telecom)
    record = records.make_record(bank.storage.job_dict("j1"), parts)
    reply = handle(telecom, "bank", {"type": "countersign", "job_id": "j1", "record": record})
    assert reply["ok"] is True and reply["key"] == telecom.keys.fingerprint
    sigs = {
        "bank": bank.closing.sign_record(record),
        "telecom": {"key": reply["key"], "sig": reply["sig"]},
    }
    msg = {"type": "job_record", "job_id": "j1", "record": record, "signatures": sigs}
    assert handle(telecom, "bank", msg) == {"ok": True}
    assert handle(telecom, "bank", msg) == {"ok": True}  # a repeat changes nothing
    assert len(telecom.storage.ledger_rows(job_id="j1", kind="job_record")) == 1
    assert telecom.ledger.verify().ok


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.update(digest="e" * 64), "not of the job accepted here"),
        (lambda r: r.update(parties=["bank"]), "names other parties"),
        (lambda r: r.update(status="great"), "unknown record status"),
        (lambda r: r["parts"]["telecom"].update(status="failed"), "misstates this party's part"),
        (lambda r: r["parts"].pop("telecom"), "parts do not match"),
    ],
)
def test_a_party_refuses_to_countersign_a_false_record(
    pair: tuple[NodeService, NodeService], change: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    bank, telecom = pair
    record = records.make_record(bank.storage.job_dict("j1"), _parts(bank, telecom))
    change(record)
    reply = handle(telecom, "bank", {"type": "countersign", "job_id": "j1", "record": record})
    assert reply == {"ok": False, "reason": reply["reason"]} and reason in reply["reason"]
    (refusal,) = telecom.storage.events("j1")
    assert refusal["kind"] == "countersign_refused" and refusal["actor"] == "peer:bank"


def test_forged_signatures_and_strangers_are_refused(
    pair: tuple[NodeService, NodeService],
) -> None:
    bank, telecom = pair
    record = records.make_record(bank.storage.job_dict("j1"), _parts(bank, telecom))
    good = {
        "bank": bank.closing.sign_record(record),
        "telecom": telecom.closing.sign_record(record),
    }
    # the bank's signature made over another record
    other = {**record, "job_id": "j2"}
    forged = {**good, "bank": bank.closing.sign_record(other)}
    msg = {"type": "job_record", "job_id": "j1", "record": record, "signatures": forged}
    reply = handle(telecom, "bank", msg)
    assert reply["ok"] is False and "countersignature of 'bank'" in reply["reason"]
    # telecom's own key standing in for the bank's
    swapped = {**good, "bank": good["telecom"]}
    msg["signatures"] = swapped
    assert "another node's key" in handle(telecom, "bank", msg)["reason"]
    # only the initiator asks for signatures or distributes the record
    ask = {"type": "countersign", "job_id": "j1", "record": record}
    assert handle(bank, "telecom", ask)["reason"] == "only the initiator asks for countersignatures"
    assert not telecom.storage.ledger_rows(job_id="j1", kind="job_record")


def test_reports_are_bounded_and_checked(pair: tuple[NodeService, NodeService]) -> None:
    bank, _ = pair
    huge = {"party": "telecom", "outputs": {"x": "y" * (70 << 10)}}
    msg = {"type": "job_report", "job_id": "j1", "part": huge}
    assert handle(bank, "telecom", msg) == {"ok": False, "reason": "report too large"}
    msg["part"] = {"party": "bank"}  # a report in another party's name
    assert handle(bank, "telecom", msg) == {"ok": False, "reason": "malformed report"}


def test_record_signatures_verify_with_the_standalone_code(
    pair: tuple[NodeService, NodeService], tmp_path: Path
) -> None:
    bank, telecom = pair
    record = records.make_record(bank.storage.job_dict("j1"), _parts(bank, telecom))
    sigs = {
        "bank": bank.closing.sign_record(record),
        "telecom": telecom.closing.sign_record(record),
    }
    certs = bank.ledger.certificates()
    assert v.check_record(record, sigs, certs) == []
    assert v.check_record(record, {"bank": sigs["bank"]}, certs) == [
        "no countersignature of party 'telecom'"
    ]
    extra = {**sigs, "mallory": sigs["bank"]}
    assert "signatures of non-parties" in v.check_record(record, extra, certs)[0]
