"""Shared pieces of the benchmarks: deterministic inputs, machine facts, process helpers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa


def make_ids(n: int, m: int, overlap: float, side: str, seed: int = 1) -> pa.Array:
    """IDs of party ``a`` (n of them) or ``b`` (m), ``overlap`` * min(n, m) in common.

    IDs look like 18-character customer numbers; the common ones are the same strings at both
    parties, the rest are disjoint. Deterministic for a given seed, and made without a Python
    object per ID.
    """
    common = int(min(n, m) * overlap)
    if side == "a":
        nums = np.concatenate([np.arange(common), np.arange(common, n) + (1 << 40)])
    else:
        nums = np.concatenate([np.arange(common), np.arange(common, m) + (1 << 41)])
    rng = np.random.default_rng(seed + (0 if side == "a" else 1))
    rng.shuffle(nums)
    return _format_ids(nums)


def _format_ids(nums: np.ndarray) -> pa.Array:
    # "CN" + 16 decimal digits, written straight into one Arrow data buffer.
    width = 18
    data = np.empty((len(nums), width), dtype=np.uint8)
    data[:, 0], data[:, 1] = ord("C"), ord("N")
    for pos in range(width - 1, 1, -1):
        data[:, pos] = (nums % 10).astype(np.uint8) + ord("0")
        nums //= 10
    offsets = np.arange(0, width * len(data) + 1, width, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def id_batches(
    n: int, m: int, overlap: float, side: str, batch: int = 1 << 21
) -> tuple[int, Iterator[pa.Array]]:
    """The same kind of IDs as :func:`make_ids`, made batch by batch (for 10^8 and more).

    Row ``i`` of party a is customer number ``i`` (``i + 2^40`` past the common part), of party
    b ``i`` (``i + 2^41`` past it): the common IDs come first, each batch in a random order.
    """
    common = int(min(n, m) * overlap)
    rows = n if side == "a" else m
    offset = (1 << 40) if side == "a" else (1 << 41)

    def gen() -> Iterator[pa.Array]:
        rng = np.random.default_rng(7 + (0 if side == "a" else 1))
        for lo in range(0, rows, batch):
            nums = np.arange(lo, min(rows, lo + batch), dtype=np.int64)
            nums[nums >= common] += offset
            rng.shuffle(nums)
            yield _format_ids(nums)

    return rows, gen()


def write_ids_csv(ids: pa.Array, path: str | os.PathLike[str]) -> None:
    """Write IDs from :func:`make_ids` as a one-column CSV (header ``id``) for the peers.

    The peers then read the very strings our parties use, in the same order. The IDs are
    fixed-width, so the file is the data buffer with a newline appended to each row.
    """
    width = 18
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[: width * len(ids)]
    rows = np.empty((len(ids), width + 1), dtype=np.uint8)
    rows[:, :width] = data.reshape(len(ids), width)
    rows[:, width] = ord("\n")
    with open(path, "wb") as f:
        f.write(b"id\n")
        f.write(rows.tobytes())


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            info["memory_gib"] = round(kib / (1 << 20), 1)
    except OSError:
        pass
    try:
        from rainbridge import _core
        from rainbridge.crypto.groups import build_info

        info["core"] = build_info()
        # The core is rebuilt under a running checkout; when it was built tells which code
        # a figure measured better than the commit alone.
        built = os.path.getmtime(_core.__file__)
        info["core"]["built"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built))
    except ImportError:
        info["core"] = None
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    info["source"] = source_version()
    return info


def source_version() -> str | None:
    """The git commit measured, with ``+dirty`` when the working tree has changes (the core
    and protocol change under the benchmark; a figure must say which code made it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def peak_rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command that prints one JSON document last; return it (or an error record)."""
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return dict(json.loads(lines[-1]))


def median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


PY = sys.executable
