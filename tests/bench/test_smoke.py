"""The benchmark harness runs end to end at a tiny size (figures are not checked here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The harness drives the native core; without a built core there is nothing to smoke-test.
pytest.importorskip("rainbridge._core")


def _bench(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "rainbridge.bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return dict(json.loads(r.stdout))


def test_psi_bench_smoke() -> None:
    out = _bench("psi", "--n", "200", "--batch", "64")
    assert out["benchmark"] == "psi" and out["ok"] is True
    assert out["n"] == out["m"] == 200
    assert out["expected_intersection"] == 100
    assert out["machine"]["cores"] >= 1
    ours = out["rainbridge"]
    run = ours["runs"][0]
    assert "error" not in run, run
    assert run["intersection"] == 100
    assert run["bytes_a_to_b"] > 0 and run["bytes_b_to_a"] > 0
    assert run["peak_rss_mib"]["a"] > 0 and run["peak_rss_mib"]["b"] > 0
    assert ours["median_seconds"] > 0
    assert out["peers"] == {}


def test_psi_bench_unequal_sizes_and_missing_peer_env(tmp_path: Path) -> None:
    # A missing peer environment is reported in the JSON, not raised: ours still counts.
    out = _bench(
        "psi",
        "--n",
        "300",
        "--m",
        "200",
        "--batch",
        "64",
        "--peers",
        "openmined",
        "--out",
        str(tmp_path / "psi.json"),
        env={"RAINBRIDGE_PEERS_PYTHON": str(tmp_path / "no-such-python")},
    )
    assert out["rainbridge"]["runs"][0]["intersection"] == out["expected_intersection"] == 100
    peer = out["peers"]["openmined"]
    assert "error" in peer["runs"][0] and peer["ratio_peer_over_ours"] is None
    assert json.loads((tmp_path / "psi.json").read_text()) == out


def test_ids_csv_matches_arrow_ids(tmp_path: Path) -> None:
    from rainbridge.bench.common import make_ids, write_ids_csv

    ids = make_ids(50, 40, 0.5, "b")
    write_ids_csv(ids, tmp_path / "b.csv")
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0] == "id" and lines[1:] == ids.to_pylist()
    assert all(len(x) == 18 and x.startswith("CN") for x in lines[1:])


def test_x25519_bench_smoke() -> None:
    out = _bench("x25519", "--n", "64", "--repeat", "1")
    assert out["portable"]["mul_per_s"] > 0 and out["openssl_one_thread"]["mul_per_s"] > 0


def test_governance_bench_smoke() -> None:
    out = _bench("governance", "--n", "50", "--repeat", "1", "--grants", "5")
    assert out["benchmark"] == "governance"
    by_suite = {r["suite"]: r for r in out["results"]}
    assert set(by_suite) == {"standard", "gm"}
    assert by_suite["gm"]["signature"] == "sm2"
    for r in by_suite.values():
        assert r["signed_appends_per_s"] > 0 and r["job_step_ms"] > 0
        assert r["verify_entries"] >= 50


def test_mpc_bench_smoke_over_tls_with_messages_larger_than_socket_buffers() -> None:
    # 400,000 elements: each opening is two 3.2 MB messages sent by both parties at once,
    # which deadlocks unless each party receives while it sends
    out = _bench(
        "mpc", "--n", "400000", "--reps", "1", "--n-cmp", "2000", "--in-process",
        "--group-rows", "1000",
    )  # fmt: skip
    assert out["benchmark"] == "mpc" and out["ok"] is True, out
    assert out["in_process"]["fixed_point_mul_per_s"] > 0
    assert out["in_process"]["group_by_rows"] == 1000
    ours = out["rainbridge"]
    assert ours["fixed_point_mul_per_s"] > 0 and ours["comparisons_per_s"] > 0
    run = ours["runs"][0]
    assert run["bytes_p0_to_p1"] > 2 * 8 * 400_000 and run["dealer_bytes"] > 8 * 400_000


def test_pir_bench_smoke() -> None:
    out = _bench("pir", "--rows", "300", "--queries", "4", "--clients", "2", "--seconds", "1")
    assert out["benchmark"] == "pir" and out["sync"]["rows"] == 300
    for mode in ("private", "bucket"):
        assert out[mode]["queries"] == 4 and out[mode]["client_ms"]["p50"] > 0
    assert out["private"]["throughput"]["queries"] > 0
    assert out["private"]["throughput"]["errors"] == []


def test_mlq_bench_smoke() -> None:
    out = _bench("mlq", "--rows", "200", "--counts", "3")
    assert out["benchmark"] == "mlq" and out["counts"]["calls"] == 3
    assert sum(out["build"]["sizes"].values()) > 0
    assert out["counts"]["client_ms"]["p50"] > 0


def test_backup_bench_smoke() -> None:
    out = _bench("backup", "--entries", "50", "--output-mb", "1", "--repeat", "1")
    for step in ("backup", "backup_no_outputs", "restore"):
        assert "error" not in out[step], out[step]
        assert out[step]["seconds_median"] > 0
    # the succeeded job's output is in the full archive only
    assert out["backup"]["archive_bytes"] > out["backup_no_outputs"]["archive_bytes"] + 900_000


def test_mpc_bench_refuses_more_comparisons_than_elements() -> None:
    # the comparisons take the first --n-cmp of the --n elements: more would report a rate
    # for elements never compared
    from rainbridge.bench.__main__ import main

    for extra in (["--n-cmp", "20"], ["--n-sort", "11"]):
        with pytest.raises(SystemExit) as e:
            main(["mpc", "--n", "10", *extra])
        assert e.value.code == 2
