"""The interconnection link's memory limits: an announced message length is checked, never
allocated; what one peer may hold in our memory is bounded; a refused message's partial
buffer goes and a reader waiting for it is told."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from typing import Any

import pytest

from rainbridge.errors import ProtocolViolationError
from rainbridge.interop import IcLink, MessageRefusedError
from rainbridge.interop import messages as m
from rainbridge.interop.pb import decode, encode


def pair(**kw: Any) -> Any:
    async def make() -> tuple[IcLink, IcLink]:
        a, b = IcLink(0, "127.0.0.1:0", **kw), IcLink(1, "127.0.0.1:0", **kw)
        pa, pb = await a.start(), await b.start()
        a.peers, b.peers = {1: f"127.0.0.1:{pb}"}, {0: f"127.0.0.1:{pa}"}
        return a, b

    return make()


def chunk(key: str, total: int, offset: int, value: bytes, sender: int = 0) -> dict[str, Any]:
    return {
        "sender_rank": sender,
        "key": key,
        "value": value,
        "trans_type": m.CHUNKED,
        "chunk_info": {"message_length": total, "chunk_offset": offset},
    }


async def push(a: Any, req: dict[str, Any]) -> dict[str, Any]:
    raw = await a._channel(1).unary_unary(m.PUSH_METHOD)(encode(m.PUSH_REQUEST, req), timeout=5)
    return dict(decode(m.PUSH_RESPONSE, raw)["header"] or {})


def test_a_huge_announced_length_is_refused_without_memory() -> None:
    async def main() -> None:
        a, b = await pair(timeout=2)
        try:
            req = chunk("root:P2P-0:0->1", 1 << 30, 0, b"xy")
            assert len(encode(m.PUSH_REQUEST, req)) < 40
            tracemalloc.start()
            try:
                header = await push(a, req)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert header.get("error_code") == m.INVALID_REQUEST
            assert "too large" in header.get("error_msg", "")
            assert peak < 4 << 20, peak
            assert not b._partial and not b._mail
            with pytest.raises(MessageRefusedError, match="too large"):
                await b.recv(0)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_an_announced_length_within_limits_is_not_allocated() -> None:
    async def main() -> None:
        a, b = await pair(timeout=2, max_message=1 << 30, max_pending_bytes=1 << 30)
        try:
            tracemalloc.start()
            try:
                for i in range(20):
                    header = await push(a, chunk(f"k{i}", 1 << 30, 0, b"xy"))
                    assert header.get("error_code", 0) == m.OK
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 4 << 20, peak
            assert len(b._partial) == 20
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_bytes_held_per_peer_are_bounded_and_the_partial_buffer_dropped() -> None:
    async def main() -> None:
        a, b = await pair(timeout=2, chunk_bytes=1000, max_pending_bytes=3000)
        try:
            await a.send_raw(1, "m1", b"x" * 1500)  # held until read
            with pytest.raises(ProtocolViolationError, match="bytes held"):
                await a.send_raw(1, "m2", os.urandom(2500))
            assert "m2" not in b._partial and "m2" not in b._mail
            with pytest.raises(MessageRefusedError):
                await b.recv_raw("m2")
            assert await b.recv_raw("m1") == b"x" * 1500
            assert b._held[0] == 0
            big = os.urandom(2900)  # fits once m1 has been read
            await a.send_raw(1, "m3", big)
            assert await b.recv_raw("m3") == big
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_pending_messages_and_key_length_are_bounded() -> None:
    async def main() -> None:
        a, b = await pair(timeout=2, max_pending=3)
        try:
            for i in range(3):
                await a.send_raw(1, f"k{i}", b"v")
            with pytest.raises(ProtocolViolationError, match="too many"):
                await a.send_raw(1, "k3", b"v")
            header = await push(a, chunk("x" * 5000, 10, 0, b"v"))
            assert header.get("error_code") == m.INVALID_REQUEST
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_chunks_reassemble_in_any_order_and_overlaps_are_refused() -> None:
    async def main() -> None:
        a, b = await pair(timeout=2)
        try:
            data = os.urandom(3000)
            for off in (2000, 0, 1000):
                header = await push(a, chunk("k", 3000, off, data[off : off + 1000]))
                assert header.get("error_code", 0) == m.OK
            assert await b.recv_raw("k") == data
            await push(a, chunk("o", 3000, 0, data[:1000]))
            header = await push(a, chunk("o", 3000, 500, data[500:1500]))
            assert header.get("error_code") == m.INVALID_REQUEST
            assert "o" not in b._partial and b._held[0] == 0
            header = await push(a, chunk("p", 3000, 2500, data[:1000]))  # past the end
            assert header.get("error_code") == m.INVALID_REQUEST
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
