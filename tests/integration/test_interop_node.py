"""A Rainbridge node intersects with another platform over the interconnection standard:
the independent peer (tests/interop/ic_peer.py) plays the other platform; the node runs
under a grant, writes the psi output, meters and ledgers the run; a refused or failed run
leaves no output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow
pytest.importorskip("grpc_tools", reason="the independent peer needs grpcio-tools (dev extra)")
PEER = Path(__file__).resolve().parents[1] / "interop" / "ic_peer.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_peer(tmp: Path, ids: list[str], our_port: int, forge: str = "none") -> tuple:
    (tmp / "peer.txt").write_text("".join(f"{x}\n" for x in ids))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PEER),
            "--rank",
            "0",
            "--peer",
            f"127.0.0.1:{our_port}",
            "--ids",
            str(tmp / "peer.txt"),
            "--proto-out",
            str(tmp / "gen"),
            "--forge",
            forge,
            "--suites",
            "sm2,curve25519",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = json.loads(proc.stdout.readline())["port"]
    return proc, port


def bank_with(tmp: Path, ours: list[str], age: Callable[[int], int]) -> Federation:
    """A running bank node with its customers (ID and age) registered."""
    data = tmp / "customers.csv"
    data.write_text("customer_id,age\n" + "".join(f"{c},{age(i)}\n" for i, c in enumerate(ours)))
    f = Federation(tmp, ["bank"], timeout=20)
    f.start()
    try:
        f.cli(
            "dataset", "add", "customers", "--path", str(data), "--id", "customer_id", node="bank"
        )
    except BaseException:
        f.stop()
        raise
    return f


def pin_peer(f: Federation, port: int, our_port: int) -> None:
    """The independent peer as the bank's interconnection peer (it has rank 0)."""
    f.cli(
        "interop",
        "peer-add",
        "sfparty",
        "--url",
        f"127.0.0.1:{port}",
        "--rank",
        "0",
        "--listen",
        f"127.0.0.1:{our_port}",
        node="bank",
    )


def test_node_intersects_with_another_platform(tmp_path: Path) -> None:
    ours = [f"c{i}" for i in range(0, 400, 2)]
    theirs = [f"c{i}" for i in range(0, 400, 5)] + ["elsewhere"]
    f = bank_with(tmp_path, ours, age=lambda i: 20 + i % 50)
    try:
        our_port = free_port()
        proc, port = start_peer(tmp_path, theirs, our_port)
        pin_peer(f, port, our_port)
        # no grant yet: refused before anything is sent
        r = f.cli(
            "interop",
            "psi",
            "--peer",
            "sfparty",
            "--dataset",
            "customers",
            node="bank",
            check=False,
        )
        assert r.returncode == 4 and "no grant" in r.stderr
        f.cli(
            "grant",
            "add",
            "customers",
            "--peer",
            "sfparty",
            "--columns",
            "customer_id",
            "--components",
            "psi",
            "--receivers",
            "bank,sfparty",
            node="bank",
        )
        out = f.cli_json(
            "interop",
            "psi",
            "--peer",
            "sfparty",
            "--dataset",
            "customers",
            "--columns",
            "age",
            "--suites",
            "sm2,curve25519",
            node="bank",
        )
        peer_out = json.loads(proc.stdout.readline())
        proc.wait(timeout=30)
        truth = sorted(set(ours) & set(theirs))
        assert out["suite"] == "sm2"  # rank 0 takes the requester's (our) first choice
        assert out["intersection_size"] == len(truth)
        table = pq.read_table(out["output"]["path"])
        assert table.column_names == ["customer_id", "age"]
        assert table.column("customer_id").to_pylist() == truth
        assert peer_out["common"] == truth
        ledger = json.dumps(f.cli_json("ledger", "show", "--limit", "500", node="bank"))
        assert '"interop_psi_started"' in ledger and '"interop_psi_finished"' in ledger
        report = f.cli_json("metering", "report", node="bank")
        assert any(r["peer"] == "sfparty" and r["component_type"] == "psi" for r in report["lines"])

        # a peer that breaks the protocol: the run fails everywhere, no output is written
        proc, port = start_peer(tmp_path, theirs, our_port, forge="skip-index")
        pin_peer(f, port, our_port)
        before = set((f.nodes["bank"].dir / "outputs").rglob("*"))
        r = f.cli(
            "interop",
            "psi",
            "--peer",
            "sfparty",
            "--dataset",
            "customers",
            node="bank",
            check=False,
        )
        proc.kill()
        assert r.returncode != 0 and "INVALID_REQUEST" in r.stderr
        assert set((f.nodes["bank"].dir / "outputs").rglob("*")) == before
        ledger = json.dumps(f.cli_json("ledger", "show", "--limit", "500", node="bank"))
        assert '"interop_psi_failed"' in ledger
    finally:
        f.stop()


JOB = """\
name: with-another-platform
parties: [bank, sfparty]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      sfparty: {dataset: theirs, id: customer_id}
    outputs:
      intersection:
        receivers: [bank]
        columns: {bank: [age]}
"""


def test_a_psi_job_with_an_interconnection_peer(tmp_path: Path) -> None:
    import time

    ours = [f"c{i}" for i in range(0, 300, 2)]
    theirs = [f"c{i}" for i in range(0, 300, 3)]
    f = bank_with(tmp_path, ours, age=lambda i: i)
    try:
        our_port = free_port()
        proc, port = start_peer(tmp_path, theirs, our_port)
        pin_peer(f, port, our_port)
        f.cli(
            "grant",
            "add",
            "customers",
            "--peer",
            "sfparty",
            "--columns",
            "customer_id",
            "--components",
            "psi",
            "--receivers",
            "bank",
            node="bank",
        )
        job = tmp_path / "job.yaml"
        job.write_text(JOB)
        # a job the standard cannot run is refused at submission
        bad = tmp_path / "bad.yaml"
        bad.write_text(JOB.replace("type: psi", "type: psi\n    params: {protocol: rr22}"))
        r = f.cli("job", "submit", str(bad), node="bank", check=False)
        assert r.returncode != 0 and "protocol ecdh only" in r.stderr
        f.cli("job", "submit", str(job), node="bank", check=False)
        jobs = f.cli_json("job", "list", node="bank")
        job_id = next(j["id"] for j in jobs if j["name"] == "with-another-platform")
        deadline = time.monotonic() + 60
        while (st := f.cli_json("job", "status", job_id, node="bank"))["status"] not in (
            "succeeded",
            "failed",
            "aborted",
        ):
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st["status"] == "succeeded", st
        res = f.cli_json("job", "result", job_id, node="bank")["result"]
        psi = res["components"]["psi"]
        table = pq.read_table(psi["outputs"]["intersection"]["path"])
        truth = sorted(set(ours) & set(theirs))
        assert table.column("customer_id").to_pylist() == truth
        assert table.column_names == ["customer_id", "age"]
        # the same output through the API and the CLI: rows, or the file itself
        rows = f.cli_json(
            "job", "output", job_id, "psi", "intersection", "--limit", "5", node="bank"
        )
        assert rows["total"] == len(truth) and len(rows["rows"]) == 5
        copy = tmp_path / "copy.parquet"
        f.cli("job", "output", job_id, "psi", "intersection", "--out", str(copy), node="bank")
        assert pq.read_table(copy).equals(table)
        peer_out = json.loads(proc.stdout.readline())
        assert peer_out == {"size": None}  # the other platform was not a receiver
        proc.wait(timeout=30)
        # the job's record, signed by this node alone (the other platform does not sign)
        deadline = time.monotonic() + 30
        while True:
            ledger = f.cli_json("ledger", "show", "--job", job_id, "--limit", "200", node="bank")
            kinds = [st["entry"]["kind"] for st in ledger["entries"]]
            if "job_record" in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert "job_record" in kinds, kinds
        assert f.cli_json("ledger", "verify", node="bank")["ok"] is True
    finally:
        f.stop()
