"""The wire format of :mod:`rainbridge.net.mux`: one mux message is one message on the link.

Payload: a header and a body. Header: kind (1 byte: DATA 0, CLOSE 1, ABORT 2, END 3), the
sub-channel's name (1 byte length, then ASCII; END names none), and for DATA the inner tag
(1 byte length, then 1 to 64 bytes of UTF-8). Body: the sub-channel's message (DATA) or the
abort reason (ABORT, UTF-8, at most :data:`MAX_ABORT_REASON` bytes); CLOSE and END have none.
Everything a peer sends is checked here (:func:`decode_message`) before the mux acts on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from rainbridge.errors import ChannelError, ProtocolViolationError
from rainbridge.net.channel import Buffer
from rainbridge.net.frames import MAX_TAG, encode_tag

#: longest sub-channel name
MAX_SUB = 48
#: longest abort reason carried by an ABORT message, in UTF-8 bytes
MAX_ABORT_REASON = 300
_SUB_RE = re.compile(r"[A-Za-z0-9._:-]{1,48}")


class Kind(IntEnum):
    """What a mux message is."""

    DATA = 0
    CLOSE = 1
    ABORT = 2
    END = 3


@dataclass(frozen=True)
class MuxMessage:
    """A decoded and checked mux message: its kind, sub-channel, inner tag and body offset."""

    kind: Kind
    sub: str
    tag: str
    body: memoryview
    #: the abort reason (ABORT only)
    reason: str = ""


def check_sub(sub: str) -> bytes:
    """The ASCII bytes of a sub-channel name; ``ChannelError`` (a local bug) if invalid."""
    if not isinstance(sub, str) or not _SUB_RE.fullmatch(sub):
        raise ChannelError(
            f"sub-channel name {str(sub)[:80]!r} must be 1 to {MAX_SUB} characters "
            "of A-Z a-z 0-9 . _ : -"
        )
    return sub.encode("ascii")


def encode_header(kind: Kind, sub: str, tag: str = "") -> bytes:
    """The header of a mux message (the inner tag for DATA only)."""
    if kind is Kind.END:
        return bytes((Kind.END, 0))
    sub_b = check_sub(sub)
    head = bytes((kind, len(sub_b))) + sub_b
    if kind is Kind.DATA:
        tag_b = encode_tag(tag)
        head += bytes((len(tag_b),)) + tag_b
    return head


def _trim_reason(reason: str) -> bytes:
    # Cut at a character boundary, so the peer's strict UTF-8 decoding accepts it.
    return reason.encode()[:MAX_ABORT_REASON].decode("utf-8", "ignore").encode()


def close_message(sub: str) -> bytes:
    """A whole CLOSE message for ``sub``."""
    return encode_header(Kind.CLOSE, sub)


def abort_message(sub: str, reason: str) -> bytes:
    """A whole ABORT message for ``sub`` (the reason cut to :data:`MAX_ABORT_REASON` bytes)."""
    return encode_header(Kind.ABORT, sub) + _trim_reason(reason)


def end_message() -> bytes:
    """A whole END message (the sender sends no more mux messages on the link)."""
    return encode_header(Kind.END, "")


def decode_message(raw: Buffer, *, peer: str) -> MuxMessage:
    """Parse and check a mux message; ``ProtocolViolationError`` naming what is wrong.

    The body is a view into ``raw`` (no copy).
    """
    view = memoryview(raw).cast("B")
    n = view.nbytes
    if n < 2:
        raise ProtocolViolationError(f"peer {peer!r} sent a truncated mux header ({n} bytes)")
    kind_b, sub_len = view[0], view[1]
    try:
        kind = Kind(kind_b)
    except ValueError:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a mux message of unknown kind {kind_b}"
        ) from None
    if kind is Kind.END:
        if sub_len or n != 2:
            raise ProtocolViolationError(f"peer {peer!r} sent a malformed mux END message")
        return MuxMessage(kind, "", "", view[2:])
    if not 1 <= sub_len <= MAX_SUB:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a sub-channel name of {sub_len} bytes (1 to {MAX_SUB})"
        )
    end = 2 + sub_len
    if n < end:
        raise ProtocolViolationError(f"peer {peer!r} sent a truncated mux header")
    sub_raw = bytes(view[2:end])
    sub = sub_raw.decode("ascii", "replace")
    if not sub_raw.isascii() or not _SUB_RE.fullmatch(sub):
        raise ProtocolViolationError(f"peer {peer!r} sent an invalid sub-channel name")
    if kind is Kind.DATA:
        if n < end + 1:
            raise ProtocolViolationError(f"peer {peer!r} sent a truncated mux header")
        tag_len = view[end]
        if not 1 <= tag_len <= MAX_TAG or n < end + 1 + tag_len:
            raise ProtocolViolationError(
                f"peer {peer!r} sent an invalid inner tag on sub-channel {sub!r}"
            )
        try:
            tag = bytes(view[end + 1 : end + 1 + tag_len]).decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise ProtocolViolationError(
                f"peer {peer!r} sent an inner tag that is not UTF-8 on sub-channel {sub!r}"
            ) from None
        return MuxMessage(kind, sub, tag, view[end + 1 + tag_len :])
    body = view[end:]
    if kind is Kind.CLOSE:
        if body.nbytes:
            raise ProtocolViolationError(f"peer {peer!r} sent a CLOSE with a body for {sub!r}")
        return MuxMessage(kind, sub, "", body)
    if body.nbytes > MAX_ABORT_REASON:
        raise ProtocolViolationError(
            f"peer {peer!r} sent an abort reason of {body.nbytes} bytes for {sub!r} "
            f"(at most {MAX_ABORT_REASON})"
        )
    try:
        reason = bytes(body).decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise ProtocolViolationError(
            f"peer {peer!r} sent an abort reason that is not UTF-8 for {sub!r}"
        ) from None
    return MuxMessage(kind, sub, "", body, reason)
