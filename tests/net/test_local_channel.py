"""LocalChannel: the same contract as the TLS channel, in process."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.frames import HEADER
from rainbridge.net.local import LocalChannel, wire_size


def test_round_trip_both_ways_and_byte_counts() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "alice", "bob")
        assert (a.local, a.peer, b.local, b.peer) == ("alice", "bob", "bob", "alice")
        await a.send("x", b"hello")
        await b.send_json("y", {"k": [1, 2]})
        await a.send_many("z", [b"ab", memoryview(b"cd"), bytearray(b"e")])
        assert await b.recv("x") == b"hello"
        assert await a.recv_json("y") == {"k": [1, 2]}
        assert await b.recv("z") == b"abcde"
        assert a.bytes_sent == b.bytes_received == 2 * (HEADER.size + 1) + 10
        assert b.bytes_sent == a.bytes_received > HEADER.size

    asyncio.run(main())


def test_large_payload_counts_frames_and_sender_may_reuse_buffer() -> None:
    big = bytearray(os.urandom(50_000_000))
    expected = bytes(big)

    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b")
        await a.send("big", big)
        big[:10] = b"\x00" * 10  # the sender reuses its buffer at once
        assert await b.recv("big") == expected
        frames = -(-len(expected) // (1 << 20))
        assert a.bytes_sent == b.bytes_received == len(expected) + frames * (HEADER.size + 3)
        assert wire_size(3, 0, 1 << 20) == HEADER.size + 3  # an empty message is one frame

    asyncio.run(main())


def test_recv_into_numpy() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b")
        src = np.arange(1000, dtype=np.uint64)
        await a.send("arr", src.data)
        dst = np.empty(1000, dtype=np.uint64)
        assert await b.recv_into("arr", dst.data) == 8000
        assert (dst == src).all()
        await a.send("arr", src.data)
        with pytest.raises(ProtocolViolationError, match="at most 80 were expected"):
            await b.recv_into("arr", np.empty(10, dtype=np.uint64).data)

    asyncio.run(main())


def test_tag_mismatch_ends_the_session_at_both_ends() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", timeout=2)
        await a.send("u", b"")
        with pytest.raises(ProtocolViolationError, match="'u' where 't' was expected"):
            await b.recv("t")
        with pytest.raises(ProtocolViolationError):  # the session stays over
            await b.send("t", b"")
        with pytest.raises(PeerDisconnectedError, match="aborted the session: protocol_violation"):
            await a.recv("v")

    asyncio.run(main())


def test_timeout_ends_the_session_at_both_ends() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", timeout=0.1)
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(ChannelTimeoutError, match=r"no 't' message from peer 'a' within 0\.1"):
            await b.recv("t")
        assert loop.time() - t < 1
        with pytest.raises(PeerDisconnectedError, match="timeout"):
            await a.recv("t", timeout=5)

    asyncio.run(main())


def test_size_bounds() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", max_message=100)
        await a.send("t", b"x" * 100)
        assert await b.recv("t") == b"x" * 100
        with pytest.raises(ChannelError, match="exceeds the limit of 100"):
            await a.send("t", b"x" * 101)
        with pytest.raises(ChannelError, match="tag"):
            await a.send("", b"")
        with pytest.raises(ChannelError, match="tag"):
            await a.send("x" * 65, b"")
        # a peer configured with a larger bound is still refused at the receiver
        c, d = LocalChannel.pair("s", "c", "d")
        d.max_message = 10
        await c.send("t", b"x" * 11)
        with pytest.raises(ProtocolViolationError, match="limit is 10"):
            await d.recv("t")

    asyncio.run(main())


def test_close_is_orderly_and_idempotent() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", timeout=1)
        await a.send("last", b"1")
        await a.close()
        await a.close()
        assert await b.recv("last") == b"1"  # what was sent before the close arrives
        with pytest.raises(PeerDisconnectedError, match="closed the session"):
            await b.recv("more")
        assert b.peer_closed
        with pytest.raises(ChannelError, match="closed"):
            await a.send("x", b"")
        with pytest.raises(ChannelError, match="closed"):
            await a.recv("x")

    asyncio.run(main())


def test_abort_reaches_the_peer() -> None:
    async def main() -> None:
        a, b = LocalChannel.pair("s", "a", "b", timeout=5)
        await a.abort("input file unreadable")
        with pytest.raises(PeerDisconnectedError, match="aborted the session: input file"):
            await b.recv("x")
        assert not b.peer_closed

    asyncio.run(main())


def test_mesh() -> None:
    async def main() -> None:
        names = ["x", "y", "z", "w"]
        mesh = LocalChannel.mesh("s", names, timeout=1)
        assert sorted(mesh["x"]) == ["w", "y", "z"] and mesh["z"]["x"].peer == "x"
        for me in names:
            for ch in mesh[me].values():
                assert ch.session_id == "s" and ch.local == me
                await ch.send("hi", me.encode())
        for me in names:
            for peer, ch in mesh[me].items():
                assert await ch.recv("hi") == peer.encode()
        with pytest.raises(ChannelError, match="named twice"):
            LocalChannel.mesh("s", ["a", "a"])
        with pytest.raises(ChannelError, match="both are named"):
            LocalChannel.pair("s", "a", "a")

    asyncio.run(main())


def test_a_json_message_python_cannot_read_is_a_protocol_violation() -> None:
    # a number of more digits than Python converts raises ValueError, not JSONDecodeError
    async def main() -> None:
        a, b = LocalChannel.pair("s", "alice", "bob")
        for raw in (b"1" * 5000, b"[" + b"9" * 5000 + b"]", b"\xff{", b"{'a': 1}"):
            await a.send("m", raw)
            with pytest.raises(ProtocolViolationError, match="malformed 'm' message"):
                await b.recv_json("m")

    asyncio.run(main())
