"""openmined-psi (ECDH over P-256): server setup, client request, server response, client
intersection; prints one JSON line. Runs its two roles in one process, one after the other:
its figure is the whole computation of both parties, as the library offers no transport.
"""

import argparse
import json
import resource
import time

import numpy as np
import private_set_intersection.python as psi


def ids(n: int, m: int, overlap: float, side: str) -> list[str]:
    common = int(min(n, m) * overlap)
    base = 1 << 40 if side == "a" else 1 << 41
    size = n if side == "a" else m
    nums = np.concatenate([np.arange(common), np.arange(common, size) + base])
    return [f"CN{x:016d}" for x in nums]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--m", type=int, required=True)
    ap.add_argument("--overlap", type=float, default=0.5)
    a = ap.parse_args()
    server_items = ids(a.n, a.m, a.overlap, "a")
    client_items = ids(a.n, a.m, a.overlap, "b")
    t0 = time.perf_counter()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
    request = client.CreateRequest(client_items)
    response = server.ProcessRequest(request)
    inter = client.GetIntersection(setup, response)
    seconds = time.perf_counter() - t0
    size = (
        len(setup.SerializeToString())
        + len(request.SerializeToString())
        + len(response.SerializeToString())
    )
    print(
        json.dumps(
            {
                "peer": "openmined-psi",
                "seconds": round(seconds, 3),
                "intersection": len(inter),
                "bytes": size,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
