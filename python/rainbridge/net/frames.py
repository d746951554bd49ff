"""The wire frame: a fixed header, the message tag, then at most ``max_frame`` payload bytes.

Header (little-endian, :data:`HEADER`, 41 bytes): magic ``b"RB"``, version (u8), flags (u8),
session id (16 bytes), sequence number (u64, per direction, one per frame), total length of
the message the frame belongs to (u64), tag length (u8), payload length (u32). The tag
(UTF-8, at most :data:`MAX_TAG` bytes) follows the header, then the payload.

What this protects against: a peer (or a bug) that announces huge lengths to make the
receiver allocate without bound (CVE-2020-7226, MP-SPDZ's unbounded ``octetStream``
resize): every length is checked against its bound *before* anything is allocated; frames
replayed, dropped or reordered inside a session (the sequence number must be the next one);
frames from another session spliced in (the session id); a protocol that drifts out of step
(the tag); reserved flag bits and garbage (refused, never guessed at). Every refusal is a
:class:`~rainbridge.errors.ProtocolViolationError` that names the peer and the field at
fault and never echoes payload bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from rainbridge.errors import ChannelError, ProtocolViolationError

MAGIC = b"RB"
VERSION = 1
HEADER = struct.Struct("<2sBB16sQQBI")
#: longest tag, in UTF-8 bytes; tags name message kinds (``"psi/masked"``), they are not data
MAX_TAG = 64
#: the largest payload length the u32 field can carry
MAX_FRAME_LIMIT = (1 << 32) - 1

FLAG_FIRST = 0x01  # first frame of a message
FLAG_LAST = 0x02  # last frame of a message
FLAG_CLOSE = 0x04  # orderly end of the session
FLAG_ERROR = 0x08  # the sender aborted; payload is a short UTF-8 reason
#: every flag bit this version defines; any other bit set is refused (no silent extensions)
KNOWN_FLAGS = FLAG_FIRST | FLAG_LAST | FLAG_CLOSE | FLAG_ERROR
_CONTROL = FLAG_CLOSE | FLAG_ERROR
#: longest abort reason carried by an error frame
MAX_REASON = 500


def session_key(session_id: str) -> bytes:
    """The 16 bytes every frame of a session carries.

    A hash rather than the id itself, so that ids of any length and alphabet fit a fixed
    header field; 128 bits keep accidental collisions between live sessions out of reach.
    """
    return hashlib.sha256(session_id.encode()).digest()[:16]


def encode_tag(tag: str) -> bytes:
    """UTF-8 bytes of ``tag``; raises ``ChannelError`` (a local bug) if it is empty or too long."""
    raw = tag.encode()
    if not raw or len(raw) > MAX_TAG:
        raise ChannelError(f"message tag {tag[:80]!r} must be 1 to {MAX_TAG} bytes of UTF-8")
    return raw


@dataclass(frozen=True)
class Frame:
    """A decoded and checked frame header."""

    flags: int
    session: bytes
    seq: int
    total: int
    tag_len: int
    length: int

    @property
    def is_control(self) -> bool:
        """A close or error frame, which ends the session rather than carrying a message."""
        return bool(self.flags & _CONTROL)


def encode_header(
    flags: int, session: bytes, seq: int, total: int, tag: bytes, length: int
) -> bytes:
    """Header followed by the tag; unchecked beyond ``struct``, so tests can forge frames."""
    if len(tag) > MAX_TAG:
        raise ChannelError(f"message tag longer than {MAX_TAG} bytes")
    return HEADER.pack(MAGIC, VERSION, flags, session, seq, total, len(tag), length) + tag


def decode_header(
    raw: bytes | bytearray | memoryview,
    *,
    peer: str,
    session: bytes,
    seq: int,
    max_frame: int,
    max_message: int,
) -> Frame:
    """Parse and check a header; raise ``ProtocolViolationError`` naming what was wrong.

    Parameters
    ----------
    raw
        Exactly :data:`HEADER.size <HEADER>` bytes.
    peer
        The peer's name, for the error message.
    session
        The expected :func:`session_key`.
    seq
        The expected sequence number (the next one in this direction).
    max_frame, max_message
        Bounds on the payload length of one frame and on the announced message length.
    """
    if len(raw) != HEADER.size:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a truncated frame header ({len(raw)} of {HEADER.size} bytes)"
        )
    magic, version, flags, sess, fseq, total, tag_len, length = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolViolationError(f"peer {peer!r} sent a frame with a bad magic number")
    if version != VERSION:
        raise ProtocolViolationError(
            f"peer {peer!r} speaks frame version {version}, this node speaks {VERSION}"
        )
    if sess != session:
        raise ProtocolViolationError(f"peer {peer!r} sent a frame of another session")
    if fseq != seq:
        raise ProtocolViolationError(
            f"peer {peer!r} sent frame {fseq} where frame {seq} was expected "
            "(replayed, dropped or reordered)"
        )
    if flags & ~KNOWN_FLAGS:
        raise ProtocolViolationError(f"peer {peer!r} set unknown frame flags {flags:#04x}")
    if flags & _CONTROL:
        if flags & ~_CONTROL or (flags & _CONTROL) == _CONTROL:
            raise ProtocolViolationError(f"peer {peer!r} sent a malformed close/error frame")
        if total or tag_len or length > MAX_REASON or (flags & FLAG_CLOSE and length):
            raise ProtocolViolationError(f"peer {peer!r} sent a malformed close/error frame")
        return Frame(flags, sess, fseq, total, tag_len, length)
    if tag_len == 0 or tag_len > MAX_TAG:
        raise ProtocolViolationError(f"peer {peer!r} sent a tag of {tag_len} bytes")
    if length > max_frame:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a frame of {length} bytes; the limit is {max_frame}"
        )
    if total > max_message:
        raise ProtocolViolationError(
            f"peer {peer!r} announced a message of {total} bytes; the limit is {max_message}"
        )
    if length > total:
        raise ProtocolViolationError(f"peer {peer!r} sent a frame longer than its message")
    if length == 0 and not flags & FLAG_LAST:
        # An empty frame that does not end its message carries nothing and would only let a
        # peer spin the receiver: refuse it.
        raise ProtocolViolationError(f"peer {peer!r} sent an empty frame inside a message")
    return Frame(flags, sess, fseq, total, tag_len, length)


def decode_tag(raw: bytes | bytearray | memoryview, *, peer: str) -> str:
    """The tag of a frame; strict UTF-8, as a tag is compared, never displayed loosely."""
    try:
        return bytes(raw).decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise ProtocolViolationError(f"peer {peer!r} sent a tag that is not UTF-8") from None


def encode_frame(
    flags: int, session: bytes, seq: int, total: int, tag: str, payload: bytes
) -> bytes:
    """One whole frame (header, tag, payload); for small messages, tests and fuzzing."""
    return encode_header(flags, session, seq, total, encode_tag(tag), len(payload)) + payload


def decode_frame(
    buf: bytes | bytearray | memoryview,
    *,
    peer: str,
    session: bytes,
    seq: int,
    max_frame: int,
    max_message: int,
) -> tuple[Frame, str, memoryview, int]:
    """Decode the frame at the start of ``buf``.

    Returns
    -------
    frame, tag, payload, consumed
        The checked header, the tag (empty for close/error frames), a view of the payload
        inside ``buf`` (no copy) and how many bytes of ``buf`` the frame took.

    Raises
    ------
    ProtocolViolationError
        ``buf`` is shorter than the frame it starts, or the frame fails a check of
        :func:`decode_header`.
    """
    view = memoryview(buf).cast("B")
    frame = decode_header(
        view[: HEADER.size],
        peer=peer,
        session=session,
        seq=seq,
        max_frame=max_frame,
        max_message=max_message,
    )
    end_tag = HEADER.size + frame.tag_len
    end = end_tag + frame.length
    if len(view) < end:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a truncated frame ({len(view)} of {end} bytes)"
        )
    tag = decode_tag(view[HEADER.size : end_tag], peer=peer) if frame.tag_len else ""
    return frame, tag, view[end_tag:end], end
