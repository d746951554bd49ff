"""The wire frame: a fixed header, the message tag, then at most ``max_frame`` payload bytes.

Header (little-endian): magic ``b"RB"``, version (u8), flags (u8), session id (16 bytes),
sequence number (u64, per direction, one per frame), total message length (u64), tag length
(u8), payload length (u32). Every length is checked against its bound before anything is
allocated: a wire length is never trusted.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from rainbridge.errors import ProtocolViolationError

MAGIC = b"RB"
VERSION = 1
HEADER = struct.Struct("<2sBB16sQQBI")
MAX_TAG = 64

FLAG_FIRST = 0x01  # first frame of a message
FLAG_LAST = 0x02  # last frame of a message
FLAG_CLOSE = 0x04  # orderly end of the session
FLAG_ERROR = 0x08  # the sender aborted; payload is a short UTF-8 reason


def session_key(session_id: str) -> bytes:
    """The 16 bytes every frame of a session carries."""
    return hashlib.sha256(session_id.encode()).digest()[:16]


@dataclass(frozen=True)
class Frame:
    flags: int
    session: bytes
    seq: int
    total: int
    tag_len: int
    length: int


def encode_header(
    flags: int, session: bytes, seq: int, total: int, tag: bytes, length: int
) -> bytes:
    if len(tag) > MAX_TAG:
        raise ProtocolViolationError(f"message tag longer than {MAX_TAG} bytes")
    return HEADER.pack(MAGIC, VERSION, flags, session, seq, total, len(tag), length) + tag


def decode_header(
    raw: bytes, *, peer: str, session: bytes, seq: int, max_frame: int, max_message: int
) -> Frame:
    """Parse and check a header; raise ProtocolViolationError naming what was wrong."""
    if len(raw) != HEADER.size:
        raise ProtocolViolationError(f"peer {peer!r} sent a truncated frame header")
    magic, version, flags, sess, fseq, total, tag_len, length = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolViolationError(f"peer {peer!r} sent a frame with a bad magic number")
    if version != VERSION:
        raise ProtocolViolationError(f"peer {peer!r} speaks frame version {version}, not 1")
    if sess != session:
        raise ProtocolViolationError(f"peer {peer!r} sent a frame of another session")
    if fseq != seq:
        raise ProtocolViolationError(
            f"peer {peer!r} sent frame {fseq} where frame {seq} was expected"
        )
    if tag_len > MAX_TAG:
        raise ProtocolViolationError(f"peer {peer!r} sent an oversized tag ({tag_len} bytes)")
    if length > max_frame:
        raise ProtocolViolationError(
            f"peer {peer!r} sent a frame of {length} bytes; the limit is {max_frame}"
        )
    if total > max_message:
        raise ProtocolViolationError(
            f"peer {peer!r} announced a message of {total} bytes; the limit is {max_message}"
        )
    if length > total and not flags & (FLAG_CLOSE | FLAG_ERROR):
        raise ProtocolViolationError(f"peer {peer!r} sent a frame longer than its message")
    return Frame(flags, sess, fseq, total, tag_len, length)
