"""Relay: a task's sub-channel through its driver's mux, over real sockets and processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pickle
import sys
from collections.abc import Awaitable, Callable

import pytest

from rainbridge.errors import ChannelError, PeerDisconnectedError
from rainbridge.net.local import LocalChannel
from rainbridge.net.mux import Kind, Mux, encode_header
from rainbridge.net.relay import LOST, TAG, Relay, RelayTicket, connect_sub, proof
from rainbridge.net.stream import StreamChannel

MiB = 1 << 20


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


async def federation(timeout: float = 5.0) -> tuple[LocalChannel, LocalChannel, Mux, Mux, Relay]:
    """alice's driver (mux + relay) and bob's mux over one link."""
    a, b = LocalChannel.pair("job-7", "alice", "bob", timeout=timeout)
    ma, mb = Mux(a), Mux(b)
    relay = Relay(ma, timeout=timeout)
    host, port = await relay.start()
    assert (host, port) == (relay.ticket.host, relay.ticket.port) and port > 0
    return a, b, ma, mb, relay


async def raw_task(ticket: RelayTicket, sub: str) -> tuple[StreamChannel, bytes]:
    """A task written by hand: the hello, then a framed stream (no Mux of its own)."""
    reader, writer = await asyncio.open_connection(ticket.host, ticket.port)
    hello = {"sub": sub, "proof": proof(ticket.secret, sub)}
    writer.write(json.dumps(hello).encode() + b"\n")
    answer = await reader.readline()
    ch = StreamChannel(
        reader, writer, session_id=ticket.session_id, local="alice", peer="driver", timeout=5
    )
    return ch, answer


def test_task_and_peer_exchange_big_and_small_messages_then_close_in_order() -> None:
    async def main() -> None:
        a, b, ma, mb, relay = await federation()
        ticket = relay.ticket
        assert len(bytes.fromhex(ticket.secret)) == 32
        assert ticket.secret not in repr(ticket)
        assert pickle.loads(pickle.dumps(ticket)) == ticket
        relay.allow("b1.0")
        peer = mb.open("b1.0")
        await peer.send("early", b"sent before the task connected")
        task, closer = await connect_sub(ticket, "b1.0")
        assert (task.session_id, task.local, task.peer) == ("job-7/b1.0", "alice", "bob")
        assert await task.recv("early") == b"sent before the task connected"
        big = os.urandom(8 * MiB)
        for i in range(3):
            await task.send_many("q", [big[:10], memoryview(big)[10:], bytes([i])])
            got = await peer.recv("q")
            assert got == big + bytes([i])
            await peer.send("a", got[-1:] * 3)
            assert await task.recv("a") == bytes([i]) * 3
        await closer()
        with pytest.raises(PeerDisconnectedError, match=r"closed sub-channel 'b1\.0'"):
            await peer.recv("q")
        assert mb.aborted("b1.0") is None
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())
        await a.send("after", b"plain")
        assert await b.recv("after") == b"plain"

    run(main)


_TASK = """
import asyncio, pickle, sys
from rainbridge.net.relay import connect_sub

async def main():
    ticket = pickle.loads(bytes.fromhex(sys.argv[1]))
    ch, closer = await connect_sub(ticket, sys.argv[2])
    while True:
        q = await ch.recv("q")
        if q == b"stop":
            break
        await ch.send("a", q[::-1])
    if sys.argv[3] == "hang":
        await asyncio.sleep(60)
    await closer()

asyncio.run(main())
"""


async def spawn(ticket: RelayTicket, sub: str, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TASK, pickle.dumps(ticket).hex(), sub, mode
    )


def test_a_task_process_speaks_on_its_sub_through_the_driver() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b2.0")
        proc = await spawn(relay.ticket, "b2.0", "close")
        peer = mb.open("b2.0")
        for body in (b"abc", os.urandom(3 * MiB), b""):
            await peer.send("q", body)
            assert await peer.recv("a") == body[::-1]
        await peer.send("q", b"stop")
        with pytest.raises(PeerDisconnectedError, match="closed sub-channel"):
            await peer.recv("a")
        assert await proc.wait() == 0
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_a_killed_task_process_aborts_the_peers_sub_with_the_reason() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b3.0")
        proc = await spawn(relay.ticket, "b3.0", "hang")
        peer = mb.open("b3.0")
        await peer.send("q", b"xy")
        assert await peer.recv("a") == b"yx"
        proc.kill()
        await proc.wait()
        with pytest.raises(PeerDisconnectedError, match=rf"aborted sub-channel 'b3\.0': {LOST}"):
            await peer.recv("a")
        assert mb.aborted("b3.0") == LOST
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_refusals_wrong_proof_unknown_sub_second_connection_malformed() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b1")
        ticket = relay.ticket
        forged = dataclasses.replace(ticket, secret=os.urandom(32).hex())
        with pytest.raises(ChannelError, match="refused sub-channel 'b1': refused: wrong proof"):
            await connect_sub(forged, "b1")
        with pytest.raises(ChannelError, match="'b9' is not allowed"):
            await connect_sub(ticket, "b9")
        task, closer = await connect_sub(ticket, "b1")
        with pytest.raises(ChannelError, match="'b1' is already connected"):
            await connect_sub(ticket, "b1")
        for line in (b"not json\n", b"[1]\n", b'{"sub": "b1"}\n', b'{"sub":"b/1","proof":""}\n'):
            reader, writer = await asyncio.open_connection(ticket.host, ticket.port)
            writer.write(line)
            assert (await reader.readline()).startswith(b"refused: ")
            assert await reader.read() == b""  # and the connection is closed
            writer.close()
        # the connection that was accepted still works
        peer = mb.open("b1")
        await task.send("x", b"fine")
        assert await peer.recv("x") == b"fine"
        await closer()
        with pytest.raises(ChannelError, match="already served"):
            await connect_sub(ticket, "b1")
        ma.open("mine")  # a sub the driver speaks on itself is never relayed
        relay.allow("mine")
        with pytest.raises(ChannelError, match="refused: sub-channel 'mine' was already opened"):
            await connect_sub(ticket, "mine")
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_a_dropped_task_connection_aborts_the_peers_sub_at_once() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation(timeout=30)
        relay.allow("b4")
        ch, answer = await raw_task(relay.ticket, "b4")
        assert answer == b"ok\n"
        peer = mb.open("b4")
        await ch.send(TAG, encode_header(Kind.DATA, "b4", "x") + b"one")
        assert await peer.recv("x") == b"one"
        ch.writer.transport.abort()  # the task dies, no close
        with pytest.raises(PeerDisconnectedError, match=LOST):
            await peer.recv("x", timeout=5)
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_a_task_speaking_for_another_sub_is_cut_off() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b5")
        ch, _ = await raw_task(relay.ticket, "b5")
        peer, bystander = mb.open("b5"), mb.open("b6")
        await ch.send(TAG, encode_header(Kind.DATA, "b6", "x") + b"forged")
        with pytest.raises(PeerDisconnectedError, match="out of turn"):
            await peer.recv("x")
        with pytest.raises(PeerDisconnectedError):
            await ch.recv(TAG)  # the driver hung up
        await ma.open("b6").send("x", b"genuine")
        assert await bystander.recv("x") == b"genuine"  # nothing forged got there
        await relay.close()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_peer_abort_and_link_failure_reach_the_task() -> None:
    async def main() -> None:
        _a, b, ma, mb, relay = await federation()
        relay.allow("b7")
        relay.allow("b8")
        t7, close7 = await connect_sub(relay.ticket, "b7")
        t8, close8 = await connect_sub(relay.ticket, "b8")
        p7 = mb.open("b7")
        await p7.abort("bucket 7 is empty")
        with pytest.raises(PeerDisconnectedError, match="aborted sub-channel 'b7': bucket 7"):
            await t7.recv("x")
        await b.abort("node stopping")  # bob's end of the link goes away
        with pytest.raises(PeerDisconnectedError, match="link to peer 'bob' failed"):
            await t8.recv("x")
        await close7()
        await close8()
        await relay.close()
        await ma.close()  # the link failed: at once

    run(main)


def test_closing_the_relay_aborts_connected_subs() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b1")
        task, closer = await connect_sub(relay.ticket, "b1")
        peer = mb.open("b1")
        await relay.close()
        with pytest.raises(PeerDisconnectedError, match=LOST):
            await peer.recv("x")
        with pytest.raises(PeerDisconnectedError):
            await task.recv("x")
        await closer()
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_a_closed_mux_refuses_new_tasks() -> None:
    async def main() -> None:
        _a, _b, ma, mb, relay = await federation()
        relay.allow("b1")
        await asyncio.gather(ma.close(), mb.close())
        with pytest.raises(ChannelError, match=r"refused: the multiplexed link .* is closed"):
            await connect_sub(relay.ticket, "b1")
        await relay.close()

    run(main)
