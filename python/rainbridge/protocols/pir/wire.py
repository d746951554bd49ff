"""The PIR messages between a client node and the server node (JSON over the data plane's
control exchange; binary fields base64), the server's answers and the client's reading.

Every message stays under the control exchange's limit (2 MiB) whatever the table, the
labels' width or the batch: rows travel in pages of at most :data:`PAGE_BYTES` raw bytes.

Query (``pir_query``)::

    {"service": S, "mode": "private" | "bucket", "elements": b64(32·n),
     "oprf_mode": 1,                          # the RFC 9497 mode the IDs are blinded in
     "buckets": [b, ...], "bucket_bits": B    # bucket mode only, one bucket per element
    }

Answer: ``{"ok": true, "evaluated": b64(32·n), "proof": b64(64), "key_id", "oprf_mode",
"public_key", "version", "layout", "bucket_bits", "rows_total"}`` (:func:`evaluate`; a
table of mode 0 sends no proof and no public key); in bucket mode also ``"answer":
{"ticket", "rows", "bytes", "version", "answer_rows", "offset", "rows", "next"}``: the
rows of the distinct buckets named, laid end to end, the first page of them, and where
the next page starts (null at the end). Before any work the server refuses a bucket-mode
query whose answer would exceed the service's stated ``max_reply_bytes``
(:class:`ReplyTooLargeError`).

Page (``pir_query`` with ``"page": {"ticket", "offset", "version"}``): rows ``offset..`` of
the answer the ticket names (a MAC under a key derived from the service's OPRF key, bound to
the service, the client, the buckets and an expiry). If the table changed version since,
the page is the first one of the answer at the new version, and the client starts over
(the OPRF evaluations stay valid: updates keep the key).

The client checks every answer against the key it pinned (:func:`finalize`): an answer under
another key is refused (:class:`KeyChangedError`: the service was published again, and only
an explicit sync pins its new key), and in mode 1 an evaluation whose proof is missing or
does not verify is refused (:class:`~rainbridge.errors.ProofError`). A query blinded in
another mode than the table's is refused by the server before any work.

Sync (``pir_sync``, private mode's replica): :mod:`rainbridge.protocols.pir.replica_sync`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge.crypto import oprf, voprf
from rainbridge.errors import DataError, ProofError
from rainbridge.protocols.pir.client import Answer, PinnedKey, Replica, layout_from, open_rows
from rainbridge.protocols.pir.table import (
    TAG,
    PirTable,
    Rows,
    buckets_of,
    split_outputs,
)

#: IDs per query message (each costs the server one scalar multiplication)
MAX_BATCH = 4096
#: raw bytes of rows per message (base64 and JSON keep a page under the control limit)
PAGE_BYTES = 1 << 20
#: the default bound on one bucket-mode answer (a service states its own)
MAX_REPLY_BYTES = 256 << 20
#: seconds a bucket-mode answer's ticket lets its pages be read
TICKET_SECONDS = 600
#: times a client starts reading an answer over because the table changed under it
MAX_RESTARTS = 8
MODES = ("private", "bucket")


class ReplyTooLargeError(DataError):
    """A query whose answer would exceed the bound its service states; nothing was done."""


class RebucketedError(DataError):
    """The service's buckets are not the ones the query was made for (it was republished)."""


class KeyChangedError(DataError):
    """A service answered under another OPRF key than the one the client pinned (it was
    published again, or it is not the service the client pinned); nothing was read."""


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


def _pack_answer_rows(rows: Rows) -> dict[str, str]:
    """An answer's rows: tags, versions and sealed records (the buckets are the query's)."""
    raw = rows.to_bytes()
    return {k: b64(raw[k]) for k in ("tags", "versions", "sealed")}


def _unpack_answer_rows(obj: Any, width: int, what: str) -> Rows:
    if not isinstance(obj, dict):
        raise DataError(f"{what}: malformed rows")
    parts = {k: unb64(obj.get(k), what) for k in ("tags", "versions", "sealed")}
    n = len(parts["tags"]) // TAG
    parts["buckets"] = bytes(4 * n)
    return Rows.from_bytes(parts, width, what)


def header(table: PirTable) -> dict[str, Any]:
    """What every answer of the service says of its table: key, version, layout, sizes."""
    return {
        "key_id": table.key_id,
        "version": table.version,
        "layout": table.layout.to_json(),
        "bucket_bits": table.bucket_bits,
        "rows_total": len(table.rows),
        **table.key_header(),
    }


def _int_list(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in value
    ):
        raise DataError(f"{what}: a list of integers")
    return value


# -- the server ------------------------------------------------------------------------------


def answer(
    table: PirTable,
    msg: dict[str, Any],
    modes: tuple[str, ...] = MODES,
    *,
    peer: str = "",
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """A query's answer, or a page of a bucket-mode answer (``"page"`` in ``msg``)."""
    if "page" in msg:
        return answer_page(table, msg, peer=peer)
    return answer_query(table, msg, modes, peer=peer, max_reply_bytes=max_reply_bytes)


def check_oprf_mode(table: PirTable, msg: dict[str, Any]) -> None:
    """Refuse, before any work, a query blinded in another OPRF mode than the table's."""
    asked = msg.get("oprf_mode", oprf.MODE_OPRF)
    if asked != table.oprf_mode:
        raise DataError(
            f"this service evaluates the OPRF in mode {table.oprf_mode}, not {asked!r}: "
            "ask its info again (or sync) and query in its mode"
        )


def check_query(
    table: PirTable,
    msg: dict[str, Any],
    modes: tuple[str, ...] = MODES,
    *,
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> tuple[int, np.ndarray | None]:
    """Validate a query before any work: its IDs, and in bucket mode the distinct buckets
    whose rows the answer will carry (within ``max_reply_bytes``).

    Raises
    ------
    DataError
        A malformed query (unknown or disallowed mode, too many elements, a bucket out of
        range); :class:`ReplyTooLargeError` over the bound; :class:`RebucketedError` for
        buckets of another bucket size.
    """
    mode = msg.get("mode")
    if mode not in MODES:
        raise DataError(f"unknown PIR mode {mode!r} (use {' or '.join(MODES)})")
    if mode not in modes:
        raise DataError(f"this service does not answer {mode!r} queries")
    check_oprf_mode(table, msg)
    elements = unb64(msg.get("elements"), "PIR query")
    n, rest = divmod(len(elements), oprf.ELEMENT_SIZE)
    if rest or not 1 <= n <= MAX_BATCH:
        raise DataError(f"a PIR query carries 1 to {MAX_BATCH} whole 32-byte elements")
    if mode != "bucket":
        return n, None
    buckets = _int_list(msg.get("buckets"), "a bucket-mode query's buckets")
    if len(buckets) != n:
        raise DataError("a bucket-mode query names one bucket per element")
    bits = msg.get("bucket_bits", table.bucket_bits)
    if bits != table.bucket_bits:
        raise RebucketedError(
            f"the service's buckets are of {table.bucket_bits} bits now, not {bits!r}: ask again"
        )
    distinct = np.unique(np.asarray(buckets, dtype=np.int64))
    starts, ends = table.bucket_spans(distinct)
    total = int((ends - starts).sum())
    size = total * table.row_bytes
    if size > max_reply_bytes:
        fit = max(1, n * max_reply_bytes // max(size, 1))
        raise ReplyTooLargeError(
            f"the answer would carry {total:,} rows of {len(distinct):,} buckets, "
            f"{size:,} bytes: over the service's max_reply_bytes of {max_reply_bytes:,}; "
            f"ask fewer IDs at a time (about {fit:,}) or use private mode"
        )
    return n, distinct


def evaluate(table: PirTable, elements: bytes) -> dict[str, str]:
    """The table key's evaluation of a query's blinded elements, as an answer carries it:
    ``evaluated`` and, for a table of mode 1, the batch's ``proof`` (base64).

    Raises
    ------
    InvalidElementError
        An element that is not a valid group element (or an empty or ragged batch).
    """
    if table.oprf_mode == voprf.MODE_VOPRF:
        ev = voprf.evaluate(table.key, elements)
        return {"evaluated": b64(ev.elements), "proof": b64(ev.proof)}
    return {"evaluated": b64(oprf.evaluate(table.key, elements))}


def answer_query(
    table: PirTable,
    msg: dict[str, Any],
    modes: tuple[str, ...] = MODES,
    *,
    peer: str = "",
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """Evaluate a query's blinded elements (checked first: :func:`check_query`); in bucket
    mode, with the answer's ticket and first page.

    Raises
    ------
    DataError
        As :func:`check_query`; InvalidElementError for an element that is not a valid
        group element.
    """
    _, distinct = check_query(table, msg, modes, max_reply_bytes=max_reply_bytes)
    with table.lock:
        reply: dict[str, Any] = {"ok": True, **header(table)}
    if distinct is not None:
        starts, ends = table.bucket_spans(distinct)
        total = int((ends - starts).sum())
        ticket = _ticket(table, str(msg.get("service", "")), peer, distinct.tolist())
        reply["answer"] = {
            "ticket": ticket,
            "rows": total,
            "bytes": total * table.row_bytes,
            **_page(table, distinct, 0),
        }
    reply.update(evaluate(table, unb64(msg.get("elements"), "PIR query")))
    return reply


def _ticket_key(table: PirTable) -> bytes:
    return hashlib.sha256(b"rainbridge/pir/answer-ticket/v1" + table.key).digest()


def _ticket_mac(table: PirTable, service: str, peer: str, buckets: list[int], expires: int) -> str:
    body = json.dumps([service, peer, buckets, expires], separators=(",", ":")).encode()
    return hmac.new(_ticket_key(table), body, hashlib.sha256).hexdigest()


def _ticket(table: PirTable, service: str, peer: str, buckets: list[int]) -> dict[str, Any]:
    expires = int(time.time()) + TICKET_SECONDS
    return {
        "buckets": buckets,
        "expires": expires,
        "mac": _ticket_mac(table, service, peer, buckets, expires),
    }


def _page(table: PirTable, buckets: np.ndarray, offset: int) -> dict[str, Any]:
    with table.lock:  # the rows and the version they are of, together
        return _page_locked(table, buckets, offset)


def _page_locked(table: PirTable, buckets: np.ndarray, offset: int) -> dict[str, Any]:
    starts, ends = table.bucket_spans(buckets)
    total = int((ends - starts).sum())
    if not 0 <= offset <= total:
        raise DataError(f"an answer's page offset {offset} outside 0..{total}")
    per_page = max(1, PAGE_BYTES // table.row_bytes)
    end = min(total, offset + per_page)
    return {
        "version": table.version,
        "answer_rows": total,
        "offset": offset,
        "rows": _pack_answer_rows(table.bucket_rows(buckets, offset, end, (starts, ends))),
        "next": end if end < total else None,
    }


def answer_page(table: PirTable, msg: dict[str, Any], *, peer: str = "") -> dict[str, Any]:
    """One page of a bucket-mode answer, named by its ticket (see the module docstring)."""
    page = msg.get("page")
    if not isinstance(page, dict) or not isinstance(page.get("ticket"), dict):
        raise DataError("a page request names its answer's ticket")
    ticket = page["ticket"]
    buckets = _int_list(ticket.get("buckets"), "a ticket's buckets")
    expires, mac = ticket.get("expires"), ticket.get("mac")
    if not isinstance(expires, int) or not isinstance(mac, str):
        raise DataError("a malformed ticket")
    good = _ticket_mac(table, str(msg.get("service", "")), peer, buckets, expires)
    if not hmac.compare_digest(good, mac):
        raise DataError(
            "the answer's ticket is not this service's (was it republished?): ask again"
        )
    if expires < time.time():
        raise DataError("the answer's ticket has expired: ask again")
    offset, version = page.get("offset"), page.get("version")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise DataError("a page offset is an integer")
    arr = np.asarray(buckets, dtype=np.int64)
    if version != table.version:
        offset = 0  # the table changed: the answer starts over at the new version
    return {"ok": True, "key_id": table.key_id, **_page(table, arr, offset)}


# -- the client ------------------------------------------------------------------------------


def make_query(
    service: str,
    ids: list[str],
    mode: str,
    bucket_bits: int | None = None,
    *,
    oprf_mode: int = voprf.MODE_VOPRF,
) -> tuple[oprf.Blinded, dict[str, Any]]:
    """Blind ``ids`` (fresh blinds, in the service's ``oprf_mode``) into a query message."""
    if not 1 <= len(ids) <= MAX_BATCH:
        raise DataError(f"a PIR query asks 1 to {MAX_BATCH} IDs")
    if oprf_mode not in (oprf.MODE_OPRF, voprf.MODE_VOPRF):
        raise DataError(f"unknown OPRF mode {oprf_mode!r}")
    q = oprf.blind([i.encode() for i in ids], context=oprf.context_string(oprf_mode))
    msg: dict[str, Any] = {
        "type": "pir_query",
        "service": service,
        "mode": mode,
        "elements": b64(q.elements),
        "oprf_mode": oprf_mode,
    }
    if mode == "bucket":
        if bucket_bits is None:
            raise DataError("a bucket-mode query needs the service's bucket bits")
        msg["buckets"] = [int(b) for b in buckets_of(pa.array(ids), bucket_bits)]
        msg["bucket_bits"] = bucket_bits
    return q, msg


def finalize(
    pinned: PinnedKey | dict[str, Any], q: oprf.Blinded, reply: dict[str, Any], what: str = ""
) -> list[bytes]:
    """The 64-byte OPRF outputs of a query from its answer, checked against the pinned key
    (a :class:`PinnedKey`, or a service header to pin from): the answer must be under that
    key and, in mode 1, carry a proof that verifies under its public key.

    Raises
    ------
    KeyChangedError
        The answer names another key or OPRF mode than the pinned one.
    ProofError
        A mode-1 answer without a proof, or whose proof does not verify.
    InvalidElementError
        The answer does not hold one valid element per query element.
    """
    what = what or "the PIR answer"
    pin = pinned if isinstance(pinned, PinnedKey) else PinnedKey.from_header(pinned, what)
    key_id, mode = reply.get("key_id"), reply.get("oprf_mode", oprf.MODE_OPRF)
    if key_id != pin.key_id or mode != pin.oprf_mode:
        raise KeyChangedError(
            f"{what} is under key {key_id!r} (OPRF mode {mode!r}), not the pinned key "
            f"{pin.key_id!r} (mode {pin.oprf_mode}): the service was published again; "
            "sync it to pin its new key"
        )
    evaluated = unb64(reply.get("evaluated"), what)
    if not pin.verifiable:
        return oprf.finalize(q, evaluated)
    if "proof" not in reply:
        raise ProofError(f"{what} carries no proof of its evaluation")
    assert pin.public_key is not None  # a verifiable pin always holds its key
    ev = voprf.Evaluation(evaluated, unb64(reply.get("proof"), what))
    return voprf.finalize(q, ev, pin.public_key)


class BucketAnswer:
    """A bucket-mode answer read page by page: only the rows whose tag is one of the query's
    are kept, so the client's memory is bounded by a page and the rows it asked for.

    ``pinned``: the key the evaluation is checked against (by default, the one the answer's
    header names: trust on first use)."""

    def __init__(
        self,
        q: oprf.Blinded,
        reply: dict[str, Any],
        peer: str,
        pinned: PinnedKey | None = None,
    ) -> None:
        self.what = f"{peer}'s PIR answer"
        self.pinned = pinned or PinnedKey.from_header(reply, self.what)
        self.outputs = finalize(self.pinned, q, reply, self.what)
        self.ids = [x.decode() for x in q.inputs]
        self.layout = layout_from(reply.get("layout"), self.what)
        tags, _ = split_outputs(self.outputs)
        self.wanted = np.unique(tags.view("V16").reshape(-1))
        first = reply.get("answer")
        if not isinstance(first, dict) or not isinstance(first.get("ticket"), dict):
            raise DataError(f"{self.what}: no answer")
        self.ticket = first["ticket"]
        self.restarts = 0
        self.version: Any = None
        self.total = 0
        self.received = 0
        self.hits: list[Rows] = []
        self.next = self.take(first)

    def _start(self, version: Any, total: Any) -> None:
        if not isinstance(version, int) or not isinstance(total, int) or total < 0:
            raise DataError(f"{self.what}: malformed page")
        if self.version is not None:
            self.restarts += 1
            if self.restarts > MAX_RESTARTS:
                raise DataError(f"{self.what}: the table changes faster than it can be read")
        self.version, self.total, self.received, self.hits = version, total, 0, []

    def take(self, page: dict[str, Any]) -> dict[str, Any] | None:
        """Keep one page's rows that the query wants; the next page request, or None."""
        if "key_id" in page and page["key_id"] != self.pinned.key_id:
            raise KeyChangedError(f"{self.what}: a page under another key: ask again")
        version, total, offset, nxt = (page.get(k) for k in ("version", "answer_rows",
                                                            "offset", "next"))  # fmt: skip
        if version != self.version:
            if offset != 0:
                raise DataError(f"{self.what}: a page of another version")
            self._start(version, total)
        if offset != self.received or total != self.total:
            raise DataError(f"{self.what}: a page out of order")
        rows = _unpack_answer_rows(page.get("rows"), self.layout.size, self.what)
        self.received += len(rows)
        if self.received > self.total or (nxt is not None and (nxt != self.received or not rows)):
            raise DataError(f"{self.what}: pages that do not add up")
        if len(rows) and len(self.wanted):
            keys = rows.tags.view("V16").reshape(-1)
            at = np.minimum(np.searchsorted(self.wanted, keys), len(self.wanted) - 1)
            hit = np.flatnonzero(self.wanted[at] == keys)
            if len(hit):
                self.hits.append(rows.take(hit))
        if nxt is None:
            if self.received != self.total:
                raise DataError(f"{self.what}: {self.received} of {self.total} rows arrived")
            self.next = None
            return None
        self.next = {"ticket": self.ticket, "offset": nxt, "version": self.version}
        return self.next

    def answers(self) -> list[Answer]:
        if self.next is not None:
            raise DataError(f"{self.what}: the answer is not complete")
        if self.hits:
            rows = Rows(
                np.concatenate([h.tags for h in self.hits]),
                np.concatenate([h.versions for h in self.hits]),
                np.concatenate([h.buckets for h in self.hits]),
                np.concatenate([h.sealed for h in self.hits]),
            )
            keys = rows.tags.view("V16").reshape(-1)
            _, first = np.unique(keys, return_index=True)  # sorted by tag, each once
            rows = rows.take(first)
        else:
            rows = Rows.empty(self.layout.size)
        return open_rows(self.layout, rows, self.outputs, self.ids)


def read_answer(
    q: oprf.Blinded,
    reply: dict[str, Any],
    replica: Replica | None,
    peer: str,
    pinned: PinnedKey | None = None,
) -> list[Answer]:
    """The answers of a query: from the replica (private mode, checked against the key it
    was copied under) or, for a bucket-mode answer that fits in its first message, its rows
    (checked against ``pinned``; a longer one: :class:`BucketAnswer`)."""
    what = f"{peer}'s PIR answer"
    if "answer" in reply:
        got = BucketAnswer(q, reply, peer, pinned)
        if got.next is not None:
            raise DataError(f"{what}: the answer continues in pages (read it page by page)")
        return got.answers()
    if replica is None:
        raise DataError("a private-mode answer needs a replica of the table")
    # checked against the key the replica was copied under, before anything is read
    outputs = finalize(replica.pinned, q, reply, what)
    ids = [x.decode() for x in q.inputs]
    if reply.get("version") != replica.version:
        raise DataError("the replica is behind the service: sync it first")
    return replica.lookup(outputs, ids)


def run_query(
    fetch: Any,
    service: str,
    ids: list[str],
    mode: str,
    replica: Replica | None = None,
    bucket_bits: int | None = None,
    peer: str = "server",
    pinned: PinnedKey | None = None,
) -> list[Answer]:
    """A whole query through ``fetch(msg) -> reply`` (a plain function): blind, ask, read
    every page, checking the evaluation against the replica's key (private mode) or
    ``pinned`` (bucket mode; by default the answer's own: trust on first use). The node does
    the same over the data plane."""
    pin = replica.pinned if mode == "private" and replica is not None else pinned
    oprf_mode = pin.oprf_mode if pin is not None else voprf.MODE_VOPRF
    q, msg = make_query(service, ids, mode, bucket_bits, oprf_mode=oprf_mode)
    reply = fetch(msg)
    if mode == "private":
        return read_answer(q, reply, replica, peer)
    got = BucketAnswer(q, reply, peer, pin)
    while got.next is not None:
        got.take(fetch({"type": "pir_query", "service": service, "page": got.next}))
    return got.answers()
