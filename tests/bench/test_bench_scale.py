"""The scale-out PSI benchmark runs end to end at a tiny size (figures are not checked here):
two party processes over loopback mutual TLS, local and Ray engines, a dropped link."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rainbridge._core")

from rainbridge.bench import scale

TINY = ["--n", "4096", "--bucket-items", "1024"]


def _bench(*args: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "rainbridge.bench", "scale", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    return dict(json.loads(r.stdout))


def _check_workers(w: dict[str, Any], workers: int, expected: int) -> None:
    assert "error" not in w, w
    assert w["workers"] == workers and w["busy_slots"] == 2 * workers
    assert w["buckets"] == 4 and w["window"] == workers
    for run in w["runs"]:
        assert run["intersection"] == expected
        assert run["bytes_a_to_b"] > 0 and run["bytes_b_to_a"] > 0
        assert run["bucket_sessions"] == {"a": 4, "b": 4} and run["reconnects"] == 0
    assert w["median_seconds"] > 0 and w["split_seconds"]["a"] >= 0
    assert w["per_bucket_seconds"] == pytest.approx(w["median_seconds"] / (4 / workers), rel=1e-2)
    assert w["bytes_per_item"] > 0


def test_local_engine_by_workers_with_a_dropped_link(tmp_path: Path) -> None:
    out = _bench(
        *TINY, "--engine", "local", "--workers", "2,1", "--repeat", "2",
        "--drop-after-bytes", "40000", "--out", str(tmp_path / "scale.json"),
    )  # fmt: skip
    assert out["benchmark"] == "scale" and out["ok"] is True, out
    assert out["expected_intersection"] == 2048 and out["engine"] == "local"
    assert out["input"].startswith("a Parquet file per party")
    assert out["machine"]["cores"] >= 1 and "load_average" in out["machine"]
    ws = out["by_workers"]
    assert [w["workers"] for w in ws] == [1, 2]
    for w in ws:
        _check_workers(w, w["workers"], 2048)
        assert len(w["runs"]) == 2
        # b's link dropped once: both parties reconnected and finished the same PSI
        drop = w["drop"]
        assert drop["dropped_at_b"] is True and drop["reconnects"] == 1
        assert drop["intersection"] == 2048 and "error" not in drop
        assert drop["seconds_lost"] == pytest.approx(drop["seconds"] - w["median_seconds"])
        for s in ("a", "b"):
            # every bucket finished once, on the old link or the new one
            assert drop["bucket_sessions"][s] == 4 + drop["buckets_run_again"][s]
    assert ws[0]["efficiency"] == 1.0
    assert ws[1]["efficiency"] == pytest.approx(
        ws[0]["median_seconds"] / (2 * ws[1]["median_seconds"]), abs=1e-3
    )
    proj = out["projection"]
    assert proj["buckets"] == 1 << 20  # 10^9 at 1024 per bucket hits the bucket bound
    assert set(proj["by_cores_per_party"]) == {"8", "32"}
    assert proj["by_cores_per_party"]["32"]["secretflow_hours"] == 0.62
    assert json.loads((tmp_path / "scale.json").read_text()) == out


def test_ray_engine_one_worker() -> None:
    pytest.importorskip("ray")
    out = _bench(*TINY, "--engine", "ray", "--workers", "1", "--repeat", "1")
    assert out["ok"] is True, out
    (w,) = out["by_workers"]
    _check_workers(w, 1, 2048)
    assert "drop" not in w


def test_ecdh_in_memory_has_no_projection() -> None:
    out = _bench(
        "--protocol", "ecdh", "--n", "1000", "--bucket-items", "256", "--input", "array",
        "--workers", "1", "--repeat", "1",
    )  # fmt: skip
    assert out["ok"] is True and "projection" not in out
    assert out["input"].startswith("an Arrow array")
    assert out["by_workers"][0]["runs"][0]["intersection"] == 500


def test_a_failing_party_is_reported_not_raised() -> None:
    # both parties refuse the parameters before any bucket runs: an error in the JSON
    out = _bench("--n", "64", "--bucket-items", "0", "--workers", "1", "--repeat", "1")
    assert out["ok"] is False
    err = out["by_workers"][0]["error"]
    assert "party exited" in err and "bucket_items" in err
    assert out["projection"] == {"error": "needs a good run at W = 1"}


def test_bad_worker_list_is_refused() -> None:
    for bad in ("0,1", "two", ""):
        with pytest.raises(SystemExit, match="comma list"):
            scale.parse_workers(bad)
    assert scale.parse_workers("4,1,2,2") == [1, 2, 4]


def _pair(seconds: float, intersection: int, *, drop: dict[str, Any] | None = None) -> Any:
    run = {
        "seconds": seconds, "split_seconds": 0.1, "intersection": intersection, "buckets": 4,
        "window": 1, "bucket_sessions": 4, "reconnects": 0, "buckets_kept_on_resume": 0,
        "buckets_run_again": 0, "bytes_sent": 1000,
    }  # fmt: skip
    side = {"input": "parquet", "runs": [run], "peak_rss_mib": 1.0, "drop": drop}
    return {"a": side, "b": side}


def test_wrong_intersection_and_a_link_that_never_dropped() -> None:
    s = scale.summarise(_pair(2.0, 7), 1, 100, 50)
    assert s["error"] == "intersection 7 (a), 7 (b) != expected 50"
    assert "median_seconds" not in s
    never = {**_pair(2.0, 50)["a"]["runs"][0], "dropped_here": False}
    s = scale.summarise(_pair(2.0, 50, drop=never), 1, 100, 50)
    assert "error" not in s and s["drop"]["dropped_at_b"] is False
    assert "never dropped" in s["drop"]["note"] and s["drop"]["seconds_lost"] == 0.0


def test_projection_formula() -> None:
    per_w = [
        scale.summarise(_pair(8.0, 50), 1, 1000, 50),
        scale.summarise(_pair(5.0, 50), 2, 1000, 50),
    ]
    assert scale.add_efficiency(per_w) == "t(1) / (W t(W))"
    assert per_w[1]["efficiency"] == 0.8
    p = scale.projection(per_w, 1 << 20)
    # 1024 buckets, 2 s per bucket at one slot, 32 cores at 80 %
    assert p["buckets"] == 1024 and p["per_bucket_seconds_w1"] == 2.0
    assert p["by_cores_per_party"]["32"]["hours"] == round(1024 * 2.0 / (32 * 0.8) / 3600, 3)
    # 2000 bytes both ways over 2000 items: 1 byte per item, 2e9 bytes at 10 Gbit/s
    assert p["link_hours_lower_bound"] == round(1.6 / 3600, 3)
