"""``python -m rainbridge.bench voprf``: the cost of proving and verifying OPRF evaluations.

For each batch size, in alternating rounds: the client's blinding, the plain evaluation
(RFC 9497 mode 0, the baseline every PIR query paid before proofs), the verifiable one
(mode 1: the evaluation and its batched DLEQ proof, ``ComputeCompositesFast``), the
client's verification of that proof (``ComputeComposites`` and ``VerifyProof``) and the
client's Finalize (unblinding and hashing, the same in both modes). Medians of
``--repeat`` rounds, in milliseconds, and the ratios against the plain evaluation measured
in the same rounds.
"""

from __future__ import annotations

import time
from typing import Any

from rainbridge import _core
from rainbridge.bench.common import machine, median
from rainbridge.crypto import oprf, voprf


def _ms(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1000, out


def bench(args: Any) -> dict[str, Any]:
    sizes = [int(x) for x in str(args.batches).split(",")]
    out: dict[str, Any] = {"benchmark": "voprf", "repeat": args.repeat,
                           "threads": _core.build_info()["threads"], "machine": machine(),
                           "date": time.strftime("%Y-%m-%d"), "batches": []}  # fmt: skip
    sk = voprf.random_key()
    pk = voprf.public_key(sk)
    for n in sizes:
        ids = [b"%018d" % (10**17 + i) for i in range(n)]
        q = voprf.blind(ids)
        times: dict[str, list[float]] = {"blind": [], "evaluate_mode0": [],
                                         "evaluate_prove": [], "verify": [],
                                         "finalize": []}  # fmt: skip
        for _ in range(args.repeat):
            t, _ = _ms(voprf.blind, ids)
            times["blind"].append(t)
            t, _ = _ms(oprf.evaluate, sk, q.elements)
            times["evaluate_mode0"].append(t)
            t, ev = _ms(voprf.evaluate, sk, q.elements)
            times["evaluate_prove"].append(t)
            t, _ = _ms(voprf.verify, pk, q.elements, ev.elements, ev.proof)
            times["verify"].append(t)
            t, _ = _ms(oprf.finalize, q, ev.elements)
            times["finalize"].append(t)
        med = {k: round(median(v), 3) for k, v in times.items()}
        base = med["evaluate_mode0"]
        out["batches"].append(
            {
                "n": n,
                "ms": med,
                "prove_over_mode0": round(med["evaluate_prove"] / base, 2),
                "verify_over_mode0": round(med["verify"] / base, 2),
                "verify_over_finalize": round(med["verify"] / med["finalize"], 2),
            }
        )
    return out
