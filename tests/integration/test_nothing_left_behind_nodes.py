"""Between real nodes: a missing input is refused before any protocol message, and a job that
fails at any party, in any component, leaves no output at any party."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow

PARTIES = ("bank", "telecom", "tax")
DATASETS = {"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"}

PSI3 = """\
name: {name}
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {{dataset: customers, id: customer_id}}
      telecom: {{dataset: subscribers, id: customer_id}}
      tax: {{dataset: taxpayers, id: customer_id}}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {{bank: [{bank_cols}]}}
"""

EVALUATE = """\
  - id: eval
    type: evaluate
    inputs:
      bank: {from: psi.intersection}
    outputs:
      report: {receivers: [bank]}
"""


def write_csv(path: Path, header: str, rows: range, line: str) -> None:
    path.write_text(header + "\n" + "".join(line.format(i=i) + "\n" for i in rows))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("nlb")
    (base / "data").mkdir()
    write_csv(base / "data" / "bank.csv", "customer_id,score,label,missing_col",
              range(0, 400), "c{i},0.{i},{i},1")  # fmt: skip
    write_csv(base / "data" / "telecom.csv", "customer_id,age", range(200, 600), "c{i},{i}")
    write_csv(base / "data" / "tax.csv", "customer_id,age", range(0, 600, 2), "c{i},{i}")
    f = Federation(base, list(PARTIES), timeout=8)
    f.start()
    try:
        f.pin_all()
        for p in PARTIES:
            f.add_dataset(p, DATASETS[p], str(base / "data" / f"{p}.csv"))
        yield f
    finally:
        f.stop()


def events(f: Federation, node: str, job_id: str) -> list[str]:
    n = f.nodes[node]
    token = (n.dir / "api.token").read_text().strip()
    r = httpx.get(
        n.api + "/v1/events",
        params={"job_id": job_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    return [e["kind"] for e in r.json()]


def psi_calls(f: Federation, node: str) -> int:
    rep = f.cli_json("metering", "report", node=node)
    return sum(line["calls"] for line in rep["lines"] if line["component_type"] == "psi")


def output_files(f: Federation, node: str, job_id: str) -> list[Path]:
    out = f.nodes[node].dir / "outputs" / job_id
    staged = f.nodes[node].dir / "jobs" / job_id / "staging"
    return [p for d in (out, staged) if d.exists() for p in d.rglob("*") if p.is_file()]


def until_ended(f: Federation, node: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (st := f.cli_json("job", "status", job_id, node=node))["status"] not in (
        "succeeded", "failed", "refused", "aborted", "cancelled",
    ):  # fmt: skip
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    return dict(st)


def test_a_column_missing_from_a_file_is_refused_before_any_protocol_message(
    fed: Federation, tmp_path: Path
) -> None:
    f = fed
    job = tmp_path / "missing.yaml"
    job.write_text(PSI3.format(name="missing", bank_cols="score, missing_col"))
    # registered with the column; then the bank's file loses it
    bank_csv = f.base / "data" / "bank.csv"
    before = bank_csv.read_text()
    write_csv(bank_csv, "customer_id,score,label", range(0, 400), "c{i},0.{i},{i}")
    calls = {p: psi_calls(f, p) for p in PARTIES}
    try:
        # submitted at the bank: its own check refuses it (a data problem, exit 3)
        r = f.cli("job", "submit", str(job), node="bank", check=False)
        assert r.returncode == 3, r.stderr
        for part in ("'customers'", "'bank'", "'missing_col'", "component 'psi'"):
            assert part in r.stderr, r.stderr
        assert "bank.csv" not in r.stderr
        # submitted at the telecom: the bank refuses the proposal, naming the column (exit 4)
        r = f.cli("job", "submit", str(job), node="telecom", check=False)
        assert r.returncode == 4, r.stderr
        assert "bank:" in r.stderr and "'missing_col'" in r.stderr, r.stderr
        assert "bank.csv" not in r.stderr  # the bank's path never reaches another party
        (row,) = [j for j in f.cli_json("job", "list", node="telecom") if j["name"] == "missing"]
        for p in PARTIES:
            st = until_ended(f, p, row["id"])
            assert st["status"] in ("refused", "aborted"), (p, st)
            kinds = events(f, p, row["id"])
            assert "job_started" not in kinds and "dataset_read" not in kinds, (p, kinds)
            assert not (f.nodes[p].dir / "jobs" / row["id"]).exists()  # no worker ever ran
            assert output_files(f, p, row["id"]) == []
            assert psi_calls(f, p) == calls[p]  # nothing metered
    finally:
        bank_csv.write_text(before)
    # with the file as registered, the same job runs
    ok = f.cli_json("job", "submit", str(job), node="telecom")
    assert ok["status"] == "succeeded", ok


def test_a_failure_in_a_later_component_removes_every_output_at_every_party(
    fed: Federation, tmp_path: Path
) -> None:
    f = fed
    job = tmp_path / "later.yaml"
    # the bank's labels (0..399) are not binary: its evaluation fails after the PSI
    # succeeded at all three parties and the bank and the telecom wrote their intersections
    job.write_text(PSI3.format(name="later", bank_cols="score, label") + EVALUATE)
    r = f.cli("job", "submit", str(job), node="bank", check=False)
    assert r.returncode == 6, r.stderr
    job_id = r.stdout.split()[1].rstrip(":")
    for p in PARTIES:
        st = until_ended(f, p, job_id)
        assert st["status"] in ("failed", "aborted"), (p, st)
        if p == "bank":  # the one that failed records its progress to the end
            assert st["progress"].get("psi") == 1.0, st
        assert output_files(f, p, job_id) == [], p
        res = f.cli("job", "result", job_id, "--json", node=p, check=False)
        assert res.returncode == 6 and '"result": null' in res.stdout, (p, res.stdout)
        gone = f.cli("job", "output", job_id, "psi", "intersection", node=p, check=False)
        assert gone.returncode == 7, (p, gone.stderr)
        r = f.cli("job", "status", job_id, "--wait", node=p, check=False)
        assert r.returncode == 6, (p, r.stdout)
    assert "must hold 0 and 1 only" in f.cli_json("job", "status", job_id, node="bank")["error"]
