"""``python -m rainbridge.bench he``: additively homomorphic encryption for SecureBoost — the
core's Okamoto–Uchiyama beside SecretFlow's sf-heu OU (``--peers heu``, from ``.venv-heu``:
``scripts/bench-heu-env.sh``) and python-paillier (``--peers phe``, from the peers'
environment). 2048-bit keys everywhere.

Per value, on one core: each library's process is pinned to one CPU (and the core's rayon
pool to one thread); the rounds alternate ours and the peers' so that a noisy neighbour
slows both alike, and every figure is the median of ``--repeat`` rounds. Ours packs several
signed slots into one plaintext, so values/s = ciphertexts/s × slots; the layouts:

- ``pair``: 2 slots of 100 bits (SecureBoost's gradient and hessian in one ciphertext);
- ``full``: 8 slots of 85 bits, the whole 680-bit plaintext: 64-bit fixed-point values with 21
  bits of headroom, so sums of up to 2^20 of them stay exact (4 gradient–hessian pairs).

sf-heu is measured with its integer encoder (one value per ciphertext) and its batch encoder
(two int64 per ciphertext, what SecretFlow's SecureBoost uses). ``encrypt`` is ours at the key
owner (``OuSecretKey.encrypt_packed``, by CRT), ``encrypt_public`` at a public key's holder;
sf-heu's encryptor holds only the public key.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from rainbridge.bench.common import machine

LAYOUTS = {"pair": (2, 100), "full": (8, 85)}

OURS = r"""
import json, sys, time
import numpy as np
from rainbridge._core import OuSecretKey
n, m = int(sys.argv[1]), int(sys.argv[2])
layouts = json.loads(sys.argv[3])
sk = OuSecretKey.generate(2048); pk = sk.public_key()
out = {}
for name, (slots, bits) in layouts.items():
    hi = 2 ** min(63, bits - 22) - 1  # 64-bit values at most; room for sums
    v = np.random.default_rng(1).integers(-hi, hi, size=(n, slots), dtype="<i8")
    # float64 round to nearest and doubling is exact: compare sums as the core returns them
    want = v.astype(np.float64)
    t = time.perf_counter(); ct = sk.encrypt_packed(v, slots, bits); s_enc = time.perf_counter() - t
    k = min(n, m)
    t = time.perf_counter(); pct = pk.encrypt_packed(v[:k], slots, bits)
    s_pub = time.perf_counter() - t
    t = time.perf_counter(); total = pk.add(ct, ct); s_add = time.perf_counter() - t
    rows = pk.load(ct)
    bins = np.random.default_rng(2).integers(0, 32, size=(n, 15)).astype(np.uint8)
    t = time.perf_counter()
    rows.histogram(bins, 15, np.zeros(n, dtype="<i4"), np.zeros(1, dtype="<i4"), 32, False)
    s_hist = time.perf_counter() - t
    t = time.perf_counter(); d = sk.decrypt_packed(total[: 256 * k], slots, bits, 0)
    s_dec = time.perf_counter() - t
    ok = bool((np.frombuffer(d).reshape(-1, slots) == 2 * want[:k]).all())
    ok &= bool((np.frombuffer(sk.decrypt_packed(pct, slots, bits, 0)).reshape(-1, slots)
                == want[:k]).all())
    out[name] = {"slots": slots, "slot_bits": bits,
                 "encrypt_per_s": n * slots / s_enc, "encrypt_public_per_s": k * slots / s_pub,
                 "add_per_s": n * slots / s_add, "histogram_add_per_s": n * 15 * slots / s_hist,
                 "decrypt_per_s": k * slots / s_dec, "correct": ok}
print(json.dumps(out))
"""

HEU = r"""
import json, sys, time
import numpy as np
from heu import numpy as hnp, phe
n, m = int(sys.argv[1]), int(sys.argv[2])
kit = hnp.setup(phe.SchemaType.OU, 2048)
enc, ev, dec = kit.encryptor(), kit.evaluator(), kit.decryptor()
out = {}
for name, width, encoder in [("integer", 1, kit.integer_encoder()),
                             ("batch", 2, kit.batch_integer_encoder())]:
    v = np.random.default_rng(1).integers(-2**40, 2**40, size=(n, width)).astype(np.int64)
    pt = kit.array(v[:, 0] if width == 1 else v, encoder)
    t = time.perf_counter(); ct = enc.encrypt(pt); s_enc = time.perf_counter() - t
    t = time.perf_counter(); total = ev.add(ct, ct); s_add = time.perf_counter() - t
    k = min(n, m)
    part = total[:k]
    t = time.perf_counter(); d = dec.decrypt(part); s_dec = time.perf_counter() - t
    got = np.asarray(d.to_numpy(encoder), dtype=np.int64).reshape(k, width)
    out[name] = {"values_per_ciphertext": width, "encrypt_per_s": n * width / s_enc,
                 "add_per_s": n * width / s_add, "decrypt_per_s": k * width / s_dec,
                 "correct": bool((got == 2 * v[:k]).all())}
import importlib.metadata as md
out["version"] = md.version("sf-heu")
print(json.dumps(out))
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


def _run(python: str, script: str, argv: list[str], one_core: bool) -> dict[str, Any]:
    env = dict(os.environ)
    cpu = min(os.sched_getaffinity(0))

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    if one_core:
        env["RAYON_NUM_THREADS"] = "1"
    else:
        env.pop("RAYON_NUM_THREADS", None)
    r = subprocess.run(
        [python, "-c", script, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        preexec_fn=pin if one_core else None,
    )
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key medians of the rounds' figures (nested by layout); flags must all hold."""
    if not runs or any("error" in r for r in runs):
        return next((r for r in runs if "error" in r), {"error": "no runs"})
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        vals = [r[key] for r in runs]
        if isinstance(first, dict):
            out[key] = _median(vals)
        elif isinstance(first, bool):
            out[key] = all(vals)
        elif isinstance(first, (int, float)) and key.endswith("_per_s"):
            out[key] = round(statistics.median(vals), 1)
            out[key.removesuffix("_per_s") + "_rounds"] = [round(v, 1) for v in vals]
        else:
            out[key] = first
    return out


def _ratios(ours: dict[str, Any], heu: dict[str, Any]) -> dict[str, Any]:
    """Ours over sf-heu, values per second on one core, per layout and sf-heu encoder."""
    out: dict[str, Any] = {}
    for layout in LAYOUTS:
        for encoder in ("integer", "batch"):
            o, h = ours.get(layout, {}), heu.get(encoder, {})
            out[f"{layout}_vs_heu_{encoder}"] = {
                op: round(o[f"{op}_per_s"] / h[f"{op}_per_s"], 2)
                for op in ("encrypt", "add", "decrypt")
                if f"{op}_per_s" in o and h.get(f"{op}_per_s")
            }
    return out


def bench(args: Any) -> dict[str, Any]:
    peers = {p.strip() for p in args.peers.split(",") if p.strip()} - {"none"}
    heu_py = Path(args.heu_venv) / "bin" / "python"
    phe_py = Path(args.peers_venv) / "bin" / "python"
    layouts = json.dumps(LAYOUTS)
    ours_argv = [str(args.n), str(args.n_decrypt), layouts]
    heu_argv = [str(args.n), str(args.n_decrypt)]
    ours_runs: list[dict[str, Any]] = []
    heu_runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        ours_runs.append(_run(sys.executable, OURS, ours_argv, True))
        if "heu" in peers and heu_py.exists():
            heu_runs.append(_run(str(heu_py), HEU, heu_argv, True))
    ours = _median(ours_runs)
    out: dict[str, Any] = {
        "benchmark": "he",
        "machine": machine(),
        "setup": "2048-bit keys; values per second on one pinned core, medians of "
        f"{args.repeat} alternating rounds; ours: layouts {LAYOUTS} (slots, slot_bits), "
        "values/s = ciphertexts/s × slots; add = element-wise sums of two ciphertext arrays, "
        "histogram_add = accumulation into 15 features × 32 bins",
        "rainbridge_ou": {
            "one_core": ours,
            "all_cores": _run(sys.executable, OURS, ours_argv, False),
        },
    }
    if "heu" in peers:
        if heu_runs:
            out["sf_heu_ou"] = _median(heu_runs)
            if "error" not in ours and "error" not in out["sf_heu_ou"]:
                out["ratios_one_core"] = _ratios(ours, out["sf_heu_ou"])
        else:
            out["sf_heu_ou"] = {
                "skipped": f"no {args.heu_venv} (scripts/bench-heu-env.sh installs sf-heu)"
            }
    if "phe" in peers:
        if phe_py.exists():
            out["phe"] = _run(str(phe_py), PHE, [str(args.n_phe)], True)
        else:
            out["phe"] = {"skipped": f"no {args.peers_venv} (make bench-peers installs phe)"}
    return out
