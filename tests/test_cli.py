"""The CLI's local commands: simulation, job-file errors, the component catalogue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_run_local(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("customer_id,x\n1,a\n2,b\n3,c\n")
    (tmp_path / "t.csv").write_text("customer_id\n2\n3\n4\n")
    r = cli(
        "run",
        "examples/jobs/psi-2party.yaml",
        "--local",
        "--dataset",
        f"bank.customers={tmp_path / 'b.csv'}",
        "--dataset",
        f"telecom.subscribers={tmp_path / 't.csv'}",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    out = res["bank"]["components"]["psi"]["outputs"]["intersection"]
    assert Path(out["path"]).read_text().splitlines() == ['"customer_id"', '"2"', '"3"']
    assert "outputs" not in res["telecom"]["components"]["psi"]


def test_malformed_job_file_names_line_and_field(tmp_path: Path) -> None:
    job = tmp_path / "j.yaml"
    text = (
        (ROOT / "examples/jobs/psi-2party.yaml").read_text().replace("format: csv", "format: xls")
    )
    job.write_text(text)
    r = cli("run", str(job), "--local")
    assert r.returncode == 2
    assert f"{job}:13:" in r.stderr and "format" in r.stderr


def test_components_catalogue() -> None:
    r = cli("components", "--json")
    assert r.returncode == 0
    psi = next(c for c in json.loads(r.stdout) if c["type"] == "psi")
    assert "curve" in psi["params"]["properties"]


def test_dataset_policy_needs_a_rule(tmp_path: Path) -> None:
    r = cli("dataset", "policy", "customers", "--dir", str(tmp_path))
    assert r.returncode == 2 and "give --min-group-size, --dp-budget, --column" in r.stderr
    r = cli("dataset", "policy", "customers", "--column", "age", "--dir", str(tmp_path))
    assert r.returncode == 2 and "--column wants COLUMN=LEVEL, got 'age'" in r.stderr
