"""SecretFlow SPU's side of the MPC benchmark (run in the peer environment, one process).

SPU's simulator runs two SEMI2K parties (additive sharing over Z_2^64, fixed point with 18
fractional bits by default; its triples from a trusted first party) as threads in this
process over in-memory links: no network, no TLS. ``sim_jax`` shares the inputs, runs the
compiled program and reveals the output, so the sharing and revealing are timed on their
own (an addition, which is local) and subtracted. Prints one JSON line.
"""

import json
import os
import time

import numpy as np
import spu.libspu as libspu
import spu.utils.simulation as spsim


def _best(f, *args, reps: int = 3) -> float:
    f(*args)  # compile
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    n = int(os.environ.get("BENCH_N", str(1 << 20)))
    ncmp = int(os.environ.get("BENCH_NCMP", str(1 << 20)))
    sim = spsim.Simulator.simple(2, libspu.ProtocolKind.SEMI2K, libspu.FieldType.FM64)
    rng = np.random.default_rng(7)
    x, y = (rng.normal(scale=100, size=n).astype(np.float32) for _ in range(2))
    add = spsim.sim_jax(sim, lambda a, b: a + b)
    mul = spsim.sim_jax(sim, lambda a, b: a * b)
    lt = spsim.sim_jax(sim, lambda a, b: a < b)
    base = _best(add, x, y)
    t_mul = max(_best(mul, x, y) - base, 1e-9)
    base_c = _best(add, x[:ncmp], y[:ncmp])
    t_cmp = max(_best(lt, x[:ncmp], y[:ncmp]) - base_c, 1e-9)
    print(
        json.dumps(
            {
                "fixed_point_mul_per_s": n / t_mul,
                "comparisons_per_s": ncmp / t_cmp,
                "setup": "SPU simulator, 2 parties SEMI2K FM64, threads in one process",
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
