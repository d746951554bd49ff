"""SecretFlow's PSI (inside ``spu``) between two processes over brpc links on loopback.

Run with the peer environment's Python; never imports rainbridge::

    .venv-peers/bin/python spu_psi_run.py --a a.csv --b b.csv \\
        [--protocol ecdh|ecdh-fourq|kkrt|rr22] [--expected K]

Party ``a`` (rank 0) receives the intersection, as in our benchmark. Each party is its own
process; its time runs from the connected link to ``psi_execute``'s return, which includes
reading its CSV and writing the intersection, as SecretFlow's PSI works from files only.
Prints one JSON line: the slower party's seconds, each party's seconds and peak RSS, the
intersection size. SecretFlow's link does not report bytes, so none are given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

PROTOCOLS = ("ecdh", "ecdh-fourq", "kkrt", "rr22")
# SecretFlow logs which elliptic-curve back end it picked (IPPCP: Intel's multi-buffer AVX-512
# IFMA code; libSodium otherwise); the figure means little without it.
CRYPTOR = re.compile(r"Using (IPPCP|libSodium|FourQ)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def party(rank: int, ports: list[int], protocol: str, inp: str, out: str) -> dict[str, Any]:
    import spu.libspu.link as link
    import spu.psi as psi

    desc = link.Desc()
    desc.id = "bench"
    for i, p in enumerate(ports):
        desc.add_party(f"p{i}", f"127.0.0.1:{p}")
    desc.recv_timeout_ms = 3_600_000
    # Both processes start together but import spu at different speeds: give the slower one
    # time to come up instead of failing the connection.
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 500
    t_link = time.perf_counter()
    lctx = link.create_brpc(desc, rank)
    link_seconds = time.perf_counter() - t_link
    conf = psi.PsiExecuteConfig()
    conf.protocol_conf.protocol = {
        "ecdh": psi.PsiProtocol.PROTOCOL_ECDH,
        "ecdh-fourq": psi.PsiProtocol.PROTOCOL_ECDH,
        "kkrt": psi.PsiProtocol.PROTOCOL_KKRT,
        "rr22": psi.PsiProtocol.PROTOCOL_RR22,
    }[protocol]
    conf.protocol_conf.receiver_rank = 0
    conf.protocol_conf.broadcast_result = False
    if protocol.startswith("ecdh"):
        conf.protocol_conf.ecdh_params.curve = (
            psi.EllipticCurveType.CURVE_FOURQ
            if protocol == "ecdh-fourq"
            else psi.EllipticCurveType.CURVE_25519
        )
    conf.input_params.type = psi.SourceType.SOURCE_TYPE_FILE_CSV
    conf.input_params.path = inp
    conf.input_params.selected_keys = ["id"]
    # Our IDs are distinct; telling SecretFlow so spares it a de-duplication pass.
    conf.input_params.keys_unique = True
    conf.output_params.type = psi.SourceType.SOURCE_TYPE_FILE_CSV
    conf.output_params.path = out
    conf.output_params.disable_alignment = True
    t0 = time.perf_counter()
    report = psi.psi_execute(conf, lctx)
    seconds = time.perf_counter() - t0
    lctx.stop_link()
    return {
        "rank": rank,
        "seconds": round(seconds, 3),
        "link_seconds": round(link_seconds, 3),
        "intersection": int(report.intersection_count),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_once(a: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """One run of both parties; their output goes to files, so that neither can block on a
    full pipe while the other is being waited for."""
    ports = f"{free_port()},{free_port()}"
    procs, logs = [], []
    for rank, inp in enumerate((a.a, a.b)):
        log = open(os.path.join(tmp, f"party{rank}.log"), "w+")  # noqa: SIM115
        logs.append(log)
        out = os.path.join(tmp, f"out{rank}.csv")
        cmd = [sys.executable, __file__, "--rank", str(rank), "--ports", ports,
               "--protocol", a.protocol, "--inp", inp, "--out", out]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + a.timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
        return {"error": f"timed out after {a.timeout:g} s", "hung": True}
    outs: list[dict[str, Any]] = []
    cryptors: set[str] = set()
    for p, log in zip(procs, logs, strict=True):
        log.seek(0)
        text = log.read()
        log.close()
        lines = [ln for ln in text.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            return {"error": (text.strip().splitlines() or ["failed"])[-1][:300]}
        outs.append(json.loads(lines[-1]))
        cryptors.update(CRYPTOR.findall(text))
    res: dict[str, Any] = {
        "peer": f"secretflow-psi ({a.protocol})",
        "seconds": max(o["seconds"] for o in outs),
        "seconds_by_party": {"a": outs[0]["seconds"], "b": outs[1]["seconds"]},
        "link_seconds": max(o["link_seconds"] for o in outs),
        "cryptor": ",".join(sorted(cryptors)) or None,
        "intersection": outs[0]["intersection"],
        "peak_rss_mib": {"a": outs[0]["peak_rss_mib"], "b": outs[1]["peak_rss_mib"]},
    }
    if a.expected >= 0 and res["intersection"] != a.expected:
        res["error"] = f"intersection {res['intersection']} != expected {a.expected}"
    return res


def orchestrate(a: argparse.Namespace) -> dict[str, Any]:
    """Run both parties; once more if they hang. spu 0.9.5 now and then deadlocks at start-up
    (rank 1 waiting in the link's mesh handshake inside ``psi_execute`` while rank 0 waits for
    its peer-config exchange); such a run is killed, counted in ``hung_attempts`` and redone."""
    hung = 0
    for _ in range(1 + a.retries):
        with tempfile.TemporaryDirectory() as tmp:
            res = run_once(a, tmp)
        if not res.pop("hung", False):
            break
        hung += 1
    res["hung_attempts"] = hung
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", help="CSV of party a (rank 0, receives the result), header 'id'")
    ap.add_argument("--b", help="CSV of party b (rank 1)")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="ecdh")
    ap.add_argument("--expected", type=int, default=-1, help="known intersection size")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per attempt")
    ap.add_argument("--retries", type=int, default=1, help="attempts after a hung one")
    ap.add_argument("--rank", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--ports", default="", help=argparse.SUPPRESS)
    ap.add_argument("--inp", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rank >= 0:
        res = party(a.rank, [int(p) for p in a.ports.split(",")], a.protocol, a.inp, a.out)
    else:
        if not (a.a and a.b):
            ap.error("--a and --b are required")
        res = orchestrate(a)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
