"""``python -m rainbridge.bench pir-lattice``: lattice keyword PIR (SimplePIR) in one process.

Builds a table of random tags and payloads (version 8 bytes ‖ a label), lays it out and
computes the hint, then looks IDs up one at a time as a client would (two query vectors per
ID, answered in one batch): the client's query and decode times, the server's answer time and
the message sizes. Every answer is opened and compared with the table (a fifth of the IDs are
absent and must read as absent). Beside the answer time it times a plain streaming pass over
the same matrix (numpy, one thread) in the same run, as the memory-bandwidth reference.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rainbridge import _core
from rainbridge.bench.common import machine, median, peak_rss_mib
from rainbridge.protocols.pir.lattice import LWE_N, LatticeClient, LatticeDb


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def bench(args: Any) -> dict[str, Any]:
    n, width, asked = args.rows, 8 + args.label_bytes, max(1, args.queries)
    rng = np.random.default_rng(7)
    tags = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    tags[:, 0] |= 1  # never the empty slot's all-zero tag
    payloads = rng.integers(0, 256, (n, width), dtype=np.uint8)
    t0 = time.perf_counter()
    db = LatticeDb.build(tags, payloads, max_hint_bytes=int(args.max_hint_mb * (1 << 20)))
    build_s = time.perf_counter() - t0
    lay = db.layout
    client = LatticeClient(lay, db.hint, db.version)

    absent = rng.integers(0, 256, (asked, 16), dtype=np.uint8)
    absent[:, 0] |= 1
    picks = rng.integers(0, n, asked)
    query_ms, answer_ms, decode_ms, read_ms = [], [], [], []
    wrong = 0
    for i in range(asked):
        is_absent = i % 5 == 4
        tag = absent[i : i + 1] if is_absent else tags[picks[i] : picks[i] + 1]
        t = time.perf_counter()
        q, state = client.queries(tag)
        query_ms.append(_ms(t))
        t = time.perf_counter()
        ans = db.answer(q)
        answer_ms.append(_ms(t))
        t = time.perf_counter()
        got = client.read(state, ans, tag)[0]
        decode_ms.append(_ms(t))
        want = None if is_absent else payloads[picks[i]].tobytes()
        wrong += got != want
    for _ in range(3):
        t = time.perf_counter()
        np.count_nonzero(db._db)
        read_ms.append(_ms(t))
    if wrong:
        raise AssertionError(f"{wrong} of {asked} lattice PIR lookups read a wrong payload")
    answer = median(answer_ms)
    matrix_bytes = lay.rows * lay.cols
    return {
        "benchmark": "pir-lattice",
        "rows": n,
        "label_bytes": args.label_bytes,
        "queries": asked,
        "backend": _core.lwe_backend(),
        "threads": _core.build_info()["threads"],
        "layout": {
            "l": lay.rows,
            "m": lay.cols,
            "slot_bytes": lay.slot_bytes,
            "slots_per_col": lay.slots_per_col,
            "load": round(n / (lay.cols * lay.slots_per_col), 3),
        },
        "build_s": round(build_s, 2),
        "matrix_bytes": matrix_bytes,
        "hint_bytes": lay.rows * LWE_N * 4,
        "query_bytes_per_id": 2 * lay.cols * 4,
        "answer_bytes_per_id": 2 * lay.rows * 4,
        "client_query_ms": round(median(query_ms), 2),
        "server_answer_ms": round(answer, 2),
        "server_answer_gb_per_s": round(matrix_bytes / answer / 1e6, 2),
        "client_decode_ms": round(median(decode_ms), 2),
        "reference_numpy_pass_ms": round(median(read_ms), 2),
        "answer_over_numpy_pass": round(answer / median(read_ms), 2),
        "all_correct": True,
        "peak_rss_mib": round(peak_rss_mib()),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
