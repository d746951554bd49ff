"""``python -m rainbridge.bench x25519``: throughput of the core's group operations.

Compares the AVX-512 IFMA back end, the portable one, and OpenSSL's X25519 (through the
``cryptography`` package, one ladder at a time, as a single-threaded reference).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from rainbridge import _core
from rainbridge.bench.common import machine, median


def _rate(fn: Any, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(n / median(times))


def bench(args: Any) -> dict[str, Any]:
    """Per-second rates of X25519 multiply and hash-then-multiply on each back end, of
    ristretto255, and of OpenSSL's X25519 one ladder at a time (median of ``args.repeat``)."""
    n = args.n
    data = os.urandom(16 * n)
    offsets = np.arange(0, 16 * n + 1, 16, dtype=np.int64)
    k = _core.x25519_random_scalar()
    points = _core.x25519_hash_to_point(data, offsets)
    threads = _core.build_info()["threads"]
    out: dict[str, Any] = {"benchmark": "x25519", "n": n, "threads": threads,
                           "machine": machine(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    backends = ["portable"] + (["avx512ifma"] if _core.build_info()["avx512ifma"] else [])
    for be in backends:
        out[be] = {
            "mul_per_s": _rate(lambda be=be: _core.x25519_mul(k, points, be), n, args.repeat),
            "hash_mul_per_s": _rate(
                lambda be=be: _core.x25519_hash_mul(k, data, offsets, be), n, args.repeat
            ),
        }
        out[be]["mul_per_s_per_core"] = round(out[be]["mul_per_s"] / threads)
    rk = _core.ristretto_random_scalar()
    rpoints = _core.ristretto_hash_to_group(data, offsets, b"bench")
    out["ristretto255"] = {
        "mul_per_s": _rate(lambda: _core.ristretto_mul(rk, rpoints), n, args.repeat),
        "hash_mul_per_s": _rate(
            lambda: _core.ristretto_hash_mul(rk, data, offsets, b"bench"), n, args.repeat
        ),
    }
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    m = min(n, 20000)
    sk = X25519PrivateKey.from_private_bytes(k)
    pubs = [X25519PublicKey.from_public_bytes(points[32 * i : 32 * i + 32]) for i in range(m)]

    def openssl() -> None:
        for p in pubs:
            sk.exchange(p)

    out["openssl_one_thread"] = {"mul_per_s": _rate(openssl, m, args.repeat)}
    # What the protocols get by default (RAINBRIDGE_DISABLE_IFMA=1 forces "portable").
    out["default_backend"] = _core.x25519_backend()
    best = backends[-1]
    if best != "portable":
        out["ratio_ifma_over_portable"] = round(
            out[best]["mul_per_s"] / out["portable"]["mul_per_s"], 2
        )
    out["ratio_core_per_core_over_openssl"] = round(
        out[best]["mul_per_s_per_core"] / out["openssl_one_thread"]["mul_per_s"], 2
    )
    return out
