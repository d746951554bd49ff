"""A party on a Ray cluster of several simulated machines (ray.cluster_utils.Cluster): a
machine lost while it runs a bucket pair → the bucket runs again elsewhere, same result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_a_lost_machine_reruns_its_bucket_elsewhere(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    # its own process: a cluster of simulated machines cannot share a process with the
    # session's Ray instance
    script = Path(__file__).with_name("ray_cluster_party.py")
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["size"] == out["expected"] == 2000
    assert out["alice_rows_ok"] and out["bob_rows_ok"]
    assert out["alive_nodes"] == 3  # the head and the two machines left
    for side in ("alice", "bob"):
        st = out[side]
        assert st["bucket_retries"] == 1, out
        assert st["bucket_sessions"] == st["buckets"] == 8, out
