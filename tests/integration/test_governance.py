"""Governance between real node processes: grants, approval, revocation of a running job,
roles, live key rotation, peer revocation, and ledgers that verify at every party."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rainbridge.demo.federation import Federation

JOB = """name: {name}
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {{dataset: {bank}, id: customer_id}}
      telecom: {{dataset: {telecom}, id: customer_id}}
    outputs:
      intersection:
        receivers: [bank]
"""


def job(tmp: Path, name: str, bank: str = "customers", telecom: str = "subscribers") -> str:
    p = tmp / f"{name}.yaml"
    p.write_text(JOB.format(name=name, bank=bank, telecom=telecom))
    return str(p)


def csv(path: Path, ids: range) -> Path:
    path.write_text("customer_id\n" + "".join(f"c{i:07d}\n" for i in ids))
    return path


def grant(
    f: Federation,
    owner: str,
    dataset: str,
    peer: str,
    columns: str,
    components: str,
    receivers: str,
    *extra: str,
) -> dict:
    """``grant add`` at ``owner``; returns the grant."""
    return dict(
        f.cli_json(
            "grant",
            "add",
            dataset,
            "--peer",
            peer,
            "--columns",
            columns,
            "--components",
            components,
            "--receivers",
            receivers,
            *extra,
            node=owner,
        )
    )


def wait_for(f: Federation, node: str, job_id: str, statuses: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 30
    while (st := f.cli_json("job", "status", job_id, node=node))["status"] not in statuses:
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    return dict(st)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("gov")
    f = Federation(base, ["bank", "telecom"], timeout=8)
    f.start()
    try:
        f.pin_all()
        f.add_dataset("bank", "customers", csv(base / "b.csv", range(0, 2000)), grant_to=[])
        f.add_dataset("bank", "big", csv(base / "bb.csv", range(0, 300_000)), grant_to=[])
        grant(f, "bank", "customers", "telecom", "customer_id", "psi", "bank")
        grant(f, "bank", "big", "telecom", "*", "*", "*")
        f.cli(
            "dataset",
            "add",
            "subscribers",
            "--path",
            str(csv(base / "t.csv", range(1000, 3000))),
            "--id",
            "customer_id",
            node="telecom",
        )
        f.cli(
            "dataset",
            "add",
            "towers",
            "--path",
            str(csv(base / "tt.csv", range(150_000, 450_000))),
            "--id",
            "customer_id",
            node="telecom",
        )
        yield f
    finally:
        f.stop()


def test_a_job_without_the_counterpartys_grant_is_refused_with_its_reason(
    fed: Federation, tmp_path: Path
) -> None:
    r = fed.cli("job", "submit", job(tmp_path, "nogrant"), node="bank", check=False)
    assert r.returncode == 4, r.stderr
    assert (
        "telecom: 'telecom' does not allow 'bank' to use dataset 'subscribers' in component "
        "'psi' (psi): there is no grant" in r.stderr
    )


def test_manual_approval_then_the_job_runs_and_is_countersigned(
    fed: Federation, tmp_path: Path
) -> None:
    g = grant(
        fed,
        "telecom",
        "subscribers",
        "bank",
        "customer_id",
        "psi",
        "bank",
        "--max-calls",
        "2",
        "--approval",
        "manual",
    )
    row = fed.cli_json("job", "submit", job(tmp_path, "held"), "--no-wait", node="bank")
    assert row["status"] == "pending_approval"
    assert row["decisions"]["telecom"]["reason"] == "pending approval"
    assert fed.cli_json("job", "status", row["id"], node="telecom")["status"] == (
        "pending_approval"
    )
    fed.cli("job", "approve", row["id"], node="telecom")
    done = wait_for(fed, "bank", row["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    # the job record lands at both, countersigned by both
    deadline = time.monotonic() + 20
    for node in ("bank", "telecom"):
        while not (rep := fed.cli_json("ledger", "verify", node=node))["job_records"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert rep["ok"], rep
    entries = fed.cli_json("ledger", "show", "--job", row["id"], node="telecom")["entries"]
    kinds = {e["entry"]["kind"]: e["entry"]["actor"] for e in entries}
    assert kinds["job_approved"] == "user:admin" and kinds["job_pending_approval"] == "peer:bank"
    record = next(e for e in entries if e["entry"]["kind"] == "job_record")["entry"]["body"]
    assert set(record["signatures"]) == {"bank", "telecom"}
    part = record["record"]["parts"]["telecom"]
    assert part["datasets"]["subscribers"] == {"rows": 2000, "grants": {"bank": g["id"]}}
    bank_out = record["record"]["parts"]["bank"]["outputs"]["psi.intersection"]
    assert bank_out["rows"] == 1000 and len(bank_out["sha256"]) == 64
    # metering at the telecom: one call under the grant, its rows
    (line,) = fed.cli_json("metering", "report", node="telecom")["lines"]
    assert (line["peer"], line["grant_id"], line["calls"], line["rows"]) == (
        "bank",
        g["id"],
        1,
        2000,
    )
    csv_text = fed.cli("metering", "report", "--csv", node="telecom").stdout
    assert csv_text.splitlines()[1].startswith(f"bank,{g['id']},psi,1,2000,")


def test_revoking_a_grant_stops_a_running_job(fed: Federation, tmp_path: Path) -> None:
    g = grant(fed, "telecom", "towers", "bank", "*", "psi", "bank")
    row = fed.cli_json(
        "job", "submit", job(tmp_path, "revoked", "big", "towers"), "--no-wait", node="bank"
    )
    wait_for(fed, "telecom", row["id"], ("running",))
    fed.cli("grant", "revoke", g["id"], node="telecom")
    st = wait_for(fed, "telecom", row["id"], ("cancelled", "aborted", "failed"))
    assert st["status"] == "cancelled" and f"grant {g['id']}" in st["error"], st
    bank = wait_for(fed, "bank", row["id"], ("aborted", "failed", "cancelled"))
    assert "revoked" in bank["error"], bank
    out = fed.nodes["bank"].dir / "outputs" / row["id"]
    assert not out.exists() or not any(out.iterdir())
    r = fed.cli("job", "submit", job(tmp_path, "again", "big", "towers"), node="bank", check=False)
    assert r.returncode == 4 and f"grant {g['id']} was revoked" in r.stderr


def test_an_analyst_token_cannot_change_grants(fed: Federation) -> None:
    out = fed.cli_json("user", "add", "ana", "--role", "analyst", node="bank")
    env = {**os.environ, "RAINBRIDGE_TOKEN": out["token"]}
    cmd = [
        sys.executable,
        "-m",
        "rainbridge.cli",
        "grant",
        "add",
        "customers",
        "--peer",
        "x",
        "--columns",
        "*",
        "--components",
        "psi",
        "--receivers",
        "x",
        "--api",
        fed.nodes["bank"].api,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 4 and "may not grants write" in r.stderr


def test_key_rotation_live_then_peer_revocation(fed: Federation, tmp_path: Path) -> None:
    old = fed.nodes["telecom"].info["fingerprint"]
    out = fed.cli_json("node", "rotate-keys", node="telecom")
    assert out["old"] == old and out["peers_told"] == {"bank": True}
    pinned = {p["name"]: p for p in fed.cli_json("peer", "list", node="bank")}
    assert pinned["telecom"]["fingerprint"] == out["new"]
    # the rotated telecom keeps serving: a job still runs
    grant(fed, "telecom", "subscribers", "bank", "*", "psi", "bank")
    row = fed.cli_json("job", "submit", job(tmp_path, "rotated"), node="bank")
    assert row["status"] == "succeeded", row
    for node in ("bank", "telecom"):
        rep = fed.cli_json("ledger", "verify", node=node)
        assert rep["ok"], rep
    rep = fed.cli_json("ledger", "verify", "--fingerprint", out["new"], node="telecom")
    assert rep["ok"] and rep["first_key"] == old
    # export and check with the stand-alone verifier, as an auditor would
    bundle = tmp_path / "bundle"
    fed.cli("ledger", "export", "--out", str(bundle), node="telecom")
    r = subprocess.run(
        [
            sys.executable,
            str(bundle / "verify_ledger.py"),
            str(bundle),
            "--fingerprint",
            out["new"],
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout
    # the bank revokes the telecom: its jobs are refused from now on
    fed.cli("peer", "revoke", "telecom", node="bank")
    r = fed.cli("job", "submit", job(tmp_path, "after-revoke"), node="bank", check=False)
    assert r.returncode == 4 and "not a known peer" in r.stderr
    entries = fed.cli_json("ledger", "show", "--limit", "1000", node="bank")["entries"]
    kinds = {e["entry"]["kind"]: e["entry"]["actor"] for e in entries}
    assert kinds["peer_revoked"] == "user:admin"
    assert kinds["peer_key_rotated"] == "peer:telecom"
