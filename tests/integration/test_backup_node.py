"""Backup of a real node process while a PSI job runs, restored into a new directory (and a
new PostgreSQL database) and started as a real process with the master key."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig
from rainbridge.node.keys import MASTER_KEY_ENV

pytestmark = pytest.mark.slow

JOB = """\
name: {name}
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {{dataset: customers, id: customer_id}}
      telecom: {{dataset: subscribers, id: customer_id}}
    outputs:
      intersection:
        receivers: [bank, telecom]
"""


def _data(base: Path, party: str, rows: range) -> Path:
    p = base / "data" / f"{party}-{len(rows)}.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("customer_id,age\n" + "".join(f"c{i:07d},{i % 90}\n" for i in rows))
    return p


def _job(base: Path, name: str) -> str:
    p = base / f"{name}.yaml"
    p.write_text(JOB.format(name=name))
    return str(p)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def _snapshot_status(archive: Path, job_id: str, work: Path) -> str | None:
    """A job's status in a SQLite backup's database snapshot."""
    with tarfile.open(archive) as tar:
        f = tar.extractfile("database/node.db")
        assert f is not None
        (work / "snap.db").write_bytes(f.read())
    con = sqlite3.connect(work / "snap.db")
    try:
        row = con.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        con.close()
    return None if row is None else str(row[0])


def _wait_ready(api: str, token: str, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            r = httpx.get(api + "/v1/node", headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the restored node did not start: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_node_backed_up_mid_job_restores_and_runs(
    tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    pg = request.getfixturevalue("pg_server") if db == "postgresql" else None
    small = {
        p: _data(tmp_path, p, r) for p, r in (("bank", range(0, 60)), ("telecom", range(30, 90)))
    }
    large = {
        p: _data(tmp_path, p, r)
        for p, r in (("bank", range(0, 400_000)), ("telecom", range(200_000, 600_000)))
    }
    f = Federation(
        tmp_path / "fed",
        ["bank", "telecom"],
        timeout=60,
        db_server=pg.url("postgres") if pg is not None else "",
    )
    f.start()
    bank = f.nodes["bank"]
    master = (bank.dir / "master.key").read_text().strip()
    archive = tmp_path / "bank-backup.tgz"
    try:
        f.pin_all()
        for party, ds in (("bank", "customers"), ("telecom", "subscribers")):
            f.add_dataset(party, ds, small[party])
        first = f.cli_json("job", "submit", _job(tmp_path, "first"), node="bank")
        assert first["status"] == "succeeded", first
        for party, ds in (("bank", "customers"), ("telecom", "subscribers")):
            f.add_dataset(party, ds + "_large", large[party])
        (tmp_path / "big.yaml").write_text(
            JOB.format(name="big")
            .replace("customers,", "customers_large,")
            .replace("subscribers,", "subscribers_large,")
        )
        row = f.cli_json("job", "submit", str(tmp_path / "big.yaml"), "--no-wait", node="bank")
        deadline = time.monotonic() + 60
        while True:
            st = f.cli_json("job", "status", row["id"], node="bank")
            if st["status"] == "running" and st["progress"].get("psi", 0) > 0.02:
                break
            assert st["status"] in ("proposed", "starting", "running"), st
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        # the backup, while the job's worker runs and the node writes
        out = f.cli("node", "backup", "--dir", str(bank.dir), "--out", str(archive), "--json")
        made = json.loads(out.stdout)
        assert "master key is NOT in the backup" in out.stderr
        assert f.cli_json("job", "status", row["id"], node="bank")["status"] == "running"
        deadline = time.monotonic() + 300
        while (st := f.cli_json("job", "status", row["id"], node="bank"))["status"] == "running":
            assert time.monotonic() < deadline, st
            time.sleep(0.3)
        assert st["status"] == "succeeded", st
        live_tail = f.cli_json("ledger", "verify", node="bank")
        assert live_tail["ok"]
    finally:
        f.stop()

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    head = manifest["ledger_head"]
    assert made["ledger_head"] == head and made["database"] == db
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    # the master key is neither a member nor anywhere in the bytes, compressed or not
    assert not any("master" in n for n in names)
    raw = archive.read_bytes()
    for blob in (raw, gzip.decompress(raw)):
        assert master.encode() not in blob and bytes.fromhex(master) not in blob
    # the job ran on after the snapshot: the backup holds it running, without its outputs
    if db == "sqlite":
        assert _snapshot_status(archive, row["id"], tmp_path) in ("starting", "running")
    assert not any(n.startswith(f"node/outputs/{row['id']}") for n in names)
    assert any(n.startswith(f"node/outputs/{first['id']}/") for n in names)
    assert head["seq"] < live_tail["entries"]

    # restore: a tampered copy and a non-empty folder are refused first
    bad = tmp_path / "bad.tgz"
    cut = raw[: len(raw) - 200]
    bad.write_bytes(cut)
    r = _cli("node", "restore", str(bad), "--dir", str(tmp_path / "restored"))
    assert r.returncode == 3, r.stderr
    assert not (tmp_path / "restored").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert _cli("node", "restore", str(archive), "--dir", str(busy)).returncode == 2

    new = tmp_path / "restored"
    # the PostgreSQL target through the environment (a password stays off the command line)
    db_env = {"RAINBRIDGE_RESTORE_DB": pg.url(pg.create_database("restored"))} if pg else {}
    r = _cli(
        "node", "restore", str(archive), "--dir", str(new), "--json",
        env={MASTER_KEY_ENV: master, **db_env},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    restored = json.loads(r.stdout)
    assert restored["master_key"] == "opened" and restored["ledger_head"] == head
    assert not (new / "master.key").exists()
    v = _cli("ledger", "verify", "--dir", str(new), "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    rep = json.loads(v.stdout)
    assert rep["ok"] and rep["head"] == head["hash"] and rep["entries"] == head["seq"]

    # the restored node starts as a real process with the master key, and serves
    log = tmp_path / "restored.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rainbridge.cli", "node", "start", "--dir", str(new)],
            stdout=lf,
            stderr=subprocess.STDOUT,
            env={**os.environ, MASTER_KEY_ENV: master},
            start_new_session=True,
        )
    try:
        cfg = NodeConfig.load(new)
        token = (new / "api.token").read_text().strip()
        info = _wait_ready(cfg.api_url, token, proc, log)
        assert info["fingerprint"] == bank.info["fingerprint"]
        h = {"Authorization": f"Bearer {token}"}
        # the job that was running at the snapshot failed on restart, leaving nothing
        job = httpx.get(f"{cfg.api_url}/v1/jobs/{row['id']}", headers=h).json()
        assert job["status"] == "failed", job
        assert not (new / "outputs" / row["id"]).exists()
        # the first job's output is served from the restored directory
        got = httpx.get(f"{cfg.api_url}/v1/jobs/{first['id']}/outputs/psi/intersection", headers=h)
        assert got.status_code == 200, got.text
        assert got.json()["total"] == 30
        v = _cli("ledger", "verify", "--dir", str(new), "--fingerprint", info["fingerprint"])
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
