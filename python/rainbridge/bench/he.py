"""``python -m rainbridge.bench he``: additively homomorphic encryption for SecureBoost — the
core's Okamoto–Uchiyama at one core and at all cores, and python-paillier (``phe``, with
gmpy2) from the peers' environment (``make bench-peers``) when it is there. 2048-bit keys.

Each measurement runs in its own process, so that ``RAYON_NUM_THREADS`` takes effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rainbridge.bench.common import machine

OURS = r"""
import json, sys, time
import numpy as np
from rainbridge._core import OuSecretKey
n = int(sys.argv[1])
sk = OuSecretKey.generate(2048); pk = sk.public_key()
v = np.random.default_rng(1).integers(-2**40, 2**40, size=(n, 2)).astype("<i8")
t = time.perf_counter(); ct = pk.encrypt_packed(v, 2, 100); enc = n / (time.perf_counter() - t)
rows = pk.load(ct)
bins = np.random.default_rng(2).integers(0, 32, size=(n, 15)).astype(np.uint8)
t = time.perf_counter()
h = rows.histogram(bins, 15, np.zeros(n, dtype="<i4"), np.zeros(1, dtype="<i4"), 32)
add = n * 15 / (time.perf_counter() - t)
m = min(n, 2000)
t = time.perf_counter(); d = sk.decrypt_packed(ct[: 256 * m], 2, 100, 0)
dec = m / (time.perf_counter() - t)
ok = bool((np.frombuffer(d).reshape(-1, 2) == v[:m]).all())
print(json.dumps({"encrypt_per_s": enc, "add_per_s": add, "decrypt_per_s": dec, "correct": ok}))
"""

PHE = r"""
import json, sys, time
from phe import paillier
n = int(sys.argv[1])
pk, sk = paillier.generate_paillier_keypair(n_length=2048)
t = time.perf_counter(); cs = [pk.encrypt(i * 7 - 50) for i in range(n)]
enc = n / (time.perf_counter() - t)
t = time.perf_counter(); s = cs[0]
for _ in range(20):
    for c in cs:
        s = s + c
add = 20 * n / (time.perf_counter() - t)
t = time.perf_counter(); vals = [sk.decrypt(c) for c in cs]
dec = n / (time.perf_counter() - t)
import gmpy2
print(json.dumps({"encrypt_per_s": enc, "add_per_s": add, "decrypt_per_s": dec,
                  "correct": vals == [i * 7 - 50 for i in range(n)], "gmpy2": gmpy2.version()}))
"""


def _run(python: str, script: str, n: int, threads: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    r = subprocess.run(
        [python, "-c", script, str(n)], capture_output=True, text=True, env=env, timeout=1800
    )
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def bench(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "he",
        "machine": machine(),
        "setup": "2048-bit keys; ours packs two signed values (gradient, hessian) per "
        "ciphertext; additions are histogram accumulation (15 features × 32 bins)",
        "rainbridge_ou": {
            "one_core": _run(sys.executable, OURS, args.n, 1),
            "all_cores": _run(sys.executable, OURS, args.n, None),
        },
    }
    peers = Path(args.peers_venv) / "bin" / "python"
    if peers.exists():
        out["phe"] = _run(str(peers), PHE, args.n_phe, None)
    else:
        out["phe"] = {"skipped": f"no {args.peers_venv} (make bench-peers installs phe)"}
    return out
