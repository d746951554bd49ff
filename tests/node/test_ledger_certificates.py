"""A ledger re-signed under a substituted certificate: the verifier computes every
certificate's fingerprint from its content and never trusts where it was filed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from node_helpers import make_config
from sqlalchemy import text

from rainbridge.audit import verify_ledger as v
from rainbridge.crypto.certs import create_identity
from rainbridge.node.ledger import export_directory, verify_directory
from rainbridge.node.service import NodeService


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rainbridge.cli", "ledger", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _node(path: Path, suite: str) -> NodeService:
    n = NodeService(make_config(path, "bank", suite))
    n.storage.log("dataset_added", {"dataset": "customers", "rows": 1000}, actor="user:alice")
    n.storage.log("dataset_read", {"dataset": "customers", "rows": 1000, "grants": {}}, "jobA")
    record = {"job_id": "jobA", "parties": ["bank"], "status": "succeeded", "parts": {}}
    sig = n.keys.ledger_key.sign(v.RECORD_DOMAIN + v.canonical(record)).hex()
    n.storage.log(
        "job_record",
        {"record": record, "signatures": {"bank": {"key": n.keys.fingerprint, "sig": sig}}},
        "jobA",
    )
    n.ledger.flush()
    return n


def _forge(node: NodeService, forger_dir: Path) -> None:
    """Re-sign the whole ledger with a fresh key passed off as the pinned certificate."""
    fp = node.keys.fingerprint
    suite = node.keys.suite
    key = suite.new_signing_key()
    forged = create_identity(forger_dir, "bank", ledger_key=(key.alg, key.public_bytes()))
    rows: list[dict[str, Any]] = json.loads(json.dumps(node.storage.ledger_rows()))
    prev = v.GENESIS
    for st in rows:
        e = st["entry"]
        if e["kind"] == "dataset_read":
            e["body"]["rows"] = 10
        if e["kind"] == "job_record":
            record = e["body"]["record"]
            e["body"]["signatures"]["bank"]["sig"] = key.sign(
                v.RECORD_DOMAIN + v.canonical(record)
            ).hex()
        e["prev"] = prev
        assert e["key"] == fp  # the forger keeps naming the pinned certificate
        digest = suite.hash(v.ENTRY_DOMAIN + v.canonical(e))
        st["hash"], st["sig"] = digest.hex(), key.sign(digest).hex()
        prev = st["hash"]
    with node.storage.engine.begin() as conn:
        conn.execute(
            text("UPDATE certificates SET pem = :pem WHERE fingerprint = :fp"),
            {"pem": forged.cert_pem, "fp": fp},
        )
        for st in rows:
            conn.execute(
                text("UPDATE ledger SET entry = :entry, hash = :hash, sig = :sig WHERE seq = :seq"),
                {
                    "entry": json.dumps(st["entry"]),
                    "hash": st["hash"],
                    "sig": st["sig"],
                    "seq": st["entry"]["seq"],
                },
            )
    head = {"node": "bank", "seq": rows[-1]["entry"]["seq"], "hash": prev}
    sig = key.sign(v.HEAD_DOMAIN + v.canonical(head)).hex()
    (node.config.path / "ledger.head").write_text(json.dumps({**head, "key": fp, "sig": sig}))


@pytest.mark.parametrize("suite", ["standard", "gm"])
def test_a_ledger_resigned_under_a_substituted_certificate_fails(
    tmp_path: Path, suite: str
) -> None:
    node = _node(tmp_path / "bank", suite)
    fp = node.keys.fingerprint
    d = str(node.config.path)
    assert _cli("verify", "--dir", d, "--fingerprint", fp).returncode == 0
    _forge(node, tmp_path / "forger")
    assert (node.config.path / "certs" / f"{fp}.pem").is_file()  # the genuine one stays
    out = _cli("verify", "--dir", d, "--fingerprint", fp)
    assert out.returncode == 8, out
    assert "FAILED: ledger of bank" in out.stdout
    assert f"certificate in the node's database recorded as {fp[:16]}…" in out.stdout
    assert "substituted" in out.stdout
    # the same without the genuine file beside it, and through the library
    for c in (node.config.path / "certs").glob("*.pem"):
        c.unlink()
    rep = verify_directory(node.config.path, fp)
    assert not rep.ok and "substituted" in rep.problems[0], rep.problems
    assert not node.ledger.verify(fp).ok
    # an exported bundle holds certificates by content: the forged one is not the pinned one
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    assert not v.verify_bundle(path, fp).ok


def test_a_certificate_filed_under_its_own_fingerprint_is_no_problem(tmp_path: Path) -> None:
    node = _node(tmp_path / "bank", "standard")
    certs, problems = v.index_certificates(
        [("file", node.keys.fingerprint.upper(), node.keys.cert_pem)]
    )
    assert problems == [] and list(certs) == [node.keys.fingerprint]
    certs, problems = v.index_certificates([("file", "ab" * 32, "not a certificate")])
    assert certs == {} and "cannot be read" in problems[0]
    x509.load_pem_x509_certificate(node.keys.cert_pem.encode())  # stays a real certificate
