"""The parts of a vertical tree model that stand apart from training: equal-frequency binning
of one party's features, one party's view of a tree (:class:`TreePart`), and joint
prediction by leaf marks — each party marks, per tree, the leaves a row can reach given only
its own splits; the label party ANDs the marks (one leaf per tree remains) and adds the
leaf weights. Used by SecureBoost's training, the ``predict`` component and online scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError, ProtocolViolationError

# -- binning ----------------------------------------------------------------------------------


@dataclass
class Binned:
    """Each feature's values as bin numbers: bin b <= len(edges) holds values in
    (edges[b-1], edges[b]]; the last column (``n_bins - 1``) holds missing values."""

    bins: npt.NDArray[np.uint8]  # rows × features, C order
    edges: list[npt.NDArray[np.float64]]
    n_bins: int

    @property
    def n_splits(self) -> list[int]:
        return [len(e) for e in self.edges]


def bin_features(x: npt.NDArray[np.float64], max_bin: int) -> Binned:
    """Equal-frequency bins (at most ``max_bin`` per feature) from the feature's own values."""
    n, f = x.shape
    bins = np.empty((n, f), dtype=np.uint8)
    edges: list[npt.NDArray[np.float64]] = []
    qs = np.arange(1, max_bin) / max_bin
    for j in range(f):
        col = x[:, j]
        ok = ~np.isnan(col)
        vals = col[ok]
        if len(vals):
            cut = np.unique(np.quantile(vals, qs, method="lower"))
            cut = cut[cut < vals.max()]  # a cut at the maximum splits nothing off
        else:
            cut = np.zeros(0)
        edges.append(cut.astype(np.float64))
        b = np.full(n, max_bin, dtype=np.int64)
        b[ok] = np.searchsorted(cut, vals, side="left")
        bins[:, j] = b
    return Binned(np.ascontiguousarray(bins), edges, max_bin + 1)


# -- trees ------------------------------------------------------------------------------------


@dataclass
class TreePart:
    """One party's view of one tree: who owns each internal node (heap numbering: the
    children of i are 2i+1 and 2i+2), its own splits, the leaves and (at the label party)
    their weights."""

    owner: dict[int, str]
    splits: dict[int, tuple[int, float]]  # node -> (own feature index, threshold)
    leaves: list[int]
    weights: dict[int, float] = field(default_factory=dict)
    cls: int = 0

    def reach(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """rows × leaves: the leaves each row can reach knowing only this party's splits
        (a missing value goes right)."""
        n = len(x)
        at: dict[int, npt.NDArray[np.bool_]] = {0: np.ones(n, dtype=bool)}
        for node in sorted(self.owner):  # a parent's number is below its children's
            r = at.pop(node, None)
            if r is None:
                raise ProtocolViolationError(f"tree node {node} has no parent")
            if node in self.splits:
                f, thr = self.splits[node]
                left = x[:, f] <= thr  # NaN compares False: right
                at[2 * node + 1], at[2 * node + 2] = r & left, r & ~left
            else:
                at[2 * node + 1], at[2 * node + 2] = r, r
        try:
            return (
                np.column_stack([at[leaf] for leaf in self.leaves])
                if self.leaves
                else (np.ones((n, 1), dtype=bool))
            )
        except KeyError:
            raise ProtocolViolationError("a tree's leaves do not match its nodes") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "owner": {str(k): v for k, v in self.owner.items()},
            "splits": {str(k): [f, t] for k, (f, t) in self.splits.items()},
            "leaves": self.leaves,
            "class": self.cls,
        }
        if self.weights:
            out["weights"] = {str(k): v for k, v in self.weights.items()}
        return out

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> TreePart:
        try:
            return TreePart(
                owner={int(k): str(v) for k, v in d["owner"].items()},
                splits={int(k): (int(v[0]), float(v[1])) for k, v in d["splits"].items()},
                leaves=[int(v) for v in d["leaves"]],
                weights={int(k): float(v) for k, v in d.get("weights", {}).items()},
                cls=int(d.get("class", 0)),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ConfigError("a malformed SecureBoost tree") from None


def leaf_marks(trees: Sequence[TreePart], x: npt.NDArray[np.float64]) -> bytes:
    """Every tree's reachable leaves for every row, bit-packed row by row (what a party sends
    the label party to predict)."""
    cols = [t.reach(x) for t in trees]
    if not cols:
        return b""
    return np.packbits(np.hstack(cols), axis=1).tobytes()


def combine_marks(
    trees: Sequence[TreePart],
    base: npt.NDArray[np.float64],
    marks: Sequence[npt.NDArray[np.bool_]],
    rows: int,
) -> npt.NDArray[np.float64]:
    """The label party's raw scores (rows × outputs) from its own and the others' marks
    (each rows × total leaves): the one leaf per tree all parties allow, weights summed."""
    out = np.tile(base, (rows, 1)).astype(np.float64)
    allowed = np.ones((rows, sum(max(len(t.leaves), 1) for t in trees)), dtype=bool)
    for m in marks:
        if m.shape != allowed.shape:
            raise ProtocolViolationError("leaf marks of the wrong shape")
        allowed &= m
    at = 0
    for t in trees:
        k = max(len(t.leaves), 1)
        block = allowed[:, at : at + k]
        at += k
        if not t.leaves:
            continue
        if not (block.sum(axis=1) == 1).all():
            raise ProtocolViolationError("the parties' leaf marks do not single out one leaf")
        w = np.array([t.weights.get(leaf, 0.0) for leaf in t.leaves])
        out[:, t.cls] += w[block.argmax(axis=1)]
    return out


def unpack_marks(data: bytes, rows: int, trees: Sequence[TreePart]) -> npt.NDArray[np.bool_]:
    width = sum(max(len(t.leaves), 1) for t in trees)
    per_row = (width + 7) // 8
    if len(data) != rows * per_row:
        raise ProtocolViolationError(
            f"leaf marks of {len(data)} bytes; {rows} rows × {per_row} expected"
        )
    if rows == 0:
        return np.zeros((0, width), dtype=bool)
    a = np.frombuffer(data, dtype=np.uint8).reshape(rows, per_row)
    return np.unpackbits(a, axis=1, count=width).astype(bool)


def link(raw: npt.NDArray[np.float64], objective: str) -> npt.NDArray[np.float64]:
    """Scores from raw margins: probabilities (binary: of class 1; multiclass: per class)."""
    if objective == "binary":
        return sigmoid(raw[:, 0])
    if objective == "multiclass":
        return softmax(raw)
    return raw[:, 0]


def sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
