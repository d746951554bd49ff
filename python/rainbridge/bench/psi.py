"""``python -m rainbridge.bench psi``: two-party ECDH-PSI, each party its own process, over
loopback mutual TLS; peers (openmined-psi, SecretFlow's PSI) on the same sizes in the same run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rainbridge.bench.common import PY, machine, median, run_json
from rainbridge.crypto.certs import create_identity

ROOT = Path(__file__).resolve().parents[3]
PEERS_PY = ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPTS = Path(__file__).resolve().parent / "peers"


def run_ours(
    n: int, m: int, overlap: float, curve: str, batch: int, keys: Path, timeout: float
) -> dict[str, Any]:
    common = ["--keys", str(keys), "--n", str(n), "--m", str(m), "--overlap", str(overlap),
              "--curve", curve, "--batch", str(batch)]  # fmt: skip
    t0 = time.perf_counter()
    a = subprocess.Popen(
        [PY, "-m", "rainbridge.bench.party", "--side", "a", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert a.stdout is not None
    first = a.stdout.readline()
    try:
        port = json.loads(first)["port"]
    except (ValueError, KeyError):
        a.kill()
        return {"error": f"party a did not start: {a.stderr.read() if a.stderr else first}"}
    b = subprocess.Popen(
        [PY, "-m", "rainbridge.bench.party", "--side", "b", "--port", str(port), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out_b, err_b = b.communicate(timeout=timeout)
        out_a, err_a = a.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        a.kill()
        b.kill()
        return {"error": f"timed out after {timeout:g} s"}
    wall = time.perf_counter() - t0
    if a.returncode or b.returncode:
        return {"error": (err_a or err_b).strip().splitlines()[-1:]}
    ra, rb = json.loads(out_a.strip().splitlines()[-1]), json.loads(out_b.strip().splitlines()[-1])
    return {
        "seconds": max(ra["seconds"], rb["seconds"]),
        "process_wall_seconds": round(wall, 3),
        "intersection": ra["intersection"],
        "bytes_a_to_b": ra["bytes_sent"],
        "bytes_b_to_a": rb["bytes_sent"],
        "peak_rss_mib": {"a": ra["peak_rss_mib"], "b": rb["peak_rss_mib"]},
    }


def run_peer(peer: str, n: int, m: int, overlap: float, timeout: float) -> dict[str, Any]:
    if not PEERS_PY.exists():
        return {"error": "peer environment missing (run `make bench-peers`)"}
    if peer == "openmined":
        cmd = [str(PEERS_PY), str(PEER_SCRIPTS / "openmined_run.py")]
    elif peer.startswith("spu-"):
        cmd = [str(PEERS_PY), str(PEER_SCRIPTS / "spu_run.py"), "--protocol", peer[4:]]
    else:
        return {"error": f"unknown peer {peer!r}"}
    cmd += ["--n", str(n), "--m", str(m), "--overlap", str(overlap)]
    return run_json(cmd, timeout)


def bench(args: Any) -> dict[str, Any]:
    n, m = args.n, args.m or args.n
    expected = int(min(n, m) * args.overlap)
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        create_identity(keys / "a", "alice")
        create_identity(keys / "b", "bob")
        runs = [
            run_ours(n, m, args.overlap, args.curve, args.batch, keys, args.timeout)
            for _ in range(args.repeat)
        ]
    ok = [r for r in runs if "error" not in r]
    for r in ok:
        if r["intersection"] != expected:
            r["error"] = f"intersection {r['intersection']} != expected {expected}"
    ours: dict[str, Any] = {
        "curve": args.curve,
        "runs": runs,
        "median_seconds": median([r["seconds"] for r in ok]),
        "max_peak_rss_mib": max((max(r["peak_rss_mib"].values()) for r in ok), default=None),
    }
    peers: dict[str, Any] = {}
    for peer in [p for p in args.peers.split(",") if p and p != "none"]:
        pr = [run_peer(peer, n, m, args.overlap, args.timeout) for _ in range(args.peer_repeat)]
        good = [r for r in pr if "error" not in r]
        med = median([r["seconds"] for r in good])
        peers[peer] = {
            "runs": pr,
            "median_seconds": med,
            "ratio_peer_over_ours": round(med / ours["median_seconds"], 2) if good else None,
        }
    return {
        "benchmark": "psi",
        "n": n,
        "m": m,
        "overlap": args.overlap,
        "expected_intersection": expected,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "rainbridge": ours,
        "peers": peers,
    }
