"""Exit codes and messages as docs/NODE.md documents them, driven through the CLI."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from node_helpers import make_config, pin, spec

from rainbridge.audit import verify_ledger as v
from rainbridge.cli import main
from rainbridge.cli.common import EXIT_CODES, EXIT_TAMPERED
from rainbridge.crypto.certs import create_identity
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.api import create_app
from rainbridge.node.ledger import export_directory
from rainbridge.node.service import NodeService
from rainbridge.node.storage import JobRow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeService:
    """The bank's node with its API served in process; the CLI's HTTP calls go to it."""
    node = NodeService(make_config(tmp_path / "bank", "bank"))
    client = TestClient(create_app(node, node.config.token()))
    base = node.config.api_url

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        if not url.startswith(base):
            raise httpx.ConnectError("nothing listens there")
        kw.pop("timeout", None)
        kw.pop("verify", None)
        return client.request(method, url[len(base) :], **kw)

    monkeypatch.setattr(httpx, "request", request)
    return node


def cli(node: NodeService, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--dir", str(node.config.path)])


def job_row(node: NodeService, job_id: str, status: str, error: str | None = None) -> None:
    job = JobSpec.model_validate(spec({"bank": "customers", "telecom": "subscribers"}))
    node.storage.put_job(
        JobRow(
            id=job_id,
            name=job.name,
            spec=job.to_dict(),
            digest=job.digest(),
            initiator="bank",
            status=status,
            progress={},
            error=error,
        )
    )


def test_status_wait_exits_6_on_a_job_that_did_not_succeed(bank: NodeService) -> None:
    for status in ("aborted", "failed", "cancelled", "refused"):
        job_row(bank, f"j-{status}", status, "telecom: failed (data error)")
        r = cli(bank, "job", "status", f"j-{status}", "--wait")
        assert r.exit_code == EXIT_CODES["job_failed"] == 6, (status, r.output)
        assert f"{status}" in r.output and "telecom: failed" in r.output
        # without --wait it only reports, like any query
        assert cli(bank, "job", "status", f"j-{status}").exit_code == 0
    job_row(bank, "j-ok", "succeeded")
    assert cli(bank, "job", "status", "j-ok", "--wait").exit_code == 0
    assert cli(bank, "job", "status", "j-ok", "--wait", "--json").exit_code == 0


def test_status_shows_a_party_pending_approval_as_pending(bank: NodeService) -> None:
    job_row(bank, "j1", "pending_approval")
    bank.jobs.decide("j1", "bank", True)
    bank.jobs.decide("j1", "telecom", False, pending=True)  # as the node records it
    r = cli(bank, "job", "status", "j1")
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.output.splitlines()[1:]}
    assert lines == {"bank": "accepted", "telecom": "pending approval"}, r.output
    assert "refused" not in r.output
    bank.jobs.decide("j1", "telecom", False, "grant g-1 expired")
    r = cli(bank, "job", "status", "j1")
    assert re.search(r"telecom\s+refused: grant g-1 expired", r.output), r.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_peer_exits_5(bank: NodeService, tmp_path: Path) -> None:
    telecom = create_identity(tmp_path / "telecom-id", "telecom")
    pin(bank, "telecom", telecom, port=free_port())  # nothing listens there
    csv = tmp_path / "c.csv"
    csv.write_text("customer_id,age\na,1\nb,2\n")
    bank.owners.add_dataset("customers", str(csv), "customer_id")
    bank.owners.add_grant(
        dataset="customers",
        peer="telecom",
        columns=["customer_id"],
        components=["psi"],
        receivers=["bank", "telecom"],
    )
    job = tmp_path / "j.yaml"
    job.write_text(json.dumps(spec({"bank": "customers", "telecom": "subscribers"}, ["bank"])))
    r = cli(bank, "job", "submit", str(job))
    assert r.exit_code == 5, r.output
    assert "telecom" in r.output and "unreachable" in r.output
    (row,) = bank.storage.job_dicts()
    assert row["status"] == "refused"  # as before: refused, with the reason
    r = cli(bank, "peer", "ping", "telecom")
    assert r.exit_code == 5 and "offline" in r.output, r.output


def test_the_bundle_verifier_and_ledger_verify_share_the_tampering_code(tmp_path: Path) -> None:
    node = NodeService(make_config(tmp_path / "bank", "bank"))
    for i in range(3):
        node.storage.log("dataset_added", {"dataset": f"d{i}"}, actor="user:alice")
    node.ledger.flush()
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    rows = (path / "entries.jsonl").read_text().splitlines()
    (path / "entries.jsonl").write_text("\n".join(rows[:1] + rows[2:]) + "\n")  # one deleted
    alone = subprocess.run(
        [sys.executable, str(path / "verify_ledger.py"), str(path)], capture_output=True
    )
    cli_run = subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", "ledger", "verify", "--bundle", str(path)],
        capture_output=True,
        cwd=ROOT,
    )
    assert alone.returncode == cli_run.returncode == EXIT_TAMPERED == v.EXIT_TAMPERED == 8


def test_node_md_documents_every_exit_code() -> None:
    """The exit-code table of docs/NODE.md is the CLI's, row for row."""
    doc = (ROOT / "docs" / "NODE.md").read_text()
    table = doc[doc.index("| code | meaning | error codes |") :].split("\n\n")[0]
    documented: dict[str, int] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for code in re.findall(r"`([a-z_]+)`", cells[2]):
            documented[code] = int(cells[0])
    wanted = {k: c for k, c in EXIT_CODES.items() if k != "job_failed"}
    assert {k: documented.get(k) for k in wanted} == wanted
    assert {k: c for k, c in documented.items() if c != 1} == wanted
