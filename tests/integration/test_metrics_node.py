"""Metrics and logs of real node processes: after a PSI job between two nodes, the
token-less metrics port of each shows the job, its run time and the bytes exchanged with the
other party, while the API's /metrics still wants a token; the JSON log file holds the
job's start and end and no ID of the data."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig, free_port

pytestmark = pytest.mark.slow

JOB = """\
name: metered
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_port_and_json_log_of_real_nodes(tmp_path: Path) -> None:
    people = [f"P{secrets.token_hex(8)}" for _ in range(2000)]
    data = {"bank": people[:1500], "telecom": people[500:]}
    for party, ids in data.items():
        (tmp_path / f"{party}.csv").write_text(
            "customer_id,age\n" + "".join(f"{x},{i % 90}\n" for i, x in enumerate(ids))
        )
    f = Federation(tmp_path / "nodes", ["bank", "telecom"], timeout=20)
    f.init()
    ports = {}
    for name, node in f.nodes.items():
        cfg = NodeConfig.load(node.dir)
        cfg.metrics_port = ports[name] = free_port()
        cfg.log_format, cfg.log_file = "json", "node-json.log"
        cfg.save()
    f.start()
    try:
        f.pin_all()
        f.add_dataset("bank", "customers", tmp_path / "bank.csv")
        f.add_dataset("telecom", "subscribers", tmp_path / "telecom.csv")
        (tmp_path / "job.yaml").write_text(JOB)
        job = f.cli_json("job", "submit", str(tmp_path / "job.yaml"), node="bank")
        assert job["status"] == "succeeded", job
        # the API's /metrics still wants a token
        bank = f.nodes["bank"]
        assert httpx.get(bank.api + "/metrics", verify=bank.verify).status_code == 401

        for name, peer in (("bank", "telecom"), ("telecom", "bank")):
            # the job's end is counted once its worker has exited and the watcher recorded it
            got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for _ in range(100):
                r = httpx.get(f"http://127.0.0.1:{ports[name]}/metrics")  # no token
                assert r.status_code == 200
                got = _samples(r.text)
                key = (("component_type", "psi"), ("status", "succeeded"))
                if got.get(("rainbridge_jobs_finished_total", key)):
                    break
                time.sleep(0.1)
            assert got[("rainbridge_jobs_finished_total", key)] == 1
            assert got[("rainbridge_job_run_seconds_count", key)] == 1
            assert 0 < got[("rainbridge_job_run_seconds_sum", key)] < 120
            job_traffic = (("kind", "job"), ("peer", peer))
            sent = got[("rainbridge_dataplane_sent_bytes_total", job_traffic)]
            received = got[("rainbridge_dataplane_received_bytes_total", job_traffic)]
            # a PSI over 1,500 IDs a side moves at least 32 bytes per ID each way
            assert sent > 32 * 1500 and received > 32 * 1500
            assert got[("rainbridge_workers_running", ())] == 0
            # only the node's own pinned peer among the peer labels
            peers = {dict(k[1]).get("peer") for k in got if k[0].startswith("rainbridge_dataplane")}
            assert peers == {peer}

            log = (f.nodes[name].dir / "node-json.log").read_text()
            lines = [json.loads(line) for line in log.splitlines()]
            mine = [x for x in lines if x.get("job_id") == job["id"]]
            assert [x["status"] for x in mine if "duration_s" in x] == ["succeeded"]
            assert [x for x in mine if x.get("status") == "running"]
            assert not [p for p in people if p in log]
    finally:
        f.stop()


def test_node_start_refuses_a_public_metrics_host_and_a_log_it_cannot_write(
    tmp_path: Path,
) -> None:
    f = Federation(tmp_path / "nodes", ["bank"])
    f.init()
    d = f.nodes["bank"].dir
    for change, said in (
        ({"metrics_port": free_port(), "metrics_host": "8.8.8.8"}, "public address"),
        ({"log_file": str(tmp_path / "no" / "such" / "node.log")}, "cannot append"),
    ):
        cfg = NodeConfig.load(d)
        before = {k: getattr(cfg, k) for k in change}
        for k, v in change.items():
            setattr(cfg, k, v)
        cfg.save()
        r = subprocess.run(
            [sys.executable, "-m", "rainbridge.cli", "node", "start", "--dir", str(d)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, r.stderr
        assert said in r.stderr
        for k, v in before.items():
            setattr(cfg, k, v)
        cfg.save()
