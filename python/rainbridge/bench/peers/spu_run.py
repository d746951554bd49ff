"""SecretFlow's PSI (inside spu): two processes over brpc links on loopback; prints one JSON
line with the slower party's seconds and each party's peak RSS.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_ids(path: str, n: int, m: int, overlap: float, side: str) -> None:
    common = int(min(n, m) * overlap)
    base = 1 << 40 if side == "a" else 1 << 41
    size = n if side == "a" else m
    nums = np.concatenate([np.arange(common), np.arange(common, size) + base])
    with open(path, "w") as f:
        f.write("id\n")
        f.write("\n".join(f"CN{x:016d}" for x in nums))
        f.write("\n")


def party(rank: int, ports: list[int], protocol: str, inp: str, out: str) -> None:
    import spu.libspu.link as link
    import spu.psi as psi

    desc = link.Desc()
    desc.id = "bench"
    for i, p in enumerate(ports):
        desc.add_party(f"p{i}", f"127.0.0.1:{p}")
    desc.recv_timeout_ms = 600_000
    t0 = time.perf_counter()
    lctx = link.create_brpc(desc, rank)
    proto = {
        "ecdh": psi.PsiProtocol.PROTOCOL_ECDH,
        "ecdh-fourq": psi.PsiProtocol.PROTOCOL_ECDH,
        "kkrt": psi.PsiProtocol.PROTOCOL_KKRT,
        "rr22": psi.PsiProtocol.PROTOCOL_RR22,
    }[protocol]
    conf = psi.PsiExecuteConfig()
    conf.protocol_conf.protocol = proto
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
    conf.input_params.keys_unique = True
    conf.output_params.type = psi.SourceType.SOURCE_TYPE_FILE_CSV
    conf.output_params.path = out
    conf.output_params.disable_alignment = True
    report = psi.psi_execute(conf, lctx)
    seconds = time.perf_counter() - t0
    lctx.stop_link()
    print(
        json.dumps(
            {
                "rank": rank,
                "seconds": round(seconds, 3),
                "intersection": report.intersection_count,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int)
    ap.add_argument("--m", type=int)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--protocol", default="ecdh")
    ap.add_argument("--rank", type=int, default=-1)
    ap.add_argument("--ports", default="")
    ap.add_argument("--inp", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if a.rank >= 0:
        party(a.rank, [int(p) for p in a.ports.split(",")], a.protocol, a.inp, a.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ports = f"{free_port()},{free_port()}"
        procs = []
        for rank, side in ((0, "a"), (1, "b")):
            inp = os.path.join(tmp, f"{side}.csv")
            write_ids(inp, a.n, a.m, a.overlap, side)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--rank",
                        str(rank),
                        "--ports",
                        ports,
                        "--protocol",
                        a.protocol,
                        "--inp",
                        inp,
                        "--out",
                        os.path.join(tmp, f"{side}.out.csv"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = []
        for p in procs:
            o, e = p.communicate(timeout=3600)
            if p.returncode != 0:
                print(json.dumps({"error": (e.strip().splitlines() or ["failed"])[-1][:300]}))
                return
            outs.append(json.loads([ln for ln in o.strip().splitlines() if ln.startswith("{")][-1]))
    print(
        json.dumps(
            {
                "peer": f"secretflow-psi ({a.protocol})",
                "seconds": max(o["seconds"] for o in outs),
                "intersection": outs[0]["intersection"],
                "peak_rss_mib": {"a": outs[0]["peak_rss_mib"], "b": outs[1]["peak_rss_mib"]},
            }
        )
    )


if __name__ == "__main__":
    main()
