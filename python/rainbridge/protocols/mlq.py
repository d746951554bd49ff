"""The consortium multi-lender query (实时多头): in how many lenders' recent applications does
this ID appear — learnt by the asking lender, and nothing else.

Parties: lenders ``L_1 … L_m`` (each holds its applications of the last ``D`` days and a
long-term secret scalar ``k_i`` of ristretto255) and a *merger* (a node the consortium
designates, e.g. its operator, holding no data).

Build (each window, e.g. daily): every lender hashes its distinct IDs of the window to the
group and masks them with its key, ``H(x)^{k_i}``, in a secret random order; the set then
travels the ring ``L_i → L_{i+1} → … → L_{i-1}``, each adding its key, so it ends as
``H(x)^K`` with ``K = ∏ k_i``. At any hop the sets carry different key products, so no one
can compare two of them before the end. The merger collects the fully masked sets, merges
and shuffles them, and publishes the multiset ``M`` (each value with its multiplicity: in
how many lenders' windows that person is) to every lender.

Query: the asking lender ``q`` sends ``v = a·H(id)`` (``a`` fresh) to every other lender in
turn, each returning ``k_i·v``; it applies its own key and ``a^{-1}``, obtaining
``K·H(id)``, looks up its multiplicity in ``M`` and subtracts its own presence.

Security model: semi-honest, no collusion (in particular not the merger with a querier, nor
two lenders), DDH in ristretto255 with ``H`` a random oracle (hash-to-group of RFC 9380).

What it reveals
---------------
* to the asking lender: the count for the IDs it asks (each query is answered by, metered
  and ledgered at every other lender, who can rate-limit it); and, from ``M``, how many
  people are in exactly ``c`` lenders' windows, for each ``c`` (no identities);
* to every lender: each other lender's window size, and that a query took place (not its ID:
  ``a·H(id)`` is a uniformly random element);
* to the merger: every lender's window size and the sizes of the overlaps among the
  lenders' windows (which fully masked values coincide), never an ID and never a query.

One snapshot
------------
A count is exact for the windows as they were at the build: each lender freezes its window
when it masks it (its distinct IDs, kept at its own node, and :func:`window_digest`, a MAC
under a key derived from its secret key, recorded by the merger with the build); the asking
lender subtracts its presence in its *frozen* window, never its current data. A lender whose
data for that window changed since the build says so (:class:`WindowChangedError`): the
count is refused, or the service rebuilt, as the lenders configured.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rainbridge.crypto import oprf
from rainbridge.crypto.groups import Ristretto255Suite
from rainbridge.errors import DataError
from rainbridge.protocols.psi.items import as_items, distinct_ids, to_large_string

GROUP = Ristretto255Suite(dst=b"rainbridge/mlq/v1/hash-to-group")
ELEMENT = 32
_DIGEST_KEY = b"rainbridge/mlq/v1/window-digest"


class WindowChangedError(DataError):
    """A lender's window changed since the build a count would read: the build's counts no
    longer describe the lenders' data. The message names the lender and the fix (rebuild)."""

    def __init__(self, message: str, *, lender: str, build: str, end: str) -> None:
        super().__init__(message)
        self.lender, self.build, self.end = lender, build, end


class StaleBuildError(DataError):
    """A count named a build that a lender no longer keeps: copy the latest build."""


def new_key() -> bytes:
    return GROUP.random_scalar()


def mask_ids(key: bytes, ids: pa.Array) -> bytes:
    """``k·H(x)`` for each distinct ID, in a secret random order (32 bytes each)."""
    uniq = distinct_ids(to_large_string(ids)).values
    if not len(uniq):
        return b""
    perm = np.random.default_rng(secrets.randbits(128)).permutation(len(uniq))
    shuffled = uniq.take(pa.array(perm))
    items = as_items(to_large_string(shuffled))
    return GROUP.hash_mul(key, items.data, items.offsets)


def remask(key: bytes, values: bytes) -> bytes:
    """Add a key to received elements (each validated: canonical, not the identity)."""
    if len(values) % ELEMENT:
        raise DataError("masked values come in whole 32-byte elements")
    return GROUP.mul(key, values) if values else b""


def ring(lenders: list[str], owner: str) -> list[str]:
    """The lenders a set visits after its owner, in order (the ring from the owner on)."""
    i = lenders.index(owner)
    return lenders[i + 1 :] + lenders[:i]


@dataclass
class Multiset:
    """The merged fully masked values, sorted, with their multiplicities."""

    values: np.ndarray  # (n, 32) uint8, sorted
    counts: np.ndarray  # (n,) int32

    @classmethod
    def merge(cls, sets: list[bytes]) -> Multiset:
        """Merge fully masked sets (one per lender; provenance is dropped here)."""
        if not sets or not any(sets):
            return cls(np.zeros((0, ELEMENT), np.uint8), np.zeros(0, np.int32))
        allv = np.frombuffer(b"".join(sets), dtype=np.uint8).reshape(-1, ELEMENT)
        keys = np.ascontiguousarray(allv).view(f"V{ELEMENT}").reshape(-1)
        uniq, counts = np.unique(keys, return_counts=True)
        return cls(uniq.view(np.uint8).reshape(-1, ELEMENT).copy(), counts.astype(np.int32))

    def count(self, value: bytes) -> int:
        if len(value) != ELEMENT:
            raise DataError("a masked ID is 32 bytes")
        keys = self.values.view(f"V{ELEMENT}").reshape(-1)
        w = np.frombuffer(value, dtype=np.uint8).view(f"V{ELEMENT}")[0]
        at = int(np.searchsorted(keys, w))
        return int(self.counts[at]) if at < len(keys) and keys[at] == w else 0

    def histogram(self) -> dict[int, int]:
        """People per multiplicity: what the multiset reveals to a lender holding it."""
        c, n = np.unique(self.counts, return_counts=True)
        return {int(a): int(b) for a, b in zip(c, n, strict=True)}


@dataclass
class PendingQuery:
    blind: bytes
    element: bytes  # a·H(id), the value sent around


def start_query(ident: str) -> PendingQuery:
    """Blind one ID: ``a·H(id)`` for a fresh ``a``."""
    a = new_key()
    data = ident.encode()
    return PendingQuery(a, GROUP.hash_mul(a, data, np.array([0, len(data)], np.int64)))


def finish_query(q: PendingQuery, evaluated: bytes) -> bytes:
    """Remove the blind from ``K·a·H(id)``: the ID's fully masked value ``K·H(id)``."""
    a = int.from_bytes(q.blind, "little")
    inv = pow(a, oprf.ORDER - 2, oprf.ORDER).to_bytes(32, "little")
    return GROUP.mul(inv, evaluated)


def window_ids(ids: pa.Array, dates: pa.Array, today: np.datetime64, days: int) -> pa.Array:
    """The IDs with a date in the last ``days`` days up to ``today`` (inclusive)."""
    d = dates.cast(pa.date32()) if not pa.types.is_date32(dates.type) else dates
    vals = np.asarray(d.to_numpy(zero_copy_only=False), dtype="datetime64[D]")
    lo = today - np.timedelta64(days - 1, "D")
    keep = (vals >= lo) & (vals <= today)
    return to_large_string(ids).filter(pa.array(keep))


def window_digest(key: bytes, ids: pa.Array) -> tuple[pa.Array, str]:
    """A window's distinct IDs (sorted) and its digest: HMAC-SHA256 of them, under a key
    derived from the lender's secret ``key`` (so no one else can test a guess of the window),
    over their count, lengths and bytes. Two windows have the same digest only if they hold
    the same IDs."""
    arr = pc.drop_null(to_large_string(ids))
    uniq = pc.unique(arr)
    uniq = to_large_string(uniq.take(pc.sort_indices(uniq)))
    items = as_items(uniq)
    offsets = items.offsets.astype("<i8")
    base = int(offsets[0]) if len(offsets) else 0
    data = bytes(items.data)[base : int(offsets[-1])] if len(uniq) else b""
    mac = hmac.new(hashlib.sha256(_DIGEST_KEY + key).digest(), digestmod=hashlib.sha256)
    mac.update(len(uniq).to_bytes(8, "little"))
    mac.update((offsets - base).tobytes())
    mac.update(data)
    return uniq, mac.hexdigest()


def check_elements(values: bytes) -> None:
    """Received elements, validated without masking (the merger's intake)."""
    if len(values) % ELEMENT:
        raise DataError("masked values come in whole 32-byte elements")
    if values:
        GROUP.validate(values)  # InvalidElementError, like every received element
