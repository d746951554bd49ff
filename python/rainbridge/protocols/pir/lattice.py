"""Keyword PIR over the sealed table by single-server lattice PIR (SimplePIR).

The server lays the sealed rows out as *slots* of a byte matrix ``D`` with ``l`` rows and
``m`` columns: a column stacks ``slots_per_col`` slots of ``slot_bytes`` = 16 (the row's tag)
+ payload bytes; empty slots are zero. A row lives in one of two candidate columns given by a
public keyed hash of its tag (AES-128 under the layout's ``hash_key``, each half of the block
reduced mod ``m``; the second moved to the next column when both halves agree), placed by
"power of two choices" with cuckoo eviction at a load of about 0.88. A client that knows a tag
(from its OPRF output) always asks for exactly its two candidate columns, so a present and an
absent ID look the same to the server, reads both whole columns by PIR, and keeps the slot
whose tag is its own.

Scheme and parameters: SimplePIR (Henzinger, Hong, Corrigan-Gibbs, Meiklejohn and
Vaikuntanathan, "One Server for the Price of Two: Simple and Fast Single-Server Private
Information Retrieval", USENIX Security 2023), with the paper's LWE parameters: dimension
``n = 1024``, modulus ``q = 2^32``, a discrete Gaussian error of ``σ = 6.4`` (cut at 10σ),
plaintext modulus ``p = 2^8`` (one byte per entry, ``Δ = 2^24``), 128-bit security by the
lattice estimator for up to ``2^20`` samples, hence ``m ≤ 2^20``. Entries are centred (byte
``b`` is ``b − 128``). The public matrix ``A`` (``m × n``) is AES-128-CTR output under the
layout's ``seed``. The server's one-time hint is ``H = D·A``; a query for column ``j`` is
``A·s + e + Δ·u_j`` (fresh ``s`` each time), the answer ``D·qu``, and the client reads the
column as ``round((ans − H·s) / Δ)``. The kernels are in the native core (``lwe_*``).

Security model: the server is semi-honest and learns nothing about which columns a client
asks beyond their number (two per ID), under the LWE assumption; it still sees when and how
often a client asks. The client learns the whole of both columns it asked: every slot in them
is sealed under its row's OPRF output, so without those outputs (one per metered OPRF
evaluation) the other slots are tags and ciphertexts it can neither link to an ID nor open.
The layout (sizes, seeds) is public. A malicious server can answer wrongly; the decoder's
noise check and the tag match catch answers that are not for the query (below), not a server
that consistently serves a different table.

Correctness: the decoding error of one entry is ``Σ_k D[i,k]·e_k``, subgaussian with parameter
at most ``σ·128·√m``, so an answer of ``l`` entries fails with probability at most
``2·l·exp(−(Δ/2)² / (2·σ²·128²·m))``. A layout whose bound exceeds ``2^-40`` is refused. The
client also refuses any answer whose noise exceeds the level ``T`` at which that same bound is
``2^-40`` (``T ≈ 2^20`` at ``m = 24,000``): a stale hint or a forged answer gives each wrong
entry a uniform noise, which passes with probability ``T/2^23`` (about 1/8) per entry, and a
changed slot changes up to ``slot_bytes`` entries, so a stale hint is reported
(:class:`StaleHintError`) rather than read. What remains: a wrong entry that happens to pass
the check lies in a slot whose tag then almost surely does not match (a present row reads as
absent), unless it lies in the payload of the matching slot: the label is sealed by AES-CTR,
which is not authenticated, so such a payload opens to a corrupted label (the label's own
encoding catches some of it, not all). An honest server with a current hint never gets
there (the ``2^-40`` bound).

Sizes (64-byte labels: slot 88 bytes = tag 16 + version 8 + label 64; 16 MiB hint budget,
so 46 slots per column and ``l = 4048``):

================  =========  ==========  ====================  =====================
rows              ``m``      hint        query (per ID, 2 col)  answer (per ID)
================  =========  ==========  ====================  =====================
10^6              24,704     15.8 MiB    193 KiB                31.6 KiB
10^7              247,036    15.8 MiB    1.9 MiB                31.6 KiB
10^8              see below
================  =========  ==========  ====================  =====================

At ``10^8`` rows the 16 MiB budget would need ``m ≈ 2.47·10^6 > 2^20``, beyond the
parameters' security; ``l`` must grow to at least ``10^8 / (0.88·2^20) ≈ 109`` slots per
column. We would pick 256 slots per column (``max_hint_bytes = 88 << 20``: ``l = 22,528``,
``m ≈ 444,000``), the smallest power of two that keeps ``m`` under ``2^19``, so the table can
double before it meets the ``2^20`` limit, while the query (the per-lookup cost, ``4·m``
bytes per column) stays a few MiB: the hint is 88 MiB (a one-time download), a query
3.4 MiB per ID and an answer 176 KiB. The error bound stays far below ``2^-40`` (at
``l = 22,528`` it allows ``m`` up to ``≈1.4·10^6``), and the server's work is one pass over
the 8.8 GB matrix per batch (not measured here).

Updates: changing a slot changes ``slot_bytes`` entries of its column; the hint is patched in
place (``H[r,:] += δ·A[c,:]``, ``n`` word operations per changed entry) and the version
records which hint rows changed, so a client catches up by fetching those rows (4 KiB each),
or the whole hint when more than three quarters of it changed. A slot occupies the same rows
in every column, so a few dozen updates in different slot positions already touch most of
the hint. An insertion whose cuckoo walk fails re-lays the whole table (a new
``layout_id``, a larger ``m``): every client refetches the hint.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rainbridge import _core
from rainbridge.data import write_json_atomic
from rainbridge.errors import DataError, ParameterMismatchError

TAG = 16
#: LWE dimension, the hint's width in words
LWE_N: int = _core.LWE_N
SIGMA = float(_core.LWE_SIGMA)
DELTA = 1 << (_core.LWE_LOG_Q - _core.LWE_LOG_P)
#: the lattice estimator's figure for n = 1024 holds up to 2^20 samples (columns)
MAX_COLS = 1 << 20
#: a hint of at most 1 GiB
MAX_ROWS = 1 << 18
#: slots filled at build: 2-choice cuckoo with ~46-slot buckets places rows well above this
LOAD = 0.88
#: a per-answer decoding failure bound above this refuses the layout
FAILURE_BOUND = 2.0**-40
#: versions whose changed hint rows are kept for clients to catch up
KEEP_VERSIONS = 64
_MAX_KICKS = 500
#: query vectors answered in one pass over the matrix
MAX_BATCH = 256
_FORMAT = "rainbridge/pir/lattice/v1"


class StaleHintError(ParameterMismatchError):
    """The answer did not decode under the client's hint: its hint is stale (fetch the rows
    changed since its version, or the whole hint) or the answer is not for this query."""

    code = "stale_hint"


def _noise_level(rows: int, cols: int) -> float:
    """The noise ``T`` exceeded with probability at most ``FAILURE_BOUND`` per answer."""
    return math.sqrt(
        2.0 * SIGMA**2 * 128.0**2 * cols * (math.log(2.0 * rows) - math.log(FAILURE_BOUND))
    )


def failure_bound(rows: int, cols: int) -> float:
    """Per-answer probability bound of a wrong entry: ``2·l·exp(−(Δ/2)²/(2σ²128²m))``."""
    return 2.0 * rows * math.exp(-((DELTA / 2) ** 2) / (2.0 * SIGMA**2 * 128.0**2 * cols))


def _check_dims(rows: int, cols: int, slot_bytes: int, slots_per_col: int, what: str) -> None:
    if slot_bytes <= TAG or slots_per_col < 1 or rows != slot_bytes * slots_per_col:
        raise DataError(
            f"{what}: rows must be slots_per_col·slot_bytes with slot_bytes > {TAG} "
            f"(got rows={rows}, slot_bytes={slot_bytes}, slots_per_col={slots_per_col})"
        )
    if rows > MAX_ROWS:
        raise DataError(f"{what}: {rows} rows make a hint over 1 GiB")
    if not 2 <= cols <= MAX_COLS:
        raise DataError(
            f"{what}: {cols} columns is outside 2..2^20 (the LWE parameters' security); "
            "raise max_hint_bytes so that more slots fit in a column"
        )
    if failure_bound(rows, cols) > FAILURE_BOUND:
        raise DataError(
            f"{what}: {rows}×{cols} entries exceed the correctness bound "
            f"(decoding failure bound {failure_bound(rows, cols):.3g} > 2^-40)"
        )


def _u32_columns(hash_key: bytes, tags: np.ndarray, cols: int) -> np.ndarray:
    enc = Cipher(algorithms.AES(hash_key), modes.ECB()).encryptor()
    out = np.frombuffer(enc.update(np.ascontiguousarray(tags).tobytes()), dtype="<u8")
    c = (out.reshape(-1, 2) % np.uint64(cols)).astype(np.uint32)
    same = c[:, 0] == c[:, 1]
    c[same, 1] = (c[same, 0] + 1) % cols
    return c


def _as_tags(tags: Any, what: str) -> np.ndarray:
    arr = np.asarray(tags)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != TAG:
        raise DataError(f"{what} must be a (k, 16) uint8 array")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class LatticeLayout:
    """The public layout of the matrix: all a client needs besides the hint."""

    layout_id: str
    seed: bytes
    hash_key: bytes
    rows: int
    cols: int
    slot_bytes: int
    slots_per_col: int

    def columns(self, tags: np.ndarray) -> np.ndarray:
        """The two distinct candidate columns of each tag: (k, 16) uint8 -> (k, 2) uint32."""
        t = _as_tags(tags, "tags")
        return _u32_columns(self.hash_key, t, self.cols)

    @property
    def payload_bytes(self) -> int:
        return self.slot_bytes - TAG

    @property
    def noise_level(self) -> int:
        """Answers decoding with more noise than this are refused (:class:`StaleHintError`)."""
        return math.ceil(_noise_level(self.rows, self.cols))

    def to_json(self) -> dict[str, Any]:
        return {
            "layout_id": self.layout_id,
            "seed": self.seed.hex(),
            "hash_key": self.hash_key.hex(),
            "rows": self.rows,
            "cols": self.cols,
            "slot_bytes": self.slot_bytes,
            "slots_per_col": self.slots_per_col,
        }

    @classmethod
    def from_json(cls, obj: Any, what: str) -> LatticeLayout:
        """A layout from its JSON form, every field checked (``DataError`` names ``what``)."""
        if not isinstance(obj, dict):
            raise DataError(f"{what} must be an object")
        keys = {"layout_id", "seed", "hash_key", "rows", "cols", "slot_bytes", "slots_per_col"}
        if set(obj) != keys:
            raise DataError(f"{what} must have exactly the fields {sorted(keys)}")
        lid = obj["layout_id"]
        if not isinstance(lid, str) or not 1 <= len(lid) <= 64 or not lid.isascii():
            raise DataError(f"{what}.layout_id must be a short ASCII string")
        raw: dict[str, bytes] = {}
        for k in ("seed", "hash_key"):
            v = obj[k]
            try:
                b = bytes.fromhex(v) if isinstance(v, str) else b""
            except ValueError:
                b = b""
            if len(b) != 16:
                raise DataError(f"{what}.{k} must be 16 bytes in hex")
            raw[k] = b
        ints: dict[str, int] = {}
        for k in ("rows", "cols", "slot_bytes", "slots_per_col"):
            v = obj[k]
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1 << 32:
                raise DataError(f"{what}.{k} must be a positive integer")
            ints[k] = v
        _check_dims(ints["rows"], ints["cols"], ints["slot_bytes"], ints["slots_per_col"], what)
        return cls(lid, raw["seed"], raw["hash_key"], **ints)


def plan_layout(
    n_rows: int, payload_bytes: int, *, max_hint_bytes: int = 16 << 20, seed: bytes | None = None
) -> LatticeLayout:
    """The layout for ``n_rows`` rows: ``l`` as large as the hint budget allows (which makes
    ``m``, and so the query, the smallest) and ``m`` at a load of :data:`LOAD`.

    ``seed`` (any bytes) makes the matrix seed, the hash key and the id deterministic (tests);
    by default they are random."""
    slot_bytes = TAG + payload_bytes
    if payload_bytes < 1:
        raise DataError("payloads must be at least 1 byte wide")
    spc = max_hint_bytes // (4 * LWE_N) // slot_bytes
    if spc < 1:
        raise DataError(
            f"max_hint_bytes={max_hint_bytes} leaves no room for one {slot_bytes}-byte slot "
            f"per column (needs {4 * LWE_N * slot_bytes} bytes)"
        )
    cols = max(2, math.ceil(n_rows / (LOAD * spc)))
    if seed is None:
        material = os.urandom(32)
    else:
        material = hashlib.sha256(b"rainbridge/pir/lattice/layout\0" + seed).digest()
    lid = hashlib.sha256(material + f"{cols}:{spc}:{slot_bytes}".encode()).hexdigest()[:32]
    _check_dims(spc * slot_bytes, cols, slot_bytes, spc, "the lattice layout")
    return LatticeLayout(lid, material[:16], material[16:], spc * slot_bytes, cols, slot_bytes, spc)


def _hint_words(hint: Any, rows: int, what: str) -> np.ndarray:
    arr = np.asarray(hint)
    if arr.dtype != np.uint32 or arr.shape != (rows, LWE_N):
        raise DataError(f"{what} must be a ({rows}, {LWE_N}) uint32 array")
    return arr


class LatticeDb:
    """The server's matrix, its hint and its versions.

    Build with :meth:`build`; ``answer`` is the per-query work (one pass over the matrix per
    batch); ``update`` upserts and deletes rows and patches the hint in place. Not safe for
    an ``update`` concurrent with ``answer``: the caller serialises them.
    """

    def __init__(
        self, layout: LatticeLayout, matrix: np.ndarray, hint: np.ndarray, version: int
    ) -> None:
        self.layout = layout
        self.version = version
        self.hint = hint
        self._db = matrix
        # per version since the layout was made: the hint rows that version changed
        self._history: list[tuple[int, np.ndarray]] = []
        self._since = version  # hint_rows_since(v) for v < this: the layout changed
        self._pending: np.ndarray | None = None  # a row a failed cuckoo walk left out

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        tags: np.ndarray,
        payloads: np.ndarray,
        *,
        max_hint_bytes: int = 16 << 20,
        seed: bytes | None = None,
    ) -> LatticeDb:
        """Lay out the rows (``tags`` (k, 16) uint8, distinct and non-zero; ``payloads``
        (k, P) uint8) and compute the hint."""
        t, p = _check_rows(tags, payloads, None)
        layout = plan_layout(len(t), p.shape[1], max_hint_bytes=max_hint_bytes, seed=seed)
        matrix, layout = _place_all(layout, t, p, max_hint_bytes)
        hint = _compute_hint(layout, matrix)
        return cls(layout, matrix, hint, 1)

    # -- serving ----------------------------------------------------------------------------

    def answer(self, queries: np.ndarray) -> np.ndarray:
        """``D·qu`` for each query: (b, m) uint32 -> (b, l) uint32."""
        q = np.asarray(queries)
        m, rows = self.layout.cols, self.layout.rows
        if (
            q.dtype != np.uint32
            or q.ndim != 2
            or q.shape[1] != m
            or not 1 <= q.shape[0] <= MAX_BATCH
        ):
            raise DataError(f"queries must be a (b, {m}) uint32 array with 1 ≤ b ≤ {MAX_BATCH}")
        out = _core.lwe_answer(self._db, rows, m, np.ascontiguousarray(q))
        return np.frombuffer(out, dtype="<u4").reshape(q.shape[0], rows)

    def hint_rows_since(self, version: int) -> np.ndarray | None:
        """The hint rows changed after ``version`` (sorted), or ``None``: refetch the whole
        hint (the layout changed since, the version is too old, or most rows changed)."""
        if version < self._since or version > self.version:
            return None
        changed = [rows for v, rows in self._history if v > version]
        out = np.unique(np.concatenate(changed)) if changed else np.zeros(0, dtype=np.uint32)
        if len(out) * 4 > 3 * self.layout.rows:
            return None
        return out.astype(np.uint32)

    # -- updates ----------------------------------------------------------------------------

    def update(
        self, upsert_tags: np.ndarray, upsert_payloads: np.ndarray, delete_tags: np.ndarray
    ) -> None:
        """A new version: upsert rows (new tags or new payloads for existing ones) and delete
        rows (absent tags are ignored); the hint is patched in place. An insertion that does
        not fit re-lays the whole table (a new ``layout_id``)."""
        lay = self.layout
        ut, up = _check_rows(upsert_tags, upsert_payloads, lay.payload_bytes)
        dt = _as_tags(delete_tags, "delete_tags")
        if len(dt) and len(ut):
            both = np.intersect1d(_tag_keys(ut), _tag_keys(dt))
            if len(both):
                raise DataError("a tag is both upserted and deleted in one update")
        view = self._slots()
        old_cols: dict[int, np.ndarray] = {}

        def touch(c: int) -> None:
            if c not in old_cols:
                old_cols[c] = self._db[:, c].copy()

        inserts_t, inserts_p = ut[:0], up[:0]
        inserts_c = np.zeros((0, 2), dtype=np.uint32)
        # deletes and overwrites cannot fail: do them first
        for tags, pays in ((dt, None), (ut, up)):
            if not len(tags):
                continue
            cols = lay.columns(tags)
            found = self._find(tags, cols)
            for f in np.nonzero(found[:, 0] >= 0)[0]:
                c, s = int(found[f, 0]), int(found[f, 1])
                touch(c)
                if pays is None:
                    view[s, :, c] = 0
                else:
                    view[s, TAG:, c] = pays[f]
            if pays is not None:
                new = np.nonzero(found[:, 0] < 0)[0]
                inserts_t, inserts_p, inserts_c = tags[new], pays[new], cols[new]
        homeless: list[int] = []
        if len(inserts_t):
            loads = self._loads()
            rng = np.random.default_rng()
            for i in range(len(inserts_t)):
                if not self._insert(
                    view, loads, inserts_t[i], inserts_p[i], inserts_c[i], touch, rng
                ):
                    homeless.append(i)
                    break
        if homeless:
            # Re-lay the whole table from what it now holds, the row the failed walk left
            # out and the insertions not yet tried.
            first = homeless[0]
            t_all, p_all = self._all_rows()
            t_all = np.concatenate([t_all, inserts_t[first + 1 :]])
            p_all = np.concatenate([p_all, inserts_p[first + 1 :]])
            try:
                layout = plan_layout(
                    len(t_all), lay.payload_bytes, max_hint_bytes=lay.rows * 4 * LWE_N
                )
                layout = _grow(layout, lay.cols)
                matrix, layout = _place_all(layout, t_all, p_all, lay.rows * 4 * LWE_N)
            except DataError:
                # the table cannot grow (the parameters' limit): undo every change
                for c, col in old_cols.items():
                    self._db[:, c] = col
                raise
            self.version += 1
            self.layout, self._db = layout, matrix
            self.hint = _compute_hint(layout, matrix)
            self._history, self._since = [], self.version
            return
        self.version += 1
        rows_changed: list[np.ndarray] = []
        rr, cc, dd = [], [], []
        for c, old in old_cols.items():
            diff = self._db[:, c].astype(np.int32) - old.astype(np.int32)
            r = np.nonzero(diff)[0]
            if len(r):
                rr.append(r.astype(np.uint32))
                cc.append(np.full(len(r), c, dtype=np.uint32))
                dd.append(diff[r].astype(np.int32))
                rows_changed.append(r.astype(np.uint32))
        if rr:
            _core.lwe_hint_patch(
                self.hint,
                lay.seed,
                lay.cols,
                np.concatenate(rr),
                np.concatenate(cc),
                np.concatenate(dd),
            )
        changed = (
            np.unique(np.concatenate(rows_changed)) if rows_changed else np.zeros(0, np.uint32)
        )
        self._history.append((self.version, changed.astype(np.uint32)))
        if len(self._history) > KEEP_VERSIONS:
            dropped = self._history.pop(0)
            self._since = dropped[0]

    def _slots(self) -> np.ndarray:
        lay = self.layout
        return self._db.reshape(lay.slots_per_col, lay.slot_bytes, lay.cols)

    def _loads(self) -> np.ndarray:
        tags = self._slots()[:, :TAG, :]
        return np.count_nonzero(tags.any(axis=1), axis=0).astype(np.int64)

    def _find(self, tags: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(k, 2): the (column, slot) holding each tag, or (-1, -1)."""
        view = self._slots()
        out = np.full((len(tags), 2), -1, dtype=np.int64)
        for start in range(0, len(tags), 4096):
            t = tags[start : start + 4096]
            c = cols[start : start + 4096]
            for side in range(2):
                cand = view[:, :TAG, c[:, side]]  # (spc, 16, k)
                eq = (cand == t.T[None, :, :]).all(axis=1)  # (spc, k)
                hit = eq.any(axis=0)
                slot = eq.argmax(axis=0)
                sel = hit & (out[start : start + 4096, 0] < 0)
                idx = np.nonzero(sel)[0] + start
                out[idx, 0] = c[sel, side]
                out[idx, 1] = slot[sel]
        return out

    def _insert(
        self,
        view: np.ndarray,
        loads: np.ndarray,
        tag: np.ndarray,
        payload: np.ndarray,
        cols: np.ndarray,
        touch: Any,
        rng: np.random.Generator,
    ) -> bool:
        """Cuckoo insertion: the emptier candidate, else evict a random occupant to its other
        column, up to ``_MAX_KICKS`` moves. False: the last evicted row is left unplaced, and
        is put back (the table stays whole)."""
        spc = self.layout.slots_per_col
        rec = np.concatenate([tag, payload])
        c = int(cols[0]) if loads[cols[0]] <= loads[cols[1]] else int(cols[1])
        for _ in range(_MAX_KICKS):
            if loads[c] < spc:
                s = int(np.nonzero(~view[:, :TAG, c].any(axis=1))[0][0])
                touch(c)
                view[s, :, c] = rec
                loads[c] += 1
                return True
            s = int(rng.integers(spc))
            touch(c)
            victim = view[s, :, c].copy()
            view[s, :, c] = rec
            rec = victim
            vc = self.layout.columns(victim[None, :TAG])[0]
            c = int(vc[1]) if int(vc[0]) == c else int(vc[0])
        # The walk moved rows around and left `rec` out; the caller re-lays the table with it.
        self._pending = rec
        return False

    def _all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        view = self._slots()
        occ = view[:, :TAG, :].any(axis=1)  # (spc, m)
        s, c = np.nonzero(occ)
        recs = view[s, :, c]  # (k, slot_bytes)
        if self._pending is not None:
            recs = np.concatenate([recs, self._pending[None, :]])
            self._pending = None
        return np.ascontiguousarray(recs[:, :TAG]), np.ascontiguousarray(recs[:, TAG:])

    # -- persistence ------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """The matrix, the hint and the versions, each file written whole (then renamed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in (("matrix.npy", self._db), ("hint.npy", self.hint)):
            tmp = folder / (name + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, folder / name)
        meta = {
            "format": _FORMAT,
            "layout": self.layout.to_json(),
            "version": self.version,
            "since": self._since,
            "history": [[v, rows.tolist()] for v, rows in self._history],
        }
        write_json_atomic(meta, folder / "lattice.json")

    @classmethod
    def load(cls, folder: Path) -> LatticeDb:
        """A saved database, every file checked against its layout (``DataError`` if not)."""
        import json

        folder = Path(folder)
        try:
            meta = json.loads((folder / "lattice.json").read_text())
            matrix = np.load(folder / "matrix.npy", allow_pickle=False)
            hint = np.load(folder / "hint.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"lattice PIR database in {folder.name!r} cannot be read: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise DataError("lattice.json is not a lattice PIR database")
        layout = LatticeLayout.from_json(meta.get("layout"), "lattice.json layout")
        if matrix.dtype != np.uint8 or matrix.shape != (layout.rows, layout.cols):
            raise DataError("matrix.npy does not match the layout")
        hint = _hint_words(hint, layout.rows, "hint.npy")
        version, since, history = meta.get("version"), meta.get("since"), meta.get("history")
        if (
            not isinstance(version, int)
            or not isinstance(since, int)
            or not isinstance(history, list)
        ):
            raise DataError("lattice.json has no valid version history")
        db = cls(layout, np.ascontiguousarray(matrix), np.ascontiguousarray(hint), version)
        try:
            db._history = [(int(v), np.asarray(r, dtype=np.uint32)) for v, r in history]
        except (TypeError, ValueError) as e:
            raise DataError("lattice.json has no valid version history") from e
        db._since = since
        return db


def _tag_keys(tags: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tags).view("V16").ravel()


def _check_rows(tags: Any, payloads: Any, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    t = _as_tags(tags, "tags")
    p = np.asarray(payloads)
    if p.dtype != np.uint8 or p.ndim != 2 or p.shape[0] != len(t):
        raise DataError("payloads must be a (k, P) uint8 array, one row per tag")
    if width is not None and p.shape[1] != width:
        raise DataError(f"payloads must be {width} bytes wide (the layout's), got {p.shape[1]}")
    if len(t) and not t.any(axis=1).all():
        raise DataError("a tag is all zero (the mark of an empty slot)")
    if len(np.unique(_tag_keys(t))) != len(t):
        raise DataError("tags must be distinct")
    return t, np.ascontiguousarray(p)


def _grow(layout: LatticeLayout, old_cols: int) -> LatticeLayout:
    """After a failed insertion, at least 5% more columns than before."""
    cols = max(layout.cols, math.ceil(old_cols * 1.05))
    if cols == layout.cols:
        return layout
    _check_dims(layout.rows, cols, layout.slot_bytes, layout.slots_per_col, "the lattice layout")
    lid = hashlib.sha256(layout.layout_id.encode() + f":{cols}".encode()).hexdigest()[:32]
    return LatticeLayout(
        lid,
        layout.seed,
        layout.hash_key,
        layout.rows,
        cols,
        layout.slot_bytes,
        layout.slots_per_col,
    )


def _place_all(
    layout: LatticeLayout, tags: np.ndarray, payloads: np.ndarray, max_hint_bytes: int
) -> tuple[np.ndarray, LatticeLayout]:
    """The matrix with every row placed; grows ``m`` by 5% while the placement fails."""
    for _ in range(20):
        slots = _assign(layout, tags)
        if slots is not None:
            col, slot = slots
            matrix = np.zeros((layout.rows, layout.cols), dtype=np.uint8)
            view = matrix.reshape(layout.slots_per_col, layout.slot_bytes, layout.cols)
            if len(tags):
                view[slot, :TAG, col] = tags
                view[slot, TAG:, col] = payloads
            return matrix, layout
        layout = _grow(layout, layout.cols)
    raise DataError("the rows could not be laid out (the hash columns are too unbalanced)")


def _assign(layout: LatticeLayout, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, slot) of each row, or None. Parallel cuckoo: every row starts in its first
    candidate; each round, the rows beyond an overfull column's capacity move to their other
    candidate (random ranks decide which), until no column is overfull."""
    k, m, cap = len(tags), layout.cols, layout.slots_per_col
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cand = layout.columns(tags).astype(np.int64)
    side = np.zeros(k, dtype=np.int64)
    rng = np.random.default_rng(int.from_bytes(layout.seed[:8], "little"))
    for _ in range(2000):
        col = cand[np.arange(k), side]
        counts = np.bincount(col, minlength=m)
        over = counts > cap
        if not over.any():
            order = np.argsort(col, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            slot = np.empty(k, dtype=np.int64)
            slot[order] = np.arange(k) - starts[col[order]]
            return col, slot
        idx = np.nonzero(over[col])[0]
        c = col[idx]
        order = np.lexsort((rng.random(len(idx)), c))
        sc = c[order]
        first = np.searchsorted(sc, sc, side="left")
        rank = np.arange(len(idx)) - first
        move = idx[order[rank >= cap]]
        side[move] ^= 1
    return None


def _compute_hint(layout: LatticeLayout, matrix: np.ndarray) -> np.ndarray:
    raw = _core.lwe_hint(matrix, layout.rows, layout.cols, layout.seed)
    return np.frombuffer(raw, dtype="<u4").reshape(layout.rows, LWE_N).copy()


@dataclass
class _QueryState:
    layout_id: str
    version: int
    secrets: bytes
    columns: np.ndarray  # (k, 2)
    tags: np.ndarray  # (k, 16)


class LatticeClient:
    """A client holding the layout and the hint at some version."""

    def __init__(self, layout: LatticeLayout, hint: np.ndarray, version: int) -> None:
        self.layout = layout
        self.hint = np.array(_hint_words(hint, layout.rows, "hint"), dtype=np.uint32, order="C")
        self.version = version

    def apply_hint_rows(self, rows: np.ndarray, values: np.ndarray, version: int) -> None:
        """Bring the hint to ``version`` with the current values of the rows changed since."""
        r = np.asarray(rows)
        v = np.asarray(values)
        if r.ndim != 1 or r.dtype.kind not in "ui":
            raise DataError("hint rows must be a 1-D integer array")
        if v.dtype != np.uint32 or v.shape != (len(r), LWE_N):
            raise DataError(f"hint row values must be a ({len(r)}, {LWE_N}) uint32 array")
        if len(r) and (r.min() < 0 or r.max() >= self.layout.rows):
            raise DataError(f"hint rows must be in 0..{self.layout.rows - 1}")
        if version < self.version:
            raise DataError(f"hint version {version} is older than the client's {self.version}")
        self.hint[r.astype(np.int64)] = v
        self.version = version

    def queries(self, tags: np.ndarray) -> tuple[np.ndarray, Any]:
        """Two queries per tag (its two candidate columns, always two): (2k, m) uint32, and
        the state that :meth:`read` needs (the secrets; never sent)."""
        t = _as_tags(tags, "tags")
        if len(t) == 0:
            raise DataError("at least one tag must be asked")
        if not t.any(axis=1).all():
            raise DataError("a tag is all zero (the mark of an empty slot)")
        cols = self.layout.columns(t)
        q, s = _core.lwe_query(self.layout.seed, self.layout.cols, cols.ravel())
        state = _QueryState(self.layout.layout_id, self.version, s, cols, t.copy())
        return np.frombuffer(q, dtype="<u4").reshape(2 * len(t), self.layout.cols), state

    def read(self, state: Any, answers: np.ndarray, tags: np.ndarray) -> list[bytes | None]:
        """Each tag's payload, or None where its row is absent.

        Raises :class:`StaleHintError` when an answer does not decode under the hint (the
        client's hint is stale, or the answer is not for these queries)."""
        if not isinstance(state, _QueryState):
            raise DataError("state must be the one returned by queries()")
        lay = self.layout
        t = _as_tags(tags, "tags")
        if state.layout_id != lay.layout_id:
            raise StaleHintError("the layout changed since the queries were made")
        if not np.array_equal(t, state.tags):
            raise DataError("tags must be those the queries were made for")
        a = np.asarray(answers)
        if a.dtype != np.uint32 or a.shape != (2 * len(t), lay.rows):
            raise DataError(f"answers must be a ({2 * len(t)}, {lay.rows}) uint32 array")
        try:
            raw = _core.lwe_decode(
                self.hint, lay.rows, state.secrets, np.ascontiguousarray(a), lay.noise_level
            )
        except _core.LweDecodingError as e:
            raise StaleHintError(
                "the answer did not decode under this hint (stale hint or a wrong answer); "
                "fetch the hint rows changed since version "
                f"{self.version} and ask again"
            ) from e
        cols = np.frombuffer(raw, dtype=np.uint8).reshape(
            2 * len(t), lay.slots_per_col, lay.slot_bytes
        )
        out: list[bytes | None] = []
        for i in range(len(t)):
            both = cols[2 * i : 2 * i + 2].reshape(-1, lay.slot_bytes)
            hit = np.nonzero((both[:, :TAG] == t[i]).all(axis=1))[0]
            out.append(both[hit[0], TAG:].tobytes() if len(hit) else None)
        return out
