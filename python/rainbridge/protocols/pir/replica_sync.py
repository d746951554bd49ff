"""Private mode's replica: the server's sync pages (``pir_sync``) and the client's applying
of them to its copy of the sealed table.

Sync (``pir_sync``): ``{"service", "have": {"key_id", "version"} | null, "snapshot":
cursor | null}``; the answer carries the deltas since ``have`` (whole deltas up to a page,
or a part of one larger delta: ``delta_part``) or one page of a snapshot, and the client's
next cursor says where to go on (null when the replica is current). Every page stays under
:data:`~rainbridge.protocols.pir.wire.PAGE_BYTES` (read at each page) of raw rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rainbridge.errors import DataError
from rainbridge.protocols.pir import wire
from rainbridge.protocols.pir.client import PinnedKey, Replica, layout_from
from rainbridge.protocols.pir.table import TAG, Delta, PirTable, Rows
from rainbridge.protocols.pir.wire import b64, header, pack_rows, unb64, unpack_rows

# -- the server ------------------------------------------------------------------------------


def sync_page(table: PirTable, msg: dict[str, Any]) -> dict[str, Any]:
    """Deltas since the client's version (whole, or one part of a large one), or one page of
    a snapshot."""
    with table.lock:  # the rows and the version they are of, together
        return _sync_page_locked(table, msg)


def _sync_page_locked(table: PirTable, msg: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, **header(table)}
    have, snap = msg.get("have"), msg.get("snapshot")
    part: Any = None
    if isinstance(snap, dict) and "deltas_from" in snap:
        have, part, snap = snap["deltas_from"], snap.get("part"), None
    if snap is None and isinstance(have, dict) and have.get("key_id") == table.key_id:
        v = have.get("version")
        if isinstance(v, int) and 0 < v <= table.version:
            deltas = table.deltas_since(v)
            if deltas is not None:
                packed = _delta_page(table, deltas, part)
                if packed is not None:
                    reply.update(packed)
                    return reply
    offset: Any = 0
    if snap is not None:
        if not isinstance(snap, dict) or snap.get("version") != table.version:
            raise DataError("the table changed during the copy: start the copy again")
        offset = snap.get("offset")
        if not isinstance(offset, int) or not 0 <= offset <= len(table.rows):
            raise DataError("a snapshot offset outside the table")
    per_row = TAG + 8 + 4 + table.width
    page = max(1, wire.PAGE_BYTES // per_row)
    end = min(len(table.rows), offset + page)
    reply["snapshot"] = {
        "offset": offset,
        "rows": pack_rows(table.rows.take(np.arange(offset, end))),
        "next": end if end < len(table.rows) else None,
    }
    return reply


def _delta_bytes(table: PirTable, d: Delta) -> int:
    return len(d.removed) * TAG + len(d.added) * (TAG + 8 + 4 + table.width)


def _delta_page(table: PirTable, deltas: list[Delta], part: Any) -> dict[str, Any] | None:
    """Whole deltas up to a page, or a part of the first when it alone is larger; None if
    the cursor names a delta the table no longer keeps (the client copies again)."""
    if part is None:
        out: list[dict[str, Any]] = []
        size = 0
        for d in deltas:
            size += _delta_bytes(table, d)
            if out and size > wire.PAGE_BYTES:
                break
            if size > wire.PAGE_BYTES:
                part = 0
                break
            out.append(
                {"version": d.version, "removed": b64(d.removed.tobytes()),
                 "added": pack_rows(d.added)}
            )  # fmt: skip
        if part is None:
            return {"deltas": out}
    if not deltas or not isinstance(part, int) or isinstance(part, bool):
        return None
    d = deltas[0]
    r, a = len(d.removed), len(d.added)
    if not 0 <= part < r + a:
        return None
    # the delta's items: its removed tags, then its added rows; at least one per page
    per_row = TAG + 8 + 4 + table.width
    budget = wire.PAGE_BYTES
    r_lo = min(part, r)
    n_r = min(r - part, max(1, budget // TAG)) if part < r else 0
    budget -= n_r * TAG
    r_hi = r_lo + n_r
    a_lo = max(0, part - r)
    a_hi = a_lo
    if r_hi == r:
        a_hi = min(a, a_lo + max(0 if n_r else 1, budget // per_row))
    end = r_hi + a_hi
    return {
        "delta_part": {
            "version": d.version,
            "offset": part,
            "removed_total": r,
            "added_total": a,
            "removed": b64(d.removed[r_lo:r_hi].tobytes()),
            "added": pack_rows(d.added.take(np.arange(a_lo, a_hi))),
            "next": end if end < r + a else None,
        }
    }


# -- the client ------------------------------------------------------------------------------


def apply_sync(
    replica: Replica | None, reply: dict[str, Any], peer: str
) -> tuple[Replica | None, dict[str, Any] | None]:
    """Apply one sync answer; returns the replica and the next request's cursor (its
    ``snapshot`` field; None when the replica is current)."""
    what = f"{peer}'s PIR sync"
    layout = layout_from(reply.get("layout"), what)
    width = layout.size
    version, key_id = reply.get("version"), reply.get("key_id")
    if not isinstance(version, int) or not isinstance(key_id, str):
        raise DataError(f"{what}: malformed header")
    if "deltas" in reply or "delta_part" in reply:
        if replica is None or replica.key_id != key_id:
            raise DataError(f"{what}: deltas without a replica")
        for d in reply.get("deltas") or []:
            if not isinstance(d, dict):
                raise DataError(f"{what}: malformed delta")
            replica.apply(
                Delta(
                    int(d.get("version", -1)),
                    _tags(unb64(d.get("removed"), what), what),
                    unpack_rows(d.get("added"), width, what),
                )
            )
        part = reply.get("delta_part")
        if part is not None:
            nxt = _take_part(replica, part, width, what)
            if nxt is not None:
                return replica, nxt
        if replica.version > version:
            raise DataError(f"{what}: deltas end at {replica.version}, not {version}")
        if replica.version < version:
            if not reply.get("deltas") and part is None:
                raise DataError(f"{what}: no deltas from {replica.version} to {version}")
            return replica, {
                "deltas_from": {"key_id": key_id, "version": replica.version},
                "part": None,
            }
        return replica, None
    snap = reply.get("snapshot")
    if not isinstance(snap, dict):
        raise DataError(f"{what}: neither deltas nor a snapshot")
    rows = unpack_rows(snap.get("rows"), width, what)
    if snap.get("offset") == 0 or replica is None or replica.key_id != key_id:
        pin = PinnedKey.from_header(reply, what)  # a copy pins the key it is sealed under
        replica = Replica(
            key_id,
            version,
            layout,
            int(reply.get("bucket_bits", 0)),
            rows,
            pin.oprf_mode,
            pin.public_key,
        )
    else:
        replica.rows = Rows(
            np.concatenate([replica.rows.tags, rows.tags]),
            np.concatenate([replica.rows.versions, rows.versions]),
            np.concatenate([replica.rows.buckets, rows.buckets]),
            np.concatenate([replica.rows.sealed, rows.sealed]),
        )
    nxt = snap.get("next")
    if nxt is None:
        if len(replica.rows) != reply.get("rows_total"):
            raise DataError(f"{what}: the copy holds {len(replica.rows)} rows, not all")
        return replica, None
    return replica, {"version": version, "offset": int(nxt)}


def _tags(raw: bytes, what: str) -> np.ndarray:
    removed = np.frombuffer(raw, np.uint8)
    if len(removed) % TAG:
        raise DataError(f"{what}: malformed delta")
    return removed.reshape(-1, TAG)


def _take_part(replica: Replica, part: Any, width: int, what: str) -> dict[str, Any] | None:
    """Gather one part of a large delta; apply it when whole. The next cursor, or None once
    the delta is applied."""
    if not isinstance(part, dict):
        raise DataError(f"{what}: malformed delta part")
    fields: list[Any] = [part.get(k) for k in ("version", "offset", "removed_total", "added_total")]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in fields):
        raise DataError(f"{what}: malformed delta part")
    v, offset, r, a = (int(x) for x in fields)
    pending = replica.pending
    if offset == 0 or pending is None or pending[0] != v:
        if offset != 0:
            raise DataError(f"{what}: a delta part out of order")
        pending = replica.pending = (v, [], [], 0)
    if pending[3] != offset:
        raise DataError(f"{what}: a delta part out of order")
    removed = _tags(unb64(part.get("removed"), what), what)
    added = unpack_rows(part.get("added"), width, what)
    got = offset + len(removed) + len(added)
    pending[1].append(removed)
    pending[2].append(added)
    replica.pending = (v, pending[1], pending[2], got)
    nxt = part.get("next")
    if nxt is not None:
        if nxt != got or got == offset:
            raise DataError(f"{what}: delta parts that do not add up")
        return {
            "deltas_from": {"key_id": replica.key_id, "version": replica.version},
            "part": got,
        }
    removed_all = np.concatenate(pending[1]) if pending[1] else np.zeros((0, TAG), np.uint8)
    added_all = Rows(
        np.concatenate([x.tags for x in pending[2]]),
        np.concatenate([x.versions for x in pending[2]]),
        np.concatenate([x.buckets for x in pending[2]]),
        np.concatenate([x.sealed for x in pending[2]]),
    )
    replica.pending = None
    if len(removed_all) != r or len(added_all) != a:
        raise DataError(f"{what}: a delta's parts do not add up")
    replica.apply(Delta(v, removed_all, added_all))
    return None
