"""The PIR messages between a client node and the server node (JSON over the data plane's
control exchange; binary fields base64), the server's answers and the client's reading.

Query (``pir_query``)::

    {"service": S, "mode": "private" | "bucket", "elements": b64(32·n),
     "buckets": [b, ...]            # bucket mode only, one per element
    }

Answer: ``{"ok": true, "evaluated": b64(32·n), "key_id", "version", "layout",
"bucket_bits", "rows": [rows of each named bucket]}`` (``rows`` in bucket mode only).

Sync (``pir_sync``): ``{"service", "have": {"key_id", "version"} | null, "snapshot":
{"version", "offset"} | null}``; the answer carries either the deltas since ``have`` or one
page of a snapshot (rows ``offset..``) and the offset of the next page (null at the end).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge.crypto import oprf
from rainbridge.errors import DataError
from rainbridge.protocols.pir.client import Answer, Replica, layout_from, open_rows
from rainbridge.protocols.pir.table import TAG, Delta, PirTable, Rows, buckets_of

#: IDs per query message (each costs the server one scalar multiplication)
MAX_BATCH = 4096
#: raw bytes of rows per sync page (base64 and JSON keep a page under the control limit)
PAGE_BYTES = 1 << 20
MODES = ("private", "bucket")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DataError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise DataError(f"{what}: invalid base64") from None


def pack_rows(rows: Rows) -> dict[str, str]:
    return {k: b64(v) for k, v in rows.to_bytes().items()}


def unpack_rows(obj: Any, width: int, what: str) -> Rows:
    if not isinstance(obj, dict):
        raise DataError(f"{what}: malformed rows")
    parts = {k: unb64(obj.get(k), what) for k in ("tags", "versions", "buckets", "sealed")}
    return Rows.from_bytes(parts, width, what)


def _header(table: PirTable) -> dict[str, Any]:
    return {
        "key_id": table.key_id,
        "version": table.version,
        "layout": table.layout.to_json(),
        "bucket_bits": table.bucket_bits,
        "rows_total": len(table.rows),
    }


# -- the server ------------------------------------------------------------------------------


def answer_query(table: PirTable, msg: dict[str, Any], modes: tuple[str, ...] = MODES) -> dict:
    """Evaluate a query's blinded elements (and, in bucket mode, return its buckets' rows).

    Raises
    ------
    DataError
        A malformed query (unknown or disallowed mode, too many elements, a bucket out of
        range); InvalidElementError for an element that is not a valid group element.
    """
    mode = msg.get("mode")
    if mode not in MODES:
        raise DataError(f"unknown PIR mode {mode!r} (use {' or '.join(MODES)})")
    if mode not in modes:
        raise DataError(f"this service does not answer {mode!r} queries")
    elements = unb64(msg.get("elements"), "PIR query")
    n, rest = divmod(len(elements), oprf.ELEMENT_SIZE)
    if rest or not 1 <= n <= MAX_BATCH:
        raise DataError(f"a PIR query carries 1 to {MAX_BATCH} whole 32-byte elements")
    reply: dict[str, Any] = {"ok": True, **_header(table)}
    if mode == "bucket":
        buckets = msg.get("buckets")
        if not isinstance(buckets, list) or len(buckets) != n:
            raise DataError("a bucket-mode query names one bucket per element")
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in buckets):
            raise DataError("buckets are integers")
        reply["rows"] = [pack_rows(table.bucket(b)) for b in buckets]
    reply["evaluated"] = b64(oprf.evaluate(table.key, elements))
    return reply


def sync_page(table: PirTable, msg: dict[str, Any]) -> dict[str, Any]:
    """Deltas since the client's version, or one page of a snapshot."""
    reply: dict[str, Any] = {"ok": True, **_header(table)}
    have, snap = msg.get("have"), msg.get("snapshot")
    if snap is None and isinstance(have, dict) and have.get("key_id") == table.key_id:
        v = have.get("version")
        if isinstance(v, int) and 0 < v <= table.version:
            deltas = table.deltas_since(v)
            if deltas is not None:
                reply["deltas"] = [
                    {"version": d.version, "removed": b64(d.removed.tobytes()),
                     "added": pack_rows(d.added)}
                    for d in deltas
                ]  # fmt: skip
                return reply
    offset: Any = 0
    if snap is not None:
        if not isinstance(snap, dict) or snap.get("version") != table.version:
            raise DataError("the table changed during the copy: start the copy again")
        offset = snap.get("offset")
        if not isinstance(offset, int) or not 0 <= offset <= len(table.rows):
            raise DataError("a snapshot offset outside the table")
    per_row = TAG + 8 + 4 + table.width
    page = max(1, PAGE_BYTES // per_row)
    end = min(len(table.rows), offset + page)
    reply["snapshot"] = {
        "offset": offset,
        "rows": pack_rows(table.rows.take(np.arange(offset, end))),
        "next": end if end < len(table.rows) else None,
    }
    return reply


# -- the client ------------------------------------------------------------------------------


def make_query(
    service: str, ids: list[str], mode: str, bucket_bits: int | None = None
) -> tuple[oprf.Blinded, dict[str, Any]]:
    """Blind ``ids`` (fresh blinds) into a query message."""
    if not 1 <= len(ids) <= MAX_BATCH:
        raise DataError(f"a PIR query asks 1 to {MAX_BATCH} IDs")
    q = oprf.blind([i.encode() for i in ids])
    msg: dict[str, Any] = {
        "type": "pir_query",
        "service": service,
        "mode": mode,
        "elements": b64(q.elements),
    }
    if mode == "bucket":
        if bucket_bits is None:
            raise DataError("a bucket-mode query needs the service's bucket bits")
        msg["buckets"] = [int(b) for b in buckets_of(pa.array(ids), bucket_bits)]
    return q, msg


def read_answer(
    q: oprf.Blinded, reply: dict[str, Any], replica: Replica | None, peer: str
) -> list[Answer]:
    """The answers of a query: from the replica (private mode) or the returned buckets."""
    what = f"{peer}'s PIR answer"
    evaluated = unb64(reply.get("evaluated"), what)
    outputs = oprf.finalize(q, evaluated)
    ids = [x.decode() for x in q.inputs]
    if "rows" in reply:
        layout = layout_from(reply.get("layout"), what)
        width = layout.size
        parts = reply["rows"]
        if not isinstance(parts, list) or len(parts) != len(ids):
            raise DataError(f"{what}: one bucket per ID expected")
        out = []
        for i, part in enumerate(parts):
            rows = unpack_rows(part, width, what)
            out += open_rows(layout, rows, outputs[i : i + 1], ids[i : i + 1])
        return out
    if replica is None:
        raise DataError("a private-mode answer needs a replica of the table")
    if reply.get("key_id") != replica.key_id or reply.get("version") != replica.version:
        raise DataError("the replica is behind the service: sync it first")
    return replica.lookup(outputs, ids)


def apply_sync(
    replica: Replica | None, reply: dict[str, Any], peer: str
) -> tuple[Replica | None, dict[str, Any] | None]:
    """Apply one sync answer; returns the replica and the next request's ``snapshot`` part
    (None when the replica is current)."""
    what = f"{peer}'s PIR sync"
    layout = layout_from(reply.get("layout"), what)
    width = layout.size
    version, key_id = reply.get("version"), reply.get("key_id")
    if not isinstance(version, int) or not isinstance(key_id, str):
        raise DataError(f"{what}: malformed header")
    if "deltas" in reply:
        if replica is None:
            raise DataError(f"{what}: deltas without a replica")
        for d in reply["deltas"]:
            if not isinstance(d, dict):
                raise DataError(f"{what}: malformed delta")
            removed = np.frombuffer(unb64(d.get("removed"), what), np.uint8)
            if len(removed) % TAG:
                raise DataError(f"{what}: malformed delta")
            replica.apply(
                Delta(
                    int(d.get("version", -1)),
                    removed.reshape(-1, TAG),
                    unpack_rows(d.get("added"), width, what),
                )
            )
        if replica.version != version:
            raise DataError(f"{what}: deltas end at {replica.version}, not {version}")
        return replica, None
    snap = reply.get("snapshot")
    if not isinstance(snap, dict):
        raise DataError(f"{what}: neither deltas nor a snapshot")
    rows = unpack_rows(snap.get("rows"), width, what)
    if snap.get("offset") == 0 or replica is None or replica.key_id != key_id:
        replica = Replica(key_id, version, layout, int(reply.get("bucket_bits", 0)), rows)
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
