"""Mux: sub-channels over one link keep the Channel contract, and the link survives them."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.channel import Channel
from rainbridge.net.local import LocalChannel
from rainbridge.net.mux import (
    MAX_ABORT_REASON,
    Kind,
    Mux,
    abort_message,
    close_message,
    decode_message,
    encode_header,
    end_message,
)
from rainbridge.net.stream import StreamChannel

MiB = 1 << 20


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


def local_pair(timeout: float = 5.0) -> tuple[LocalChannel, LocalChannel]:
    return LocalChannel.pair("job-1", "alice", "bob", timeout=timeout)


async def stream_pair(timeout: float = 5.0) -> tuple[StreamChannel, StreamChannel]:
    s1, s2 = socket.socketpair()
    r1, w1 = await asyncio.open_connection(sock=s1)
    r2, w2 = await asyncio.open_connection(sock=s2)
    a = StreamChannel(r1, w1, session_id="job-1", local="alice", peer="bob", timeout=timeout)
    b = StreamChannel(r2, w2, session_id="job-1", local="bob", peer="alice", timeout=timeout)
    return a, b


def script(sub: int, big: int) -> list[tuple[str, bytes]]:
    """Small and big messages interleaved, each recognisable by its sub and index."""
    out: list[tuple[str, bytes]] = []
    for i in range(6):
        if i % 3 == 1 and big:
            body = bytes([sub, i]) + os.urandom(big)
            big = 0 if sub % 2 else big  # odd subs send one big message, even ones two
        else:
            body = f"{sub}:{i}".encode()
        out.append((f"m{i}", body))
    return out


async def exchange(a: Channel, b: Channel, subs: int, big: int) -> None:
    ma, mb = Mux(a), Mux(b)
    scripts = {k: script(k, big) for k in range(subs)}

    async def side(m: Mux, k: int, first: bool) -> None:
        ch = m.open(f"b{k}.0")
        assert ch.session_id == f"job-1/b{k}.0"
        assert (ch.local, ch.peer) == (m.link.local, m.link.peer)
        sent = 0
        for tag, body in scripts[k]:
            if first:
                await ch.send_many(tag, [body[:3], memoryview(body)[3:]])
                assert await ch.recv(tag) == body[::-1]
            else:
                got = await ch.recv(tag)
                assert got == body
                await ch.send(tag, got[::-1])
            sent += len(body)
        assert ch.bytes_sent == ch.bytes_received == sent
        await ch.close()

    await asyncio.gather(
        *(side(ma, k, True) for k in range(subs)),
        # the peer opens its subs in the other order: early messages wait for it
        *(side(mb, k, False) for k in reversed(range(subs))),
    )
    await asyncio.gather(ma.close(), mb.close())
    assert ma.failure is None and mb.failure is None
    assert ma.dropped == mb.dropped == 0
    # the link is left at a message boundary: ordinary messages flow again, both ways
    await a.send("after", b"plain")
    await b.send("after", b"back")
    assert await b.recv("after") == b"plain"
    assert await a.recv("after") == b"back"


def test_many_subs_interleave_big_and_small_messages_in_order_over_local_link() -> None:
    async def main() -> None:
        a, b = local_pair()
        await exchange(a, b, subs=8, big=8 * MiB)

    run(main)


def test_subs_over_a_real_stream_link_and_the_link_is_usable_after() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        await exchange(a, b, subs=4, big=8 * MiB)
        await a.close()
        with pytest.raises(PeerDisconnectedError):
            await b.recv("more")
        await b.close()

    run(main)


def test_messages_before_open_are_kept_with_the_peers_close() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sa = ma.open("b5")
        for i in range(3):
            await sa.send("x", bytes([i]) * 10)
        await sa.close()
        await asyncio.sleep(0.05)  # all of it is read by mb's reader? mb has none yet
        sb = mb.open("b5")  # the reader starts here and finds everything in order
        for i in range(3):
            assert await sb.recv("x") == bytes([i]) * 10
        with pytest.raises(PeerDisconnectedError, match="closed sub-channel 'b5'"):
            await sb.recv("x")
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_wrong_inner_tag_ends_the_sub_at_both_ends_and_spares_the_others() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sa, sa2 = ma.open("b1"), ma.open("b2")
        sb, sb2 = mb.open("b1"), mb.open("b2")
        await sa.send("psi/masked", b"1")
        with pytest.raises(ProtocolViolationError, match="'psi/masked' where 'psi/other'"):
            await sb.recv("psi/other")
        with pytest.raises(ProtocolViolationError):  # the sub is over
            await sb.send("x", b"")
        # the peer's sub fails at once, with the reason
        with pytest.raises(PeerDisconnectedError, match=r"aborted sub-channel 'b1'.*protocol"):
            await sa.recv("y")
        assert ma.aborted("b1") is not None and ma.aborted("b2") is None
        await sa2.send("z", b"ok")
        assert await sb2.recv("z") == b"ok"
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_peer_abort_fails_at_once_with_its_reason_even_with_messages_queued() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sa, sb = ma.open("b3.0"), mb.open("b3.0")
        await sa.send("x", b"queued")
        await sa.abort("bucket input changed")
        await asyncio.sleep(0.05)
        with pytest.raises(
            PeerDisconnectedError,
            match=r"peer 'alice' aborted sub-channel 'b3.0': bucket input changed",
        ):
            await sb.recv("x")
        assert mb.aborted("b3.0") == "bucket input changed"
        with pytest.raises(ChannelError):
            await sa.send("x", b"")  # aborted at this end too
        # a long reason is cut at a character boundary and still read as UTF-8
        sa2, sb2 = ma.open("b4"), mb.open("b4")
        await sa2.abort("é" * 400)
        with pytest.raises(PeerDisconnectedError):
            await sb2.recv("x")
        assert mb.aborted("b4") == "é" * (MAX_ABORT_REASON // 2)
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_close_semantics() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sa, sb = ma.open("b1"), mb.open("b1")
        with pytest.raises(ChannelError, match="already opened"):
            ma.open("b1")
        for bad in ("", "x" * 49, "b/1", "bé", "b 1"):
            with pytest.raises(ChannelError, match="sub-channel name"):
                ma.open(bad)
        await sa.send("x", b"1")
        await sa.send("x", b"2")
        await sa.close()
        await sa.close()  # idempotent
        with pytest.raises(ChannelError, match="closed"):
            await sa.recv("x")
        with pytest.raises(ChannelError, match="closed"):
            await sa.send("x", b"")
        with pytest.raises(ChannelError, match="already opened"):
            ma.open("b1")  # a name serves one sub-channel only
        assert await sb.recv("x") == b"1"
        assert await sb.recv("x") == b"2"
        with pytest.raises(PeerDisconnectedError, match="closed"):
            await sb.recv("x")
        with pytest.raises(PeerDisconnectedError):
            await sb.send("x", b"lost")  # the peer no longer reads it: refused, not lost
        # messages for a sub closed here are dropped and counted
        sa2, sb2 = ma.open("b2"), mb.open("b2")
        await sb2.close()
        await sa2.send("x", b"a")
        await sa2.send("x", b"b")
        await sa2.close()
        await asyncio.gather(ma.close(), mb.close())
        assert mb.dropped == 2
        with pytest.raises(ChannelError, match="closed"):
            ma.open("b9")
        await ma.close()  # idempotent

    run(main)


def test_recv_into_and_its_bound() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sa, sb = ma.open("b1"), mb.open("b1")
        await sa.send("x", b"abcdef")
        buf = bytearray(8)
        assert await sb.recv_into("x", buf) == 6 and buf[:6] == b"abcdef"
        await sa.send("x", b"123456789")
        with pytest.raises(ProtocolViolationError, match="at most 8"):
            await sb.recv_into("x", buf)
        with pytest.raises(PeerDisconnectedError, match="aborted"):
            await sa.recv("y")
        await asyncio.gather(ma.close(), mb.close())

    run(main)


def test_sub_timeout_is_its_own_and_tells_the_peer() -> None:
    async def main() -> None:
        a, b = local_pair(timeout=0.2)
        ma, mb = Mux(a), Mux(b)
        sa, sb = ma.open("b1"), mb.open("b1", timeout=30)
        assert sa.timeout == 0.2 and sb.timeout == 30
        with pytest.raises(ChannelTimeoutError, match=r"within 0\.2 s"):
            await sa.recv("x")
        with pytest.raises(PeerDisconnectedError, match=r"aborted.*timeout"):
            await sb.recv("x", timeout=2)
        # the link idles longer than its timeout without failing: the reader has none
        await asyncio.sleep(0.4)
        s2a, s2b = ma.open("b2"), mb.open("b2")
        await s2a.send("x", b"still here")
        assert await s2b.recv("x") == b"still here"
        await asyncio.gather(ma.close(), mb.close())

    run(main)


@pytest.mark.parametrize("over", ["local", "stream"])
def test_link_failure_reaches_every_sub_and_later_ones(over: str) -> None:
    async def main() -> None:
        if over == "local":
            a, b = local_pair()
        else:
            a, b = await stream_pair()
        ma, mb = Mux(a), Mux(b)
        subs = [ma.open(f"b{k}") for k in range(4)]
        mb.open("b0")
        waiting = [asyncio.create_task(s.recv("x")) for s in subs[:2]]
        await asyncio.sleep(0.05)
        await b.abort("node shutting down")  # the peer's end of the link goes away
        for t in waiting:
            with pytest.raises(PeerDisconnectedError, match="the link to peer 'bob'"):
                await t
        assert isinstance(ma.failure, PeerDisconnectedError)
        with pytest.raises(PeerDisconnectedError, match="sub-channel 'b2': the link"):
            await subs[2].recv("x")
        with pytest.raises(PeerDisconnectedError, match="sub-channel 'b3': the link"):
            await subs[3].send("x", b"")
        late = ma.open("b7")
        with pytest.raises(PeerDisconnectedError, match="sub-channel 'b7': the link"):
            await late.recv("x")
        await ma.close()  # at once

    run(main)


def _forged() -> list[bytes]:
    return [
        b"",
        b"\x00",
        bytes((9, 2)) + b"b1",  # unknown kind
        bytes((0, 49)) + b"x" * 49 + b"\x01x",  # sub too long
        bytes((0, 0)) + b"\x01x",  # empty sub
        bytes((0, 5)) + b"b1",  # truncated sub
        bytes((0, 2)) + b"b1",  # DATA with no tag
        bytes((0, 2)) + b"b1\x05ab",  # truncated tag
        bytes((0, 2)) + b"b1\x00",  # empty tag
        bytes((0, 2)) + b"b1\x02\xff\xfe",  # tag not UTF-8
        bytes((0, 3)) + b"b/1\x01x",  # sub outside the alphabet
        bytes((1, 2)) + b"b1junk",  # CLOSE with a body
        bytes((2, 2)) + b"b1" + b"r" * (MAX_ABORT_REASON + 1),  # reason too long
        bytes((2, 2)) + b"b1\xff",  # reason not UTF-8
        bytes((3, 2)) + b"b1",  # END naming a sub
    ]


@pytest.mark.parametrize("forged", _forged())
def test_a_forged_header_fails_the_mux_and_the_link(forged: bytes) -> None:
    async def main() -> None:
        a, b = local_pair()
        ma = Mux(a)
        sa, other = ma.open("b1"), ma.open("b2")
        await b.send("mux", forged)
        with pytest.raises(ProtocolViolationError):
            await sa.recv("x")
        with pytest.raises(ProtocolViolationError):
            await other.send("x", b"")
        assert isinstance(ma.failure, ProtocolViolationError)
        # the peer learns at once: its link was aborted
        with pytest.raises(PeerDisconnectedError, match="protocol_violation"):
            await b.recv("mux")

    run(main)


def test_header_codec_round_trips() -> None:
    for kind, sub, tag in [(Kind.DATA, "b1.0", "psi/masked"), (Kind.CLOSE, "a:b-c_d", "")]:
        raw = encode_header(kind, sub, tag) + (b"body" if kind is Kind.DATA else b"")
        msg = decode_message(raw, peer="p")
        assert (msg.kind, msg.sub, msg.tag) == (kind, sub, tag)
    msg = decode_message(abort_message("b2", "why"), peer="p")
    assert (msg.kind, msg.sub, msg.reason) == (Kind.ABORT, "b2", "why")
    assert decode_message(end_message(), peer="p").kind is Kind.END
    assert decode_message(close_message("z"), peer="p").sub == "z"


def test_close_waits_for_the_peers_end_within_the_timeout() -> None:
    async def main() -> None:
        a, b = local_pair(timeout=0.3)
        ma = Mux(a)
        ma.open("b1")
        with pytest.raises(ChannelTimeoutError, match="did not end the multiplexed link"):
            await ma.close()
        assert isinstance(ma.failure, ChannelTimeoutError)
        # the peer that ends later finds the END waiting for it, and returns at once
        mb = Mux(b)
        sb = mb.open("b1")
        await mb.close()
        assert mb.failure is None
        with pytest.raises(ChannelError, match="closed"):
            await sb.recv("x")

    run(main)


def test_forward_and_send_raw_pass_messages_unchanged_and_refuse_others() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        sb = mb.open("t1")
        await sb.send("x", b"early")  # before the forward: kept
        got: list[bytes] = []

        async def sink(raw: bytes) -> None:
            got.append(raw)

        ma.forward("t1", sink)
        await sb.send_many("y", [b"a", b"b"])
        await asyncio.sleep(0.05)
        assert got == [
            encode_header(Kind.DATA, "t1", "x") + b"early",
            encode_header(Kind.DATA, "t1", "y") + b"ab",
        ]
        with pytest.raises(ChannelError, match="already opened"):
            ma.open("t1")
        with pytest.raises(ChannelError, match="not forwarded"):
            await ma.send_raw(close_message("t9"), sub="t9")
        for bad in (close_message("t2"), end_message(), b"\x07\x02t1", b"\x00"):
            with pytest.raises(ProtocolViolationError):
                await ma.send_raw(bad, sub="t1")
        await ma.send_raw(encode_header(Kind.DATA, "t1", "z") + b"raw", sub="t1")
        assert await sb.recv("z") == b"raw"
        await ma.send_raw(close_message("t1"), sub="t1")
        with pytest.raises(ProtocolViolationError, match="after its end"):
            await ma.send_raw(encode_header(Kind.DATA, "t1", "z"), sub="t1")
        with pytest.raises(PeerDisconnectedError, match="closed"):
            await sb.recv("z")
        await asyncio.gather(ma.close(), mb.close())
        assert got[-1] == close_message("t1")  # the peer's close went on too

    run(main)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    plan=st.lists(st.tuples(st.integers(0, 4), st.binary(max_size=80)), max_size=40),
    opened_early=st.sets(st.integers(0, 4)),
)
def test_property_any_interleaving_is_delivered_per_sub_in_order(
    n: int, plan: list[tuple[int, bytes]], opened_early: set[int]
) -> None:
    plan = [(k % n, body) for k, body in plan]

    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        senders = [ma.open(f"s{k}") for k in range(n)]
        receivers = {k: mb.open(f"s{k}") for k in sorted(opened_early) if k < n}
        for k, body in plan:
            await senders[k].send(f"t{len(body)}", body)
        for s in senders:
            await s.close()
        await asyncio.sleep(0)
        for k in range(n):
            if k not in receivers:
                receivers[k] = mb.open(f"s{k}")
        for k in range(n):
            want = [body for j, body in plan if j == k]
            got = [await receivers[k].recv(f"t{len(body)}") for body in want]
            assert got == want
            with pytest.raises(PeerDisconnectedError):
                await receivers[k].recv("t0")
        await asyncio.gather(ma.close(), mb.close())
        assert ma.dropped == mb.dropped == 0

    asyncio.run(main())


def test_the_peers_end_fails_subs_it_never_opened_open_now_or_later() -> None:
    async def main() -> None:
        a, b = local_pair()
        ma, mb = Mux(a), Mux(b)
        waiting = ma.open("b1")
        closing = asyncio.create_task(mb.close())  # bob never opened b1
        with pytest.raises(PeerDisconnectedError, match="ended the multiplexed link"):
            await waiting.recv("x")
        with pytest.raises(ChannelError):
            await waiting.send("x", b"")
        late = ma.open("b2")
        with pytest.raises(PeerDisconnectedError, match="ended the multiplexed link"):
            await late.recv("x")
        await ma.close()
        await closing
        assert ma.failure is None and mb.failure is None

    run(main)
