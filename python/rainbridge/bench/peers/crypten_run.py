"""CrypTen's side of the MPC benchmark (run in the CrypTen environment, two processes).

CrypTen 0.4.1 (the last release) with torch 2.13 on the CPU: two parties as processes that
``crypten.mpc.run_multiprocess`` starts, talking through torch.distributed's gloo backend
over loopback TCP (no TLS), triples from CrypTen's default trusted first party. Fixed point
with 16 fractional bits over Z_2^64. Party 0 prints one JSON line.

CrypTen 0.4.1 imports ``torch.onnx._internal.registration`` (its ONNX model converter), which
later torch releases removed; the benchmark never converts a model, so an empty stand-in
module lets CrypTen import. Nothing else is patched.
"""

import json
import os
import sys
import time
import types

_shim = types.ModuleType("torch.onnx._internal.registration")
_shim.registry = None  # type: ignore[attr-defined]
sys.modules.setdefault("torch.onnx._internal.registration", _shim)

import crypten  # noqa: E402
import crypten.communicator as comm  # noqa: E402
import crypten.mpc as cmpc  # noqa: E402
import torch  # noqa: E402


def _median(f, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@cmpc.run_multiprocess(world_size=2)
def bench() -> None:
    n = int(os.environ.get("BENCH_N", str(1 << 20)))
    ncmp = int(os.environ.get("BENCH_NCMP", str(1 << 20)))
    torch.manual_seed(7)
    x = crypten.cryptensor(torch.randn(n) * 100)
    y = crypten.cryptensor(torch.randn(n) * 100)
    _ = x * y  # warm up
    t_mul = _median(lambda: x * y)
    xc, yc = x[:ncmp], y[:ncmp]
    t_cmp = _median(lambda: xc < yc)
    if comm.get().get_rank() == 0:
        print(
            json.dumps(
                {
                    "fixed_point_mul_per_s": n / t_mul,
                    "comparisons_per_s": ncmp / t_cmp,
                    "torch": torch.__version__,
                    "setup": "CrypTen 2 processes, gloo over loopback TCP, no TLS",
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench()
