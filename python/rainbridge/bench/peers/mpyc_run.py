"""MPyC's side of the MPC benchmark (run in the peer environment, three processes).

MPyC reads its own command line (``-M3 -I i``), so the sizes come from the environment:
BENCH_N (integer multiplications), BENCH_NFX (fixed-point multiplications), BENCH_NCMP
(comparisons). Party 0 prints one JSON line. Honest-majority Shamir sharing over three
parties (MPyC's default), as its figures are usually quoted.
"""

import json
import os
import time

import numpy as np
from mpyc.runtime import mpc


async def main() -> None:
    n = int(os.environ.get("BENCH_N", "100000"))
    nfx = int(os.environ.get("BENCH_NFX", "2000"))
    ncmp = int(os.environ.get("BENCH_NCMP", "1000"))
    await mpc.start()
    secint = mpc.SecInt(64)
    secfxp = mpc.SecFxp(64)
    rng = np.random.default_rng(7)
    x = mpc.input(secint.array(rng.integers(-(2**20), 2**20, n)), senders=0)
    f = mpc.input(secfxp.array(rng.normal(size=nfx)), senders=0)
    await mpc.barrier()
    t0 = time.perf_counter()
    await mpc.output((x * x)[:1])
    t_mul = time.perf_counter() - t0
    t0 = time.perf_counter()
    await mpc.output((f * f)[:1])
    t_fx = time.perf_counter() - t0
    t0 = time.perf_counter()
    await mpc.output((x[:ncmp] < 0)[:1])
    t_cmp = time.perf_counter() - t0
    await mpc.shutdown()
    if mpc.pid == 0:
        print(
            json.dumps(
                {
                    "integer_mul_per_s": round(n / t_mul),
                    "fixed_point_mul_per_s": round(nfx / t_fx),
                    "comparisons_per_s": round(ncmp / t_cmp),
                    "n": n,
                    "n_fixed_point": nfx,
                    "n_cmp": ncmp,
                }
            ),
            flush=True,
        )


mpc.run(main())
