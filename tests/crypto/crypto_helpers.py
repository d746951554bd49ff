"""Helpers for the core's tests: vector files and Arrow-style item batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rainbridge import _core

VECTORS = Path(__file__).resolve().parents[2] / "rust" / "tests" / "vectors"
BACKENDS = ["portable"] + (["avx512ifma"] if _core.build_info()["avx512ifma"] else [])


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def items(values: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(v) for v in values])
    return b"".join(values), offsets
