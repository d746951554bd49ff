"""The signed ledger: every kind of tampering is caught by `ledger verify` and by the
stand-alone verifier of an exported bundle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config
from sqlalchemy import text

from rainbridge.audit import verify_ledger as v
from rainbridge.node.ledger import export_directory, verify_directory
from rainbridge.node.service import NodeService

Tamper = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(params=["standard", "gm"])
def node(tmp_path: Path, request: pytest.FixtureRequest) -> NodeService:
    n = NodeService(make_config(tmp_path / "bank", "bank", request.param))
    for i in range(6):
        n.storage.log("dataset_added", {"dataset": f"d{i}", "rows": i}, actor="user:alice")
    record = {"job_id": "jobA", "parties": ["bank"], "status": "succeeded", "parts": {}}
    sig = n.keys.ledger_key.sign(v.RECORD_DOMAIN + v.canonical(record)).hex()
    n.storage.log(
        "job_record",
        {"record": record, "signatures": {"bank": {"key": n.keys.fingerprint, "sig": sig}}},
        "jobA",
    )
    n.storage.log("job_succeeded", {"reason": ""}, "jobB")
    n.ledger.flush()  # the signed head names the last entry
    return n


def _rows(node: NodeService) -> list[dict[str, Any]]:
    return node.storage.ledger_rows()


def test_an_untouched_ledger_verifies(node: NodeService, tmp_path: Path) -> None:
    suite = node.keys.suite.name
    first = _rows(node)[0]["entry"]
    assert first["suite"] == suite and first["kind"] == "ledger_created"
    assert node.keys.ledger_key.alg == ("sm2" if suite == "gm" else "ed25519")
    rep = node.ledger.verify(node.keys.fingerprint)
    assert rep.ok, rep.problems
    assert (rep.entries, rep.job_records, rep.node) == (9, 1, "bank")
    assert verify_directory(node.config.path).ok
    path, n = export_directory(node.config.path, tmp_path / "bundle")
    assert n == 9 and v.verify_bundle(path, node.keys.fingerprint).ok


def _edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[3]["entry"]["body"]["rows"] = 1_000_000
    return rows


def _edit_and_rehash(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # an attacker without the key recomputes the hash: the signature no longer matches
    rows[3]["entry"]["actor"] = "user:mallory"
    rows[3]["hash"] = v.entry_hash(rows[3]["entry"])
    return rows


def _delete(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:4] + rows[5:]


def _truncate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:-2]


def _reorder(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[2], rows[3] = rows[3], rows[2]
    return rows


def _forge_signature(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[5]["sig"] = rows[4]["sig"]  # a genuine signature, of another entry
    return rows


def _replay_record_into_another_job(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # job B's final entry replaced by job A's countersigned record, re-chained in place
    rec = json.loads(json.dumps(rows[7]))
    rec["entry"]["job"] = "jobB"
    rec["entry"]["seq"] = rows[8]["entry"]["seq"]
    rec["entry"]["prev"] = rows[8]["entry"]["prev"]
    rec["hash"] = v.entry_hash(rec["entry"])
    return [*rows[:8], rec]


def _replay_entry_twice(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*rows[:5], rows[4], *rows[5:]]


TAMPERINGS: dict[str, tuple[Tamper, str]] = {
    "edit": (_edit, "does not match its hash"),
    "edit+rehash": (_edit_and_rehash, "signature does not verify"),
    "delete": (_delete, "expected seq"),
    "truncate": (_truncate, "signed head names entry 9, the ledger ends at 7"),
    "reorder": (_reorder, "does not follow the previous entry"),
    "forge-signature": (_forge_signature, "signature does not verify"),
    "replay-record-into-another-job": (_replay_record_into_another_job, "another job"),
    "replay-entry": (_replay_entry_twice, "expected seq"),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_the_database_is_detected(node: NodeService, name: str) -> None:
    tamper, expected = TAMPERINGS[name]
    rows = tamper(json.loads(json.dumps(_rows(node))))
    # rewrite the ledger table as an attacker with database access would
    with node.storage.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger"))
        for i, st in enumerate(rows, start=1):
            conn.execute(
                text(
                    "INSERT INTO ledger (seq, kind, job_id, entry, hash, sig) "
                    "VALUES (:seq, :kind, :job, :entry, :hash, :sig)"
                ),
                {
                    "seq": i,  # the primary key stays dense: only the content lies
                    "kind": st["entry"]["kind"],
                    "job": st["entry"]["job"],
                    "entry": json.dumps(st["entry"]),
                    "hash": st["hash"],
                    "sig": st["sig"],
                },
            )
    rep = verify_directory(node.config.path)
    assert not rep.ok
    assert any(expected in p for p in rep.problems), rep.problems


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_an_exported_bundle_is_detected(
    node: NodeService, tmp_path: Path, name: str
) -> None:
    tamper, expected = TAMPERINGS[name]
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    rows = [json.loads(line) for line in (path / "entries.jsonl").read_text().splitlines()]
    rows = tamper(rows)
    (path / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = v.verify_bundle(path)
    assert not rep.ok and any(expected in p for p in rep.problems), rep.problems


def test_the_standalone_verifier_runs_alone_and_fails_on_tampering(
    node: NodeService, tmp_path: Path
) -> None:
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    # its own copy, run as a script from the bundle, with the node's pinned fingerprint
    ok = subprocess.run(
        [sys.executable, "verify_ledger.py", ".", "--fingerprint", node.keys.fingerprint],
        cwd=path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ledger of bank, 9 entries"), ok
    wrong = subprocess.run(
        [sys.executable, "verify_ledger.py", ".", "--fingerprint", "00" * 32],
        cwd=path,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 8 and "not the expected" in wrong.stdout
    rows = (path / "entries.jsonl").read_text().splitlines()
    (path / "entries.jsonl").write_text("\n".join(rows[:3] + rows[4:]) + "\n")
    bad = subprocess.run(
        [sys.executable, "verify_ledger.py", ".", "--json"], cwd=path, capture_output=True
    )
    assert bad.returncode == 8 and json.loads(bad.stdout)["ok"] is False


@pytest.mark.parametrize("name", ["verify_ledger.py", "sm2_pure.py"])
def test_the_standalone_files_import_only_the_stdlib_and_cryptography(
    node: NodeService, tmp_path: Path, name: str
) -> None:
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    tree = ast.parse((path / name).read_text())
    roots = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            roots |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            roots.add(n.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"cryptography", "sm2_pure", "rainbridge"}
    assert roots <= allowed, roots - allowed
    # rainbridge is only tried first for SM2 and falls back to the bundle's own copy
    assert "rainbridge" not in roots or name == "verify_ledger.py"


def test_forging_a_whole_ledger_under_another_key_fails_the_pinned_fingerprint(
    node: NodeService, tmp_path: Path
) -> None:
    other = NodeService(make_config(tmp_path / "mallory", "bank", node.keys.suite.name))
    other.storage.log("dataset_added", {"dataset": "fake"})
    other.ledger.flush()
    path, _ = export_directory(other.config.path, tmp_path / "forged")
    assert v.verify_bundle(path).ok  # consistent in itself...
    rep = v.verify_bundle(path, node.keys.fingerprint)  # ...but not the pinned node's
    assert not rep.ok and "not the expected" in rep.problems[-1]


def test_a_missing_certificate_or_head_is_reported(node: NodeService, tmp_path: Path) -> None:
    path, _ = export_directory(node.config.path, tmp_path / "bundle")
    (path / "head.json").unlink()
    assert "no head.json" in v.verify_bundle(path).problems[-1]
    for c in (path / "certs").glob("*.pem"):
        c.unlink()
    assert any("not in the bundle" in p for p in v.verify_bundle(path).problems)


def test_key_rotation_keeps_old_entries_verifiable(node: NodeService) -> None:
    import asyncio

    old = node.keys.fingerprint
    out = asyncio.run(node.peers.rotate_keys(actor="user:admin"))
    assert out["old"] == old and out["new"] != old
    node.storage.log("dataset_added", {"dataset": "after"})
    rep = node.ledger.verify(out["new"])
    assert rep.ok, rep.problems
    assert rep.first_key == old and rep.last_key == out["new"]
    rows = _rows(node)
    assert rows[-1]["entry"]["key"] == out["new"] and rows[-2]["entry"]["kind"] == "key_rotated"
    # the node directory holds both certificates; the TLS key on disk is encrypted
    assert len(list((node.config.path / "certs").glob("*.pem"))) == 2
    assert b"ENCRYPTED PRIVATE KEY" in (node.config.path / "node.key").read_bytes()
    # a new process opens the rotated keys with the master key
    again = NodeService(node.config)
    assert again.keys.fingerprint == out["new"]
    assert again.ledger.verify().ok


def test_a_forged_handover_is_detected(node: NodeService) -> None:
    import asyncio

    asyncio.run(node.peers.rotate_keys())
    rows = _rows(node)
    i = next(i for i, r in enumerate(rows) if r["entry"]["kind"] == "key_rotated")
    body = rows[i]["entry"]["body"]
    body["handover_sig"] = "00" * 64
    rep = v.verify_entries(rows, node.ledger.certificates(), None)
    assert any("hand-over" in p for p in rep.problems)


def test_the_head_follows_appends_in_the_background(node: NodeService) -> None:
    import time

    node.storage.log("dataset_added", {"dataset": "late"})
    deadline = time.monotonic() + 5
    while (node.ledger.head() or {}).get("seq") != 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # a head that lags (a crash between an append and the next head write) is no tampering
    rows = _rows(node)
    head = node.ledger.head()
    assert head is not None
    assert v.verify_entries(rows, node.ledger.certificates(), head).ok
    node.storage.log("dataset_added", {"dataset": "later"})
    assert v.verify_entries(_rows(node), node.ledger.certificates(), head).ok
    # but a head pointing at an entry with another hash is
    forged = {**head, "hash": "00" * 32}
    rep = v.verify_entries(rows, node.ledger.certificates(), forged)
    assert any("not the one in the ledger" in p for p in rep.problems)


def test_the_cli_exits_8_on_tampering_and_0_when_intact(node: NodeService, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "rainbridge.cli", "ledger", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    d = str(node.config.path)
    ok = cli("verify", "--dir", d, "--fingerprint", node.keys.fingerprint)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ledger of bank: 9 entries"), ok
    out = cli("export", "--dir", d, "--out", str(tmp_path / "b"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["entries"] == 9
    assert cli("verify", "--bundle", str(tmp_path / "b")).returncode == 0
    with node.storage.engine.begin() as conn:
        conn.execute(text("UPDATE ledger SET entry = replace(entry, 'alice', 'mallory')"))
    bad = cli("verify", "--dir", d)
    assert bad.returncode == 8 and "FAILED: ledger of bank" in bad.stdout
    assert "does not match its hash (edited)" in bad.stdout
    missing = cli("verify", "--dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not a node directory" in missing.stderr
