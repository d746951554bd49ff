"""The benchmark harness runs end to end at a tiny size (figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_psi_bench_smoke() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rainbridge.bench",
            "psi",
            "--n",
            "300",
            "--m",
            "200",
            "--batch",
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(r.stdout)
    run = out["rainbridge"]["runs"][0]
    assert "error" not in run, run
    assert run["intersection"] == out["expected_intersection"] == 100
    assert run["bytes_a_to_b"] > 0 and run["peak_rss_mib"]["a"] > 0


def test_x25519_bench_smoke() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rainbridge.bench", "x25519", "--n", "64", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(r.stdout)
    assert out["portable"]["mul_per_s"] > 0 and out["openssl_one_thread"]["mul_per_s"] > 0
