"""A SecureBoost feature party's encrypted histograms, two features at a time.

Summed one feature at a time, every row's ciphertext is multiplied into one cell per
feature: rows × features modular multiplications, the bulk of a feature party's work. Two
features *a* and *b* together cost about half: first the joint histogram of the pair (each
row's ciphertext into the cell (bin of a, bin of b) of its node: one multiplication per row
for both features), then each feature's histogram as a marginal of that table (n_bins²
multiplications per feature and node, whatever the node's rows). A node of m rows costs
m + about 4·n_bins² multiplications for the pair instead of 2m, so only nodes of at least
``4 · n_bins²`` rows (the root and the upper levels) are summed by pairs; the others one
feature at a time.

Nothing changes on the wire: the joint tables never leave the party; only the marginals
do, re-randomised once, exactly the sums the one-feature-at-a-time way computes under fresh
randomness, so the label party decrypts the same histograms and grows the same trees.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rainbridge._core import OuCiphertexts, OuPublicKey

#: bytes of one Okamoto–Uchiyama ciphertext on the wire
CT_BYTES = 256


def kept_cells(n_splits: list[int], missing: list[bool], n_bins: int) -> npt.NDArray[np.bool_]:
    """features × n_bins: the bins that can hold rows, so the only ones a feature party
    sends and the label party decrypts — a feature's bins up to its number of splits, and
    the last bin (missing values) only for a feature with missing values."""
    keep = np.arange(n_bins)[None, :] <= np.asarray(n_splits, dtype=np.int64)[:, None]
    keep[:, n_bins - 1] |= np.asarray(missing, dtype=bool)
    return keep


def pair_min_rows(n_bins: int) -> int:
    """Rows from which a node is summed by pairs of features: the pair's extra cost, about
    four multiplications per cell of its joint table (out, in and into two marginals), is
    then below the rows it saves."""
    return 4 * n_bins * n_bins


def histograms(
    pk: OuPublicKey,
    cts: OuCiphertexts,
    bins: npt.NDArray[np.uint8],
    node_of_row: npt.NDArray[np.int32],
    nodes: npt.NDArray[np.int32],
    n_bins: int,
    min_rows: int | None = None,
) -> bytes:
    """Re-randomised encrypted sums, nodes × features × n_bins ciphertexts (the layout of
    ``cts.histogram``): ``bins`` rows × features (row-major), ``node_of_row`` each row's
    node (one not in ``nodes``: no node's). ``min_rows`` overrides :func:`pair_min_rows`."""
    features = bins.shape[1]
    nodes = np.asarray(nodes, dtype="<i4")
    if len(np.unique(nodes)) != len(nodes) or (nodes < 0).any():
        raise ValueError("histogram nodes must be distinct and not negative")
    node_of_row = np.ascontiguousarray(node_of_row, dtype="<i4")
    threshold = pair_min_rows(n_bins) if min_rows is None else min_rows
    # each requested node's slot; rows of other nodes (or none, -1) map to -1
    top = int(max(int(nodes.max(initial=0)), int(node_of_row.max(initial=0)))) + 1
    slot_of = np.full(top + 1, -1, dtype=np.int64)
    slot_of[nodes] = np.arange(len(nodes))
    slot = slot_of[np.where(node_of_row >= 0, node_of_row, top)]
    counts = np.bincount(slot[slot >= 0], minlength=len(nodes))
    big = np.flatnonzero(counts >= max(threshold, 1)) if features >= 2 else np.zeros(0, int)
    if len(big) == 0:
        return cts.histogram(bins, features, node_of_row, nodes, n_bins)
    out = np.empty((len(nodes), features, n_bins, CT_BYTES), dtype=np.uint8)
    small = np.setdiff1d(np.arange(len(nodes)), big)
    if len(small):
        part = cts.histogram(bins, features, node_of_row, nodes[small], n_bins)
        out[small] = np.frombuffer(part, np.uint8).reshape(len(small), features, n_bins, -1)
    # rows of the big nodes by their slot among them (-1: not in a big node)
    big_slot = np.full(len(nodes) + 1, -1, dtype=np.int64)
    big_slot[big] = np.arange(len(big))
    sb = big_slot[slot]  # slot -1 reads the sentinel at the end
    inside = sb >= 0
    pairs = [(a, a + 1) for a in range(0, features - 1, 2)]
    if features % 2:
        # the odd feature out joins the last pair's first (whose marginal comes out twice,
        # the same sums): alone, one node's one feature would be one task, one core
        pairs.append((features - 3, features - 1))
    cells = len(big) * n_bins  # pseudo-nodes of one pair's joint table: (node, bin of a)
    pseudo_nodes = np.arange(cells, dtype="<i4")
    tables = []
    for a, b in pairs:
        pseudo = np.where(inside, sb * n_bins + bins[:, a], -1).astype("<i4")
        col = np.ascontiguousarray(bins[:, b])
        # the joint table stays here: no re-randomisation until its marginals leave
        tables.append(cts.histogram(col, 1, pseudo, pseudo_nodes, n_bins, False))
    joint = pk.load(b"".join(tables))  # (pair, node, bin of a, bin of b)
    groups = len(pairs) * len(big)
    bin_a = np.tile(np.repeat(np.arange(n_bins), n_bins), groups)
    bin_b = np.tile(np.arange(n_bins), groups * n_bins)
    cell_bins = np.ascontiguousarray(np.stack([bin_a, bin_b], axis=1).astype(np.uint8))
    group = np.repeat(np.arange(groups, dtype="<i4"), n_bins * n_bins)
    marg = joint.histogram(cell_bins, 2, group, np.arange(groups, dtype="<i4"), n_bins)
    m = np.frombuffer(marg, np.uint8).reshape(len(pairs), len(big), 2, n_bins, CT_BYTES)
    for i, (a, b) in enumerate(pairs):
        out[big, a] = m[i, :, 0]
        out[big, b] = m[i, :, 1]
    return out.tobytes()
