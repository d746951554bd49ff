"""The frame codec: round trips, and random bytes never crash the decoder."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import ChannelTimeoutError, PeerDisconnectedError, ProtocolViolationError
from rainbridge.net.frames import HEADER, decode_header, encode_header, session_key
from rainbridge.net.local import LocalChannel

S = session_key("s")


@given(
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    st.integers(0, 1 << 20),
    st.binary(max_size=64),
)
def test_header_round_trip(flags: int, seq: int, length: int, tag: bytes) -> None:
    raw = encode_header(flags, S, seq, length, tag, length)
    f = decode_header(
        raw[: HEADER.size], peer="p", session=S, seq=seq, max_frame=1 << 20, max_message=1 << 40
    )
    assert (f.flags, f.seq, f.total, f.tag_len, f.length) == (flags, seq, length, len(tag), length)
    assert raw[HEADER.size :] == tag


@settings(max_examples=300)
@given(st.binary(min_size=HEADER.size, max_size=HEADER.size))
def test_random_headers_only_raise_protocol_violation(raw: bytes) -> None:
    with contextlib.suppress(ProtocolViolationError):
        decode_header(raw, peer="p", session=S, seq=0, max_frame=1 << 20, max_message=1 << 31)


def test_local_channel_checks() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", timeout=0.2, max_message=100)
        await a.send("t", b"x" * 100)
        assert await b.recv("t") == b"x" * 100
        with pytest.raises(ProtocolViolationError):
            await a.send("t", b"x" * 101)
        await a.send("u", b"")
        with pytest.raises(ProtocolViolationError):
            await b.recv("t")
        with pytest.raises(ChannelTimeoutError):
            await b.recv("t")
        await a.close()
        with pytest.raises(PeerDisconnectedError):
            await b.recv("t")
        mesh = LocalChannel.mesh("s", ["x", "y", "z"])
        assert sorted(mesh["x"]) == ["y", "z"] and mesh["z"]["x"].peer == "x"

    asyncio.run(main())
