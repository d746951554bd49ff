"""``python -m rainbridge.bench psi``: two-party PSI (``--protocol ecdh|rr22``), each party its
own process, over loopback mutual TLS; peers (openmined-psi, SecretFlow's PSI) on the same
sizes in the same run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rainbridge.bench.common import PY, machine, make_ids, median, run_json, write_ids_csv
from rainbridge.bench.wan import Link, WanUnavailable, parse_wan, shaped_link
from rainbridge.crypto.certs import create_identity

ROOT = Path(__file__).resolve().parents[3]
PEER_SCRIPTS = Path(__file__).resolve().parent / "peers"
SPU_PROTOCOLS = ("ecdh", "ecdh-fourq", "kkrt", "rr22")
PEERS = ("openmined", *(f"spu-{p}" for p in SPU_PROTOCOLS))


def run_ours(
    n: int,
    m: int,
    overlap: float,
    curve: str,
    batch: int,
    keys: Path,
    timeout: float,
    protocol: str = "ecdh",
    memory_limit_mb: int = 2048,
    variant: str = "plain",
    link: Link | None = None,
) -> dict[str, Any]:
    """One run of our two parties, each its own process, pinned to each other over mutual TLS.

    Party a listens on an ephemeral loopback port and prints it; b connects to it. Each makes
    its own IDs (deterministic, before its clock starts) and reports its seconds from the
    connected channel to its result, its bytes and its peak RSS. Over a shaped ``link``,
    each party runs in its own network namespace (b through the delay relay when the kernel
    shapes the rate only).
    """
    common = ["--keys", str(keys), "--n", str(n), "--m", str(m), "--overlap", str(overlap),
              "--curve", curve, "--batch", str(batch), "--protocol", protocol,
              "--memory-limit-mb", str(memory_limit_mb), "--variant", variant]  # fmt: skip
    pre_a, pre_b = (link.prefix_a, link.prefix_b) if link else ([], [])
    host = link.host_a if link else "127.0.0.1"
    t0 = time.perf_counter()
    a = subprocess.Popen(
        [*pre_a, PY, "-m", "rainbridge.bench.party", "--side", "a", "--host", host, *common],
        stdin=subprocess.PIPE if protocol == "ic-ecdh" else None,
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
    relay = None
    if link is not None and link.relay_delay_ms > 0:
        to = ["--to", f"{host}:{port}", "--delay-ms", str(link.relay_delay_ms)]
        relay = subprocess.Popen(
            [*pre_b, PY, "-m", "rainbridge.bench.relay", *to],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert relay.stdout is not None
        host, port = "127.0.0.1", json.loads(relay.stdout.readline())["port"]
    where = ["--host", host, "--port", str(port)]
    b = subprocess.Popen(
        [*pre_b, PY, "-m", "rainbridge.bench.party", "--side", "b", *where, *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if protocol == "ic-ecdh":
        # the interconnection link needs both ports: pass b's to a
        assert b.stdout is not None and a.stdin is not None
        a.stdin.write(b.stdout.readline())
        a.stdin.flush()
    try:
        out_b, err_b = b.communicate(timeout=timeout)
        out_a, err_a = a.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        a.kill()
        b.kill()
        return {"error": f"timed out after {timeout:g} s"}
    finally:
        if relay is not None:
            try:
                relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                relay.kill()
    wall = time.perf_counter() - t0
    if a.returncode or b.returncode:
        lines = (err_a or err_b).strip().splitlines() or ["failed"]
        return {"error": f"party exited {a.returncode}/{b.returncode}: {lines[-1][:300]}"}
    ra, rb = json.loads(out_a.strip().splitlines()[-1]), json.loads(out_b.strip().splitlines()[-1])
    return {
        "seconds": max(ra["seconds"], rb["seconds"]),
        "process_wall_seconds": round(wall, 3),
        "intersection": ra["intersection"],
        "bytes_a_to_b": ra["bytes_sent"],
        "bytes_b_to_a": rb["bytes_sent"],
        "peak_rss_mib": {"a": ra["peak_rss_mib"], "b": rb["peak_rss_mib"]},
        "buckets": ra.get("buckets", 1),
        "payload_rows": ra.get("payload_rows"),
        # seconds per phase at each party (see rainbridge.protocols.psi.phases)
        "phases": {"a": ra.get("phases", {}), "b": rb.get("phases", {})},
    }


def peers_python() -> Path:
    """The peer environment's interpreter (``make bench-peers`` makes ``.venv-peers``)."""
    override = os.environ.get("RAINBRIDGE_PEERS_PYTHON")
    return Path(override) if override else ROOT / ".venv-peers" / "bin" / "python"


def peer_command(peer: str) -> list[str] | None:
    """The command that runs ``peer`` (without its inputs), or None for an unknown name."""
    if peer == "openmined":
        return [str(peers_python()), str(PEER_SCRIPTS / "openmined_psi_run.py")]
    if peer.startswith("spu-") and peer[4:] in SPU_PROTOCOLS:
        return [str(peers_python()), str(PEER_SCRIPTS / "spu_psi_run.py"), "--protocol", peer[4:]]
    return None


def run_peer(
    peer: str, a_csv: Path, b_csv: Path, expected: int, n: int, m: int, timeout: float
) -> dict[str, Any]:
    """One run of ``peer`` on the CSV files of our own inputs; its JSON line or an error."""
    cmd = peer_command(peer)
    if cmd is None:
        return {"error": f"unknown peer {peer!r} (use: {', '.join(PEERS)})"}
    if not peers_python().exists():
        return {"error": "peer environment missing (run `make bench-peers`)"}
    # SecretFlow's runner kills a hung attempt and tries once more: give an attempt a limit
    # that grows with the input (FourQ, the slowest, needs about 45 s per 2^20 here), so a
    # hang costs minutes, not the whole --timeout.
    attempt = min(timeout, 120 + 2e-4 * (n + m))
    cmd += ["--a", str(a_csv), "--b", str(b_csv), "--expected", str(expected),
            "--timeout", str(round(attempt))]  # fmt: skip
    return run_json(cmd, 2 * attempt + 60)


def _ratio(num: float, den: float) -> float | None:
    # NaN (no good run) must not reach json.dumps: it would print invalid JSON.
    if math.isnan(num) or math.isnan(den) or den <= 0:
        return None
    return round(num / den, 2)


def bench(args: Any) -> dict[str, Any]:
    """Run our two parties ``args.repeat`` times, then each requested peer on the same IDs."""
    n, m = args.n, args.m or args.n
    needs = {"cardinality": "ecdh", "payload": "rr22"}.get(args.variant, args.protocol)
    if needs != args.protocol:
        raise SystemExit(f"--variant {args.variant} runs on --protocol {needs}")
    # Before the runs, so that the load average says how busy the machine was beforehand.
    host = machine()
    expected = int(min(n, m) * args.overlap)
    peers_wanted = [p for p in args.peers.split(",") if p and p != "none"]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        keys = Path(tmp)
        create_identity(keys / "a", "alice")
        create_identity(keys / "b", "bob")
        link = None
        if args.wan:
            rate, rtt = parse_wan(args.wan)
            try:
                link = stack.enter_context(shaped_link(rate, rtt))
            except WanUnavailable as e:
                raise SystemExit(f"--wan: {e}") from None
        a_csv, b_csv = keys / "a.csv", keys / "b.csv"
        if peers_wanted:
            # The peers read the very strings our parties made, from files written here
            # (outside anyone's timing).
            write_ids_csv(make_ids(n, m, args.overlap, "a"), a_csv)
            write_ids_csv(make_ids(n, m, args.overlap, "b"), b_csv)
        # Our runs and the peers' take turns (ours, each peer, ours, ...), so that a change
        # in the load of this shared machine weighs on both sides alike.
        runs: list[dict[str, Any]] = []
        peer_runs: dict[str, list[dict[str, Any]]] = {p: [] for p in peers_wanted}
        for i in range(max(args.repeat, args.peer_repeat if peers_wanted else 0)):
            if i < args.repeat:
                runs.append(
                    run_ours(
                        n,
                        m,
                        args.overlap,
                        args.curve,
                        args.batch,
                        keys,
                        args.timeout,
                        args.protocol,
                        args.memory_limit_mb,
                        args.variant,
                        link,
                    )
                )
            if i < args.peer_repeat:
                for peer in peers_wanted:
                    peer_runs[peer].append(
                        run_peer(peer, a_csv, b_csv, expected, n, m, args.timeout)
                    )
        for r in runs:
            if "error" not in r and r["intersection"] != expected:
                r["error"] = f"intersection {r['intersection']} != expected {expected}"
            if "error" not in r and args.variant == "payload" and r["payload_rows"] != expected:
                r["error"] = f"payload rows {r['payload_rows']} != expected {expected}"
        ok = [r for r in runs if "error" not in r]
        ours: dict[str, Any] = {
            "protocol": args.protocol,
            "variant": args.variant,
            "link": (
                {"rate": link.rate, "rtt_ms": link.rtt_ms, "shaper": link.shaper}
                if link
                else "loopback"
            ),
            "curve": args.curve if args.protocol == "ecdh" else None,
            "memory_limit_mb": args.memory_limit_mb if args.protocol == "rr22" else None,
            "runs": runs,
            "interleaved_with_peers": bool(peers_wanted),
            "median_seconds": median([r["seconds"] for r in ok]) if ok else None,
            "median_process_wall_seconds": (
                median([r["process_wall_seconds"] for r in ok]) if ok else None
            ),
            "max_peak_rss_mib": max((max(r["peak_rss_mib"].values()) for r in ok), default=None),
        }
        peers: dict[str, Any] = {}
        for peer, pr in peer_runs.items():
            good = [r for r in pr if "error" not in r]
            med = median([r["seconds"] for r in good]) if good else float("nan")
            peers[peer] = {
                "runs": pr,
                "median_seconds": None if math.isnan(med) else med,
                "max_peak_rss_mib": max(
                    (max(r["peak_rss_mib"].values()) for r in good), default=None
                ),
                "ratio_peer_over_ours": _ratio(med, ours["median_seconds"] if ok else float("nan")),
            }
    return {
        "benchmark": "psi",
        "n": n,
        "m": m,
        "overlap": args.overlap,
        "expected_intersection": expected,
        "ok": bool(ok) and len(ok) == len(runs),
        "machine": host,
        "date": time.strftime("%Y-%m-%d"),
        "rainbridge": ours,
        "peers": peers,
    }
