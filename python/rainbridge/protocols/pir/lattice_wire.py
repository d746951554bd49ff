"""The lattice mode's PIR messages between a client node and the server node (JSON over the
data plane's control exchange, binary fields base64, every message under the control limit),
the server's checks and answers, and the client's reading.

The lattice mode (:mod:`rainbridge.protocols.pir.lattice`) keeps the sealed table at the
server, laid out as a byte matrix ``D`` (``l`` rows, ``m`` columns; each column a stack of
slots ``tag ‖ version ‖ sealed label``), and answers SimplePIR queries over it: the client
holds a *hint* ``H = D·A`` (``l × 1024`` u32) and reads two whole columns per ID.

Query (``pir_query``, ``"mode": "lattice"``): ``{"service", "mode", "elements": b64(32·k),
"oprf_mode"}`` — the OPRF step of private mode, metered and rate-limited as private mode's
(one query, ``k`` IDs). Answer: ``{"ok", "evaluated", "proof" (a verifiable service's),
"key_id", "oprf_mode", "labels": label layout, "lattice": {"layout_id", "version",
"ticket"}}``; the client checks the evaluation against the key it pinned, as in the other
modes (:func:`rainbridge.protocols.pir.wire.finalize`). The ticket (a MAC under a key the
server draws at start, so a restart voids it) is bound to the service, the client, the
number of vectors it allows (2 per ID), the hint's layout and version, and an expiry.

Vectors (``pir_lattice``): ``{"service", "ticket", "lo", "vectors": b64(u32…)}``: whole
query vectors of ``m`` u32 each (``lo`` = 0), as many as fit in :data:`PAGE_BYTES`; where one
vector alone is larger (``m > 2^18``), a slice ``lo..`` of one vector, whose answer is the
product of that slice alone (the answer is linear in the vector: the client adds the
slices' answers). The server counts the entries each ticket has spent and refuses more than
``vectors·m``. Answer: ``{"ok", "version", "answers": b64(c·l u32)}``.

Hint (``pir_hint``): ``{"service", "have": {"layout_id", "version"} | null, "offset"}``:
pages of at most :data:`PAGE_BYTES` of hint rows — the whole hint (``"kind": "full"``) or
the rows changed since ``have`` (``"kind": "rows"``, with their indices) — and where the
next page starts (``next``, null at the end). Every page says the version it is of; a copy
whose version changes midway starts over.

What each side learns: the server sees blinded OPRF elements (uniform group elements),
then ``2k`` LWE ciphertexts (``A·s + e + Δ·u_j``: pseudorandom under LWE, whatever the
columns), their count and sizes — the same for any IDs, present or absent. The client
learns two whole columns per ID: the slots there are sealed under OPRF outputs it does not
hold, except its own ID's row. Model: semi-honest server. The columns stay private even
from a malicious one, whose OPRF evaluations are also proven under the pinned key (a
verifiable service: RFC 9497 mode 1), but it can answer the vectors wrongly: the client's
decoder refuses an answer whose noise is too large (most wrong answers; a typed error), and
what passes shows as a tag mismatch ("absent") or, rarely, a corrupted label — the sealing
(AES-CTR) is not authenticated. The OPRF limits a malicious client to one openable row per
metered ID.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rainbridge.crypto import oprf
from rainbridge.errors import DataError
from rainbridge.protocols.pir.client import Answer, layout_from, open_rows
from rainbridge.protocols.pir.lattice import LWE_N as LWE_N
from rainbridge.protocols.pir.lattice import MAX_BATCH as ANSWER_BATCH
from rainbridge.protocols.pir.lattice import (
    LatticeClient,
    LatticeDb,
    LatticeLayout,
    StaleHintError,
)
from rainbridge.protocols.pir.table import TAG, PirTable, Rows, split_outputs
from rainbridge.protocols.pir.wire import MAX_BATCH, b64, check_oprf_mode, unb64
from rainbridge.protocols.pir.wire import evaluate as wire_evaluate

#: raw bytes of vectors, answers or hint rows per message (base64 and JSON keep it under
#: the control exchange's 2 MiB)
PAGE_BYTES = 1 << 20
#: seconds a ticket lets its vectors be sent
TICKET_SECONDS = 600
#: times a client starts a hint copy over because the service changed under it
MAX_RESTARTS = 8
#: bytes of a payload before the sealed label: the version it was sealed at (u64 LE)
VERSION_BYTES = 8


def _words(value: Any, what: str) -> np.ndarray:
    """The little-endian u32 words a peer's base64 field carries; a byte count that is not a
    whole number of words is refused (a forged or truncated message)."""
    raw = unb64(value, what)
    if len(raw) % 4:
        raise DataError(f"{what}: {len(raw)} bytes are not whole 4-byte words")
    return np.frombuffer(raw, dtype="<u4")


def vectors_per_message(layout: LatticeLayout) -> int:
    """Whole query vectors one ``pir_lattice`` message may carry: they, and their answers
    (``l`` u32 each), fit in :data:`PAGE_BYTES` (at least one)."""
    return max(1, PAGE_BYTES // (4 * max(layout.cols, layout.rows)))


class TicketError(DataError):
    """A lattice query's ticket is forged, another client's or service's, spent or expired."""


# -- the OPRF step, in one place ------------------------------------------------------------


# -- the server's table: the sealed rows as slots -------------------------------------------


def payloads_of(rows: Rows) -> np.ndarray:
    """Each row's slot payload: its version (8 bytes LE) ‖ its sealed label."""
    versions = rows.versions.astype("<u8").view(np.uint8).reshape(-1, VERSION_BYTES)
    return np.ascontiguousarray(np.concatenate([versions, rows.sealed], axis=1))


def build_db(table: PirTable, **kw: Any) -> LatticeDb:
    """The lattice layout of a sealed table (its rows as slots)."""
    with table.lock:
        rows = table.rows
    return LatticeDb.build(np.ascontiguousarray(rows.tags), payloads_of(rows), **kw)


def update_db(db: LatticeDb, removed: np.ndarray, added: Rows) -> None:
    """Bring ``db`` to the table's next version: ``removed`` tags (those replaced by
    ``added`` rows among them) out, ``added`` rows in."""
    fresh = {bytes(t) for t in added.tags}
    gone = np.array([t for t in removed if bytes(t) not in fresh], np.uint8).reshape(-1, TAG)
    db.update(np.ascontiguousarray(added.tags), payloads_of(added), gone)


# -- tickets ----------------------------------------------------------------------------------


@dataclass
class Tickets:
    """The server's tickets: issued under a key drawn at start, and the entries each has
    spent (so a ticket answers at most the vectors it names, however they are split)."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    spent: dict[str, tuple[int, int]] = field(default_factory=dict)  # mac -> (entries, expires)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _mac(self, body: list[Any]) -> str:
        raw = json.dumps(body, separators=(",", ":")).encode()
        return hmac.new(self.key, raw, hashlib.sha256).hexdigest()

    def issue(self, service: str, peer: str, vectors: int, layout_id: str, version: int) -> dict:
        expires = int(time.time()) + TICKET_SECONDS
        nonce = os.urandom(8).hex()
        mac = self._mac([service, peer, vectors, layout_id, version, expires, nonce])
        return {
            "vectors": vectors,
            "layout_id": layout_id,
            "version": version,
            "expires": expires,
            "nonce": nonce,
            "mac": mac,
        }

    def check(self, ticket: Any, service: str, peer: str) -> dict[str, Any]:
        """The ticket's fields, once its MAC is this server's for this service and peer and
        it has not expired."""
        if not isinstance(ticket, dict):
            raise TicketError("a lattice query's vectors name its ticket")
        fields = [ticket.get(k) for k in ("vectors", "layout_id", "version", "expires",
                                          "nonce", "mac")]  # fmt: skip
        vectors, layout_id, version, expires, nonce, mac = fields
        ints = (vectors, version, expires)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in ints) or not all(
            isinstance(x, str) for x in (layout_id, nonce, mac)
        ):
            raise TicketError("a malformed ticket")
        good = self._mac([service, peer, vectors, layout_id, version, expires, nonce])
        if not hmac.compare_digest(good, str(mac)):
            raise TicketError(
                "the ticket is not one this service issued to this node (the server restarted, "
                "or it is another service's or client's): query again"
            )
        if int(expires or 0) < time.time():
            raise TicketError("the ticket has expired: query again")
        return dict(ticket)

    def spend(self, mac: str, entries: int, vectors: int, m: int, expires: int) -> None:
        """Count ``entries`` against the ticket's ``vectors`` of ``m`` entries; refused
        (nothing counted) past them."""
        with self.lock:
            now = time.time()
            # (not this ticket's count: checked just before it expired, it would start afresh)
            for k in [k for k, (_, exp) in self.spent.items() if exp < now and k != mac]:
                del self.spent[k]
            used = self.spent.get(mac, (0, expires))[0]
            if used + entries > vectors * m:
                raise TicketError(
                    f"the ticket allows {vectors} vector(s) of {m} entries; {used} entries are "
                    f"answered and {entries} more is past them: query again for more IDs"
                )
            self.spent[mac] = (used + entries, expires)


# -- the server: checks and answers -----------------------------------------------------------


def check_query(table: PirTable, msg: dict[str, Any]) -> int:
    """The number of IDs (blinded elements) a lattice-mode query asks; refused if malformed
    or blinded in another OPRF mode than the service's."""
    check_oprf_mode(table, msg)
    elements = unb64(msg.get("elements"), "a lattice-mode PIR query")
    n, rest = divmod(len(elements), oprf.ELEMENT_SIZE)
    if rest or not 1 <= n <= MAX_BATCH:
        raise DataError(f"a PIR query carries 1 to {MAX_BATCH} whole 32-byte elements")
    return n


def answer_query(
    table: PirTable,
    db: LatticeDb,
    tickets: Tickets,
    msg: dict[str, Any],
    *,
    service: str,
    peer: str,
) -> dict[str, Any]:
    """Evaluate the query's blinded elements (with the batch's proof for a verifiable
    service: :func:`rainbridge.protocols.pir.wire.evaluate`) and issue the ticket for its
    ``2k`` vectors."""
    n = check_query(table, msg)
    evaluated = wire_evaluate(table, unb64(msg.get("elements"), "a lattice-mode PIR query"))
    with table.lock:
        head = {"key_id": table.key_id, "labels": table.layout.to_json(), **table.key_header()}
    layout_id, version = db.layout.layout_id, db.version
    return {
        "ok": True,
        **head,
        "lattice": {
            "layout_id": layout_id,
            "version": version,
            "ticket": tickets.issue(service, peer, 2 * n, layout_id, version),
        },
        **evaluated,
    }


def read_vectors(msg: dict[str, Any], layout: LatticeLayout) -> tuple[np.ndarray, int]:
    """The query vectors a ``pir_lattice`` message carries, as ``(c, m)`` u32 (a slice: one
    row, zero outside ``lo..``), and the entries they count."""
    m = layout.cols
    raw = unb64(msg.get("vectors"), "a lattice query's vectors")
    lo = msg.get("lo", 0)
    if not isinstance(lo, int) or isinstance(lo, bool):
        raise DataError("a lattice query's 'lo' is an integer")
    if len(raw) % 4 or not raw:
        raise DataError("a lattice query's vectors are whole u32 entries (at least one)")
    entries = len(raw) // 4
    vec = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    if 4 * m <= PAGE_BYTES or (lo == 0 and entries % m == 0):
        if lo != 0 or entries % m:
            raise DataError(
                f"a lattice query's vectors are {m} u32 each (the layout's columns): "
                f"got {entries} entries; sync the hint if the layout changed"
            )
        most = vectors_per_message(layout)
        if entries // m > most:
            raise DataError(
                f"a lattice query message carries at most {most} vectors (got {entries // m}): "
                "send them in more messages"
            )
        return vec.reshape(-1, m), entries
    # one vector larger than a message: a slice of it
    if not 0 <= lo < m or lo + entries > m:
        raise DataError(f"a lattice query's slice {lo}..{lo + entries} lies outside 0..{m}")
    out = np.zeros((1, m), np.uint32)
    out[0, lo : lo + entries] = vec
    return out, entries


def answer_vectors(
    db: LatticeDb,
    tickets: Tickets,
    msg: dict[str, Any],
    *,
    service: str,
    peer: str,
) -> dict[str, Any]:
    """The answers to one ``pir_lattice`` message, once its ticket and sizes check.

    The caller holds the service's lock: the layout and version checked are the ones the
    answer is computed on.

    Raises
    ------
    TicketError
        A forged, foreign, expired or spent ticket.
    StaleHintError
        The ticket's hint is not the service's now (sync the hint, query again).
    DataError
        Vectors of the wrong size.
    """
    ticket = tickets.check(msg.get("ticket"), service, peer)
    layout = db.layout
    if ticket["layout_id"] != layout.layout_id:
        raise StaleHintError(
            "the service was laid out anew since the ticket's hint: sync the hint and query again"
        )
    if ticket["version"] != db.version:
        raise StaleHintError(
            f"hint of version {ticket['version']}, the service is at version {db.version}: "
            "sync the hint and query again"
        )
    vectors, entries = read_vectors(msg, layout)
    tickets.spend(ticket["mac"], entries, ticket["vectors"], layout.cols, ticket["expires"])
    parts = [db.answer(vectors[i : i + ANSWER_BATCH]) for i in range(0, len(vectors), ANSWER_BATCH)]
    answers = np.ascontiguousarray(np.concatenate(parts), dtype="<u4")
    return {"ok": True, "version": db.version, "answers": b64(answers.tobytes())}


def hint_page(db: LatticeDb, msg: dict[str, Any], labels: Any) -> dict[str, Any]:
    """One page of the hint, or of its rows changed since the client's ``have``.

    The caller holds the service's lock (rows and version of one version)."""
    layout = db.layout
    per = max(1, PAGE_BYTES // (4 * LWE_N))
    offset = msg.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise DataError("a hint page's offset is a non-negative integer")
    have = msg.get("have")
    rows: np.ndarray | None = None
    if isinstance(have, dict) and have.get("layout_id") == layout.layout_id:
        v = have.get("version")
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= db.version:
            rows = db.hint_rows_since(v)
    kind = "full" if rows is None else "rows"
    total = layout.rows if rows is None else len(rows)
    if offset > total:
        raise DataError(f"a hint page's offset {offset} lies outside 0..{total}")
    end = min(total, offset + per)
    idx = np.arange(offset, end) if rows is None else np.asarray(rows[offset:end], np.int64)
    values = np.ascontiguousarray(np.asarray(db.hint)[idx], dtype="<u4")
    page: dict[str, Any] = {
        "ok": True,
        "layout": layout.to_json(),
        "labels": labels,
        "version": db.version,
        "kind": kind,
        "total": total,
        "offset": offset,
        "values": b64(values.tobytes()),
        "next": end if end < total else None,
    }
    if rows is not None:
        page["rows"] = b64(idx.astype("<u4").tobytes())
    return page


# -- the client -------------------------------------------------------------------------------


@dataclass
class Hint:
    """A client's copy of a service's hint: its layout, version, label layout and rows."""

    layout: LatticeLayout
    version: int
    labels: Any
    values: np.ndarray  # (l, n) uint32, never changed in place (queries may be reading it)
    _client: LatticeClient | None = field(default=None, repr=False, compare=False)

    def meta(self) -> dict[str, Any]:
        return {"layout": self.layout.to_json(), "version": self.version, "labels": self.labels}

    def client(self) -> LatticeClient:
        """The lattice client of this hint (made once: a newer hint is a new object)."""
        if self._client is None:
            self._client = LatticeClient(self.layout, self.values, self.version)
        return self._client


class HintSync:
    """A hint copied or caught up page by page: ``request()`` the next message, ``take()``
    each reply; :attr:`hint` is current once ``take`` returns None."""

    def __init__(self, service: str, hint: Hint | None, peer: str) -> None:
        self.service, self.hint, self.what = service, hint, f"{peer}'s PIR hint"
        self.restarts = 0
        self.messages = 0
        self.bytes = 0  # of hint rows and row indices received (restarts included)
        self._begin()

    def _begin(self) -> None:
        self.offset = 0
        self.version: int | None = None
        self.kind: str | None = None
        self.layout_id: str | None = None
        self.rows: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.full: np.ndarray | None = None

    def request(self) -> dict[str, Any]:
        have = self.hint
        return {
            "type": "pir_hint",
            "service": self.service,
            "have": {"layout_id": have.layout.layout_id, "version": have.version} if have else None,
            "offset": self.offset,
        }

    def _restart(self) -> None:
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            raise DataError(f"{self.what}: the service changes faster than its hint copies")
        self._begin()

    def take(self, reply: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one page; the next request, or None when the hint is current."""
        self.messages += 1
        what = self.what
        layout = LatticeLayout.from_json(reply.get("layout"), what)
        version, kind, total, offset, nxt = (
            reply.get(k) for k in ("version", "kind", "total", "offset", "next")
        )
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (version, total,
                                                                              offset)):  # fmt: skip
            raise DataError(f"{what}: malformed page")
        assert isinstance(version, int) and isinstance(total, int) and isinstance(offset, int)
        if kind not in ("full", "rows"):
            raise DataError(f"{what}: malformed page")
        if not 0 <= total <= layout.rows:
            # changed rows are distinct rows of the hint: a larger total is never paged through
            raise DataError(f"{what}: a page of {total} rows for a hint of {layout.rows}")
        if self.version is not None and (version, kind, layout.layout_id) != (
            self.version,
            self.kind,
            self.layout_id,
        ):
            self._restart()  # the service changed (or was published again) during the copy
            return self.request()
        if offset != self.offset:
            raise DataError(f"{what}: a page out of order")
        n = LWE_N
        values = _words(reply.get("values"), what)
        if len(values) % n:
            raise DataError(f"{what}: hint rows are {n} u32 each")
        values = values.reshape(-1, n)
        self.bytes += values.nbytes
        got = len(values)
        if offset + got > total or (nxt is not None and (nxt != offset + got or got == 0)):
            raise DataError(f"{what}: pages that do not add up")
        if kind == "full":
            if total != layout.rows:
                raise DataError(f"{what}: a hint of {total} rows for a layout of {layout.rows}")
            if self.full is None:
                self.full = np.empty((total, n), np.uint32)
            self.full[offset : offset + got] = values
        else:
            if self.hint is None or self.hint.layout != layout:
                raise DataError(f"{what}: changed rows for a hint this node does not hold")
            rows = _words(reply.get("rows"), what)
            self.bytes += rows.nbytes
            if len(rows) != got or (got and int(rows.max()) >= layout.rows):
                raise DataError(f"{what}: changed rows that do not match their values")
            self.rows.append(rows.astype(np.int64))
            self.values.append(values)
        self.version, self.kind, self.offset = version, kind, offset + got
        self.layout_id = layout.layout_id
        if nxt is not None:
            return self.request()
        if self.offset != total:
            raise DataError(f"{what}: {self.offset} of {total} rows arrived")
        labels = reply.get("labels")
        if kind == "full":
            assert self.full is not None
            self.hint = Hint(layout, version, labels, self.full)
        else:
            assert self.hint is not None
            if self.hint.version > version:
                raise DataError(f"{what}: a hint of version {version}, older than this node's")
            # a copy: a query in flight may still be decoding with the old rows
            hint = self.hint.values.copy()
            if self.rows:
                hint[np.concatenate(self.rows)] = np.concatenate(self.values)
            self.hint = Hint(layout, version, labels, hint)
        self._begin()
        return None


def vector_messages(
    service: str, ticket: dict[str, Any], queries: np.ndarray, layout: LatticeLayout
) -> list[tuple[dict[str, Any], int, int]]:
    """The ``pir_lattice`` messages that carry ``queries`` (``(c, m)`` u32): each with the
    first vector it answers and how many (a slice counts 1, answered in part)."""
    c, m = queries.shape
    q = np.ascontiguousarray(queries, dtype="<u4")
    out: list[tuple[dict[str, Any], int, int]] = []
    base = {"type": "pir_lattice", "service": service, "ticket": ticket}
    if 4 * m <= PAGE_BYTES:
        per = vectors_per_message(layout)
        for lo in range(0, c, per):
            part = q[lo : lo + per]
            out.append(({**base, "lo": 0, "vectors": b64(part.tobytes())}, lo, len(part)))
        return out
    step = PAGE_BYTES // 4
    for j in range(c):
        for lo in range(0, m, step):
            out.append(({**base, "lo": lo, "vectors": b64(q[j, lo : lo + step].tobytes())}, j, 1))
    return out


def read_answers(reply: dict[str, Any], count: int, layout: LatticeLayout, what: str) -> np.ndarray:
    """``count`` answers (``(count, l)`` u32) from a ``pir_lattice`` reply."""
    raw = _words(reply.get("answers"), what)
    if len(raw) != count * layout.rows:
        raise DataError(f"{what}: {len(raw)} answer entries, not {count}×{layout.rows}")
    return raw.astype(np.uint32).reshape(count, layout.rows)


def open_payloads(
    labels: Any,
    outputs: list[bytes],
    ids: list[str],
    payloads: list[bytes | None],
    what: str,
) -> list[Answer]:
    """Each ID's answer from the payload its columns held (``version ‖ sealed label``), opened
    with its OPRF output as private mode opens a replica's row."""
    layout = layout_from(labels, what)
    width = VERSION_BYTES + layout.size
    tags, _ = split_outputs(outputs)
    found = [i for i, p in enumerate(payloads) if p is not None]
    for i in found:
        if len(payloads[i] or b"") != width:
            raise DataError(f"{what}: a payload of {len(payloads[i] or b'')} bytes, not {width}")
    if found:
        raw = np.frombuffer(b"".join(payloads[i] or b"" for i in found), np.uint8)
        raw = raw.reshape(len(found), width)
        ftags = tags[found]
        _, first = np.unique(ftags.view("V16").reshape(-1), return_index=True)  # sorted, once
        rows = Rows(
            np.ascontiguousarray(ftags[first]),
            np.ascontiguousarray(raw[first, :VERSION_BYTES]).view("<u8").reshape(-1)
            .astype(np.uint64),
            np.zeros(len(first), np.uint32),
            np.ascontiguousarray(raw[first, VERSION_BYTES:]),
        )  # fmt: skip
    else:
        rows = Rows.empty(layout.size)
    return open_rows(layout, rows, outputs, ids)
