"""Coverage-guided fuzzing of one decoder of :mod:`rainbridge.bench.fuzz` with atheris
(libFuzzer for Python), an optional tool, never a dependency of the product::

    python -m rainbridge.bench.fuzz --engine atheris --decoder NAME --inputs N [--corpus DIR]

The corpus starts from the decoder's seeds; libFuzzer keeps every input that reaches new code
in ``DIR/NAME`` and writes an input that fails untyped to ``DIR/NAME-crashes`` (replay it
with :func:`rainbridge.bench.fuzz.run_one`; keep it as a regression case in
``tests/fuzz/crashes/NAME/``). libFuzzer exits the process when it is done, so each decoder
runs in a process of its own; the tally is printed as JSON after the last input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run(name: str, inputs: int, seed: int, corpus: Path) -> None:
    """Fuzz decoder ``name`` for ``inputs`` runs; does not return (libFuzzer exits)."""
    import atheris

    from rainbridge.bench import fuzz

    d = fuzz.DECODERS[name]
    seeds = corpus / name
    crashes = corpus / f"{name}-crashes"
    seeds.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(d.seeds()):
        (seeds / f"seed-{i}").write_bytes(s)
        fuzz.run_one(name, s)  # loads every module the decoder reaches before instrumenting
    t = fuzz.Tally()
    started = [0.0]

    def report() -> None:
        print(json.dumps({name: {
            "engine": "atheris", "inputs": t.inputs, "typed_refusals": t.refused,
            "decoded": t.decoded, "not_applicable": t.not_applicable,
            "seconds": round(time.perf_counter() - started[0], 2),
            "corpus": len(os.listdir(seeds)), "crashes": sorted(os.listdir(crashes)),
        }}, indent=2), flush=True)

    def one(data: bytes) -> None:
        t.inputs += 1
        got = fuzz.run_one(name, data[: fuzz.MAX_INPUT])  # anything else propagates: a crash
        setattr(t, got, getattr(t, got) + 1)
        if t.inputs == inputs:  # libFuzzer exits after it without running atexit handlers
            report()

    atheris.instrument_all()
    argv: list[Any] = [sys.argv[0], f"-runs={inputs}", f"-seed={seed + 1}",
                       f"-max_len={fuzz.MAX_INPUT}", "-timeout=10", "-rss_limit_mb=4096",
                       f"-artifact_prefix={crashes}/", "-print_final_stats=1", str(seeds)]
    atheris.Setup(argv, one)
    started[0] = time.perf_counter()  # after instrumenting, which takes a while
    atheris.Fuzz()
