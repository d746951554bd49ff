"""The frame codec: round trips, every refusal, and random bytes never crash the decoder."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge.errors import (
    ChannelError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.frames import (
    FLAG_CLOSE,
    FLAG_ERROR,
    FLAG_FIRST,
    FLAG_LAST,
    HEADER,
    MAX_TAG,
    decode_frame,
    decode_header,
    encode_frame,
    encode_header,
    encode_tag,
    session_key,
)
from rainbridge.net.stream import StreamChannel

S = session_key("s")
LIMITS: dict[str, Any] = {"peer": "p", "session": S, "max_frame": 1 << 20, "max_message": 1 << 31}
tags = st.text(min_size=1, max_size=16).filter(lambda t: 0 < len(t.encode()) <= MAX_TAG)


@given(
    st.sampled_from([FLAG_FIRST | FLAG_LAST, FLAG_FIRST, 0, FLAG_LAST]),
    st.integers(0, 2**64 - 1),
    st.integers(1, 1 << 20),
    tags,
)
def test_header_round_trip(flags: int, seq: int, length: int, tag: str) -> None:
    raw = encode_header(flags, S, seq, length, tag.encode(), length)
    f = decode_header(raw[: HEADER.size], **{**LIMITS, "seq": seq})
    assert (f.flags, f.seq, f.total, f.tag_len, f.length) == (
        flags,
        seq,
        length,
        len(tag.encode()),
        length,
    )
    assert raw[HEADER.size :] == tag.encode()


@given(tags, st.binary(max_size=2000), st.integers(0, 1000), st.binary(max_size=50))
def test_frame_round_trip(tag: str, payload: bytes, extra_total: int, trailer: bytes) -> None:
    total = len(payload) + extra_total
    flags = FLAG_FIRST | (FLAG_LAST if extra_total == 0 else 0)
    if not payload and not flags & FLAG_LAST:
        return  # an empty frame inside a message is refused (tested below)
    raw = encode_frame(flags, S, 7, total, tag, payload) + trailer
    frame, got_tag, body, used = decode_frame(raw, **{**LIMITS, "seq": 7})
    assert (got_tag, bytes(body), used, frame.total) == (
        tag,
        payload,
        len(raw) - len(trailer),
        total,
    )


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_protocol_violation(raw: bytes) -> None:
    with contextlib.suppress(ProtocolViolationError):
        decode_frame(raw, **{**LIMITS, "seq": 0})


@settings(max_examples=500)
@given(st.data())
def test_mutated_frames_only_raise_protocol_violation(data: st.DataObject) -> None:
    """Valid frames with bytes flipped: the fields a fuzzer rarely hits by chance."""
    raw = bytearray(encode_frame(FLAG_FIRST | FLAG_LAST, S, 0, 5, "psi/x", b"hello"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        frame, _tag, body, _ = decode_frame(bytes(raw[:cut]), **{**LIMITS, "seq": 0})
    except ProtocolViolationError as exc:
        assert "hello" not in str(exc)  # never echoes payload
    else:
        assert len(body) == frame.length <= 5 or frame.is_control


def forge(**kw: Any) -> bytes:
    fields = {
        "magic": b"RB",
        "version": 1,
        "flags": FLAG_FIRST | FLAG_LAST,
        "session": S,
        "seq": 0,
        "total": 4,
        "tag_len": 1,
        "length": 4,
    }
    fields.update(kw)
    return HEADER.pack(*fields.values())


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (forge()[:-1], "truncated frame header"),
        (forge(magic=b"XX"), "bad magic"),
        (forge(version=2), "frame version 2"),
        (forge(session=session_key("t")), "another session"),
        (forge(seq=1), "frame 1 where frame 0"),
        (forge(flags=0x10), "unknown frame flags"),
        (forge(tag_len=0), "tag of 0 bytes"),
        (forge(tag_len=MAX_TAG + 1), "tag of 65 bytes"),
        (forge(length=(1 << 20) + 1, total=1 << 21), "frame of 1048577 bytes"),
        (forge(total=(1 << 31) + 1), "announced a message of 2147483649"),
        (forge(total=(1 << 64) - 1, length=(1 << 32) - 1), "frame of 4294967295"),
        (forge(length=5, total=4), "longer than its message"),
        (forge(flags=FLAG_FIRST, length=0), "empty frame"),
        (forge(flags=FLAG_CLOSE | FLAG_ERROR, total=0, tag_len=0, length=0), "close/error"),
        (forge(flags=FLAG_CLOSE, total=0, tag_len=0, length=3), "close/error"),
        (forge(flags=FLAG_ERROR | FLAG_LAST, total=0, tag_len=0, length=3), "close/error"),
        (forge(flags=FLAG_ERROR, total=0, tag_len=0, length=501), "close/error"),
    ],
)
def test_header_refusals(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolViolationError, match=match) as err:
        decode_header(raw, **{**LIMITS, "seq": 0})
    assert "'p'" in str(err.value)  # names the peer


def test_tag_rules() -> None:
    with pytest.raises(ChannelError):
        encode_tag("")
    with pytest.raises(ChannelError):
        encode_tag("x" * (MAX_TAG + 1))
    raw = forge(tag_len=2) + b"\xff\xfe" + b"abcd"
    with pytest.raises(ProtocolViolationError, match="not UTF-8"):
        decode_frame(raw, **{**LIMITS, "seq": 0})
    with pytest.raises(ProtocolViolationError, match="truncated frame"):
        decode_frame(forge() + b"t" + b"abc", **{**LIMITS, "seq": 0})


class _NullWriter:
    """Enough of a StreamWriter for a channel that only receives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, b: bytes) -> None:
        self.data += b

    def close(self) -> None:
        self.closed = True

    async def drain(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


async def _feed_and_recv(stream: bytes, tags: list[str]) -> list[bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(stream)
    reader.feed_eof()
    ch = StreamChannel(
        reader,
        _NullWriter(),
        session_id="s",
        local="me",
        peer="p",  # type: ignore[arg-type]
        timeout=1,
        max_frame=64,
        max_message=256,
    )
    return [await ch.recv(t) for t in tags]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.booleans())
def test_random_streams_only_raise_typed_errors(noise: bytes, valid_prefix: bool) -> None:
    """The whole receive path (not only the header codec): random bytes after an optional
    valid message never raise anything but a protocol violation, or a disconnect when the
    stream ends mid-frame."""
    prefix = encode_frame(FLAG_FIRST | FLAG_LAST, S, 0, 3, "t", b"abc") if valid_prefix else b""
    with contextlib.suppress(ProtocolViolationError, PeerDisconnectedError):
        asyncio.run(_feed_and_recv(prefix + noise, ["t", "t", "t"]))


def test_stream_reassembly_and_error_frame() -> None:
    parts = [
        encode_frame(FLAG_FIRST, S, 0, 10, "t", b"01234"),
        encode_frame(0, S, 1, 10, "t", b"567"),
        encode_frame(FLAG_LAST, S, 2, 10, "t", b"89"),
        encode_header(FLAG_ERROR, S, 3, 0, b"", 4) + b"boom",
    ]
    with pytest.raises(PeerDisconnectedError, match="aborted the session: boom"):
        asyncio.run(_feed_and_recv(b"".join(parts), ["t", "t"]))
    assert asyncio.run(_feed_and_recv(b"".join(parts[:3]), ["t"])) == [b"0123456789"]


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        ([encode_frame(0, S, 0, 3, "t", b"abc")], "continuation"),
        (
            [
                encode_frame(FLAG_FIRST, S, 0, 6, "t", b"abc"),
                encode_frame(FLAG_FIRST, S, 1, 6, "t", b"abc"),
            ],
            "inside another",
        ),
        (
            [
                encode_frame(FLAG_FIRST, S, 0, 6, "t", b"abc"),
                encode_frame(FLAG_LAST, S, 1, 7, "t", b"abc"),
            ],
            "inside another",
        ),
        (
            [
                encode_frame(FLAG_FIRST, S, 0, 6, "t", b"abc"),
                encode_frame(FLAG_LAST, S, 1, 6, "u", b"abc"),
            ],
            "'u' where 't'",
        ),
        (
            [
                encode_frame(FLAG_FIRST, S, 0, 6, "t", b"abcd"),
                encode_frame(FLAG_LAST, S, 1, 6, "t", b"abc"),
            ],
            "more than the 6 bytes",
        ),
        (
            [encode_frame(FLAG_FIRST | FLAG_LAST, S, 0, 6, "t", b"abc")],
            "before its announced length",
        ),
        (
            [
                encode_frame(FLAG_FIRST, S, 0, 8, "t", b"abc"),
                encode_frame(FLAG_LAST, S, 1, 8, "t", b"abc"),
            ],
            "before its announced length",
        ),
        (
            [encode_frame(FLAG_FIRST | FLAG_LAST, S, 0, 300, "t", b"abc")],
            "announced a message of 300",
        ),
    ],
)
def test_stream_message_refusals(frames: list[bytes], match: str) -> None:
    with pytest.raises(ProtocolViolationError, match=match):
        asyncio.run(_feed_and_recv(b"".join(frames), ["t"]))


def test_truncated_stream_is_a_disconnect() -> None:
    whole = encode_frame(FLAG_FIRST | FLAG_LAST, S, 0, 10, "t", b"0123456789")
    for cut in (1, HEADER.size, HEADER.size + 1, len(whole) - 1):
        with pytest.raises(PeerDisconnectedError, match="without closing"):
            asyncio.run(_feed_and_recv(whole[:cut], ["t"]))


def test_header_layout_is_stable() -> None:
    """Peers of different builds must agree byte for byte."""
    raw = encode_header(FLAG_FIRST | FLAG_LAST, bytes(range(16)), 1, 2, b"ab", 3)
    assert HEADER.size == 41
    assert raw.hex() == (
        "5242"
        + "01"
        + "03"
        + bytes(range(16)).hex()
        + struct.pack("<QQBI", 1, 2, 2, 3).hex()
        + b"ab".hex()
    )
