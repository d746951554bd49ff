"""Mutual TLS channels over loopback: the happy path and every way a peer can be wrong."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import stat
import sys
import textwrap
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import rainbridge
from rainbridge.crypto.certs import TlsIdentity, create_identity, fingerprint_pem
from rainbridge.errors import (
    AuthenticationError,
    ChannelError,
    ChannelTimeoutError,
    ConfigError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.frames import FLAG_FIRST, FLAG_LAST, HEADER, encode_header, session_key
from rainbridge.net.tls import (
    Peer,
    TlsChannel,
    TlsListener,
    accept_one,
    client_context,
    connect,
    fetch_certificate,
)
from rainbridge.net.tls import serve as tls_serve


def peer_of(name: str, ident: TlsIdentity) -> Peer:
    return Peer(name, ident.fingerprint, ident.cert_pem)


@pytest.fixture
def ids(tmp_path: Path) -> dict[str, TlsIdentity]:
    return {n: create_identity(tmp_path / n, n) for n in ("bank", "telecom", "mallory")}


async def serve(
    ident: TlsIdentity,
    peers: dict[str, Peer],
    handler: Callable[[TlsChannel], Awaitable[None]],
    **kw: Any,
) -> tuple[TlsListener, int]:
    listener = TlsListener(ident, peers, "bank", handler, **kw)
    port = await listener.start("127.0.0.1", 0)
    return listener, port


def test_round_trip_and_large_payload(ids: dict[str, TlsIdentity]) -> None:
    big = os.urandom(5 * (1 << 20) + 123)

    async def main() -> None:
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(ch: TlsChannel) -> None:
            assert ch.peer == "telecom" and ch.session_id == "s1"
            data = await ch.recv("big")
            await ch.send_json("ack", {"n": len(data)})
            done.set_result(data)

        listener, port = await serve(
            ids["bank"], {"telecom": peer_of("telecom", ids["telecom"])}, handler
        )
        ch = await connect(
            "127.0.0.1",
            port,
            ids["telecom"],
            peer_of("bank", ids["bank"]),
            session_id="s1",
            local="telecom",
        )
        await ch.send("big", big)
        assert (await ch.recv_json("ack")) == {"n": len(big)}
        assert await done == big
        assert ch.bytes_sent > len(big) and ch.bytes_received > 0
        await ch.close()
        await listener.close()

    asyncio.run(main())


def test_unknown_client_certificate_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        listener, port = await serve(
            ids["bank"], {"telecom": peer_of("telecom", ids["telecom"])}, handler
        )
        with pytest.raises(AuthenticationError):
            await connect(
                "127.0.0.1",
                port,
                ids["mallory"],
                peer_of("bank", ids["bank"]),
                session_id="s",
                local="telecom",
            )
        await listener.close()

    asyncio.run(main())


def test_unknown_server_certificate_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            pass

        # mallory listens where the telecom expects the bank
        listener = TlsListener(
            ids["mallory"], {"telecom": peer_of("telecom", ids["telecom"])}, "bank", handler
        )
        port = await listener.start("127.0.0.1", 0)
        with pytest.raises(AuthenticationError, match="not the one pinned"):
            await connect(
                "127.0.0.1",
                port,
                ids["telecom"],
                peer_of("bank", ids["bank"]),
                session_id="s",
                local="telecom",
            )
        await listener.close()

    asyncio.run(main())


def test_impersonation_by_name_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        peers = {
            "telecom": peer_of("telecom", ids["telecom"]),
            "mallory": peer_of("mallory", ids["mallory"]),
        }
        listener, port = await serve(ids["bank"], peers, handler)
        with pytest.raises(AuthenticationError, match="refused"):
            await connect(
                "127.0.0.1",
                port,
                ids["mallory"],
                peer_of("bank", ids["bank"]),
                session_id="s",
                local="telecom",  # mallory claims to be the telecom
            )
        await listener.close()
        assert any("belongs to 'mallory'" in r for r in listener.refusals)

    asyncio.run(main())


def test_plaintext_and_certless_clients_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        listener, port = await serve(
            ids["bank"], {"telecom": peer_of("telecom", ids["telecom"])}, handler, hello_timeout=2
        )
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        await w.drain()
        assert await asyncio.wait_for(r.read(), 5) == b""  # closed without an answer
        w.close()
        # a TLS client without a certificate gets our certificate (for `peer add`) and no more
        pem = await fetch_certificate("127.0.0.1", port)
        assert fingerprint_pem(pem) == ids["bank"].fingerprint
        await asyncio.sleep(0.1)
        assert any("no certificate" in x for x in listener.refusals)
        await listener.close()

    asyncio.run(main())


def test_expired_certificate_refused(tmp_path: Path, ids: dict[str, TlsIdentity]) -> None:
    old = create_identity(
        tmp_path / "old", "telecom", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=800), days=30
    )

    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        listener, port = await serve(ids["bank"], {"telecom": peer_of("telecom", old)}, handler)
        with pytest.raises(AuthenticationError):
            await connect(
                "127.0.0.1",
                port,
                old,
                peer_of("bank", ids["bank"]),
                session_id="s",
                local="telecom",
            )
        await listener.close()

    asyncio.run(main())


async def raw_pair(
    ids: dict[str, TlsIdentity], session: str = "s"
) -> tuple[TlsChannel, TlsChannel, TlsListener]:
    got: asyncio.Future[TlsChannel] = asyncio.get_running_loop().create_future()

    async def handler(ch: TlsChannel) -> None:
        got.set_result(ch)

    listener, port = await serve(
        ids["bank"], {"telecom": peer_of("telecom", ids["telecom"])}, handler
    )
    client = await connect(
        "127.0.0.1",
        port,
        ids["telecom"],
        peer_of("bank", ids["bank"]),
        session_id=session,
        local="telecom",
        timeout=3,
    )
    server = await got
    server.timeout = 3
    return client, server, listener


@pytest.mark.parametrize(
    ("forge", "match"),
    [
        (lambda s: encode_header(3, s, 0, 1 << 40, b"t", 10), "announced a message"),
        (lambda s: encode_header(3, s, 0, 10, b"t", (1 << 20) + 1), "frame of"),
        (lambda s: encode_header(3, s, 5, 10, b"t", 10), "frame 5 where frame 0"),
        (lambda s: encode_header(3, session_key("other"), 0, 10, b"t", 10), "another session"),
        (lambda s: b"XX" + encode_header(3, s, 0, 10, b"t", 10)[2:], "magic"),
    ],
)
def test_forged_frames_refused(ids: dict[str, TlsIdentity], forge: Any, match: str) -> None:
    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        client.writer.write(forge(session_key("s")) + b"\x00" * 10)
        await client.writer.drain()
        with pytest.raises(ProtocolViolationError, match=match):
            await server.recv("t")
        # the session is over on both sides
        with pytest.raises(ChannelError):
            await server.recv("t")
        # the client is told why at once (an error frame), not left to its timeout
        with pytest.raises(PeerDisconnectedError, match="aborted the session: protocol_violation"):
            await client.recv("t")
        await listener.close()

    asyncio.run(main())


def test_tag_mismatch_timeout_and_disconnect(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        await client.send("a", b"x")
        with pytest.raises(ProtocolViolationError, match="'a' where 'b'"):
            await server.recv("b")
        client, server, _ = await raw_pair(ids)
        with pytest.raises(ChannelTimeoutError):
            await server.recv("x", timeout=0.3)
        client, server, _ = await raw_pair(ids)
        # a peer that dies mid-message: half a frame, then the socket closes
        client.writer.write(
            encode_header(FLAG_FIRST | FLAG_LAST, session_key("s"), 0, 100, b"m", 100)
        )
        client.writer.write(b"\x00" * 10)
        await client.writer.drain()
        client.writer.transport.abort()
        with pytest.raises(PeerDisconnectedError):
            await server.recv("m")
        client, server, _ = await raw_pair(ids)
        await client.close()
        with pytest.raises(PeerDisconnectedError, match="closed the session"):
            await server.recv("m")
        await listener.close()

    asyncio.run(main())


def test_both_ways_exact_byte_counts_send_many_recv_into(ids: dict[str, TlsIdentity]) -> None:
    big = os.urandom(50_000_000)

    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        assert client.peer_fingerprint == ids["bank"].fingerprint
        assert server.peer_fingerprint == ids["telecom"].fingerprint
        assert (client.local, client.peer, server.local, server.peer) == (
            "telecom",
            "bank",
            "bank",
            "telecom",
        )
        got, _ = await asyncio.gather(server.recv("big"), client.send("big", big))
        assert got == big
        frames = -(-len(big) // (1 << 20))
        assert client.bytes_sent == server.bytes_received == len(big) + frames * (HEADER.size + 3)
        # vectored send straight into a caller's buffer, the other way
        await server.send_many("v", [b"head", memoryview(big)[:3_000_000], b"tail"])
        dst = bytearray(3_000_008)
        assert await client.recv_into("v", dst) == 3_000_008
        assert dst[:4] == b"head" and dst[4:-4] == big[:3_000_000] and dst[-4:] == b"tail"
        await server.send("v", b"x" * 11)
        with pytest.raises(ProtocolViolationError, match="at most 10 were expected"):
            await client.recv_into("v", bytearray(10))
        assert server.bytes_sent > 0 and client.bytes_received > 0
        await listener.close()

    asyncio.run(main())


def test_concurrent_sends_do_not_interleave(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        a, b = b"a" * 3_000_000, b"b" * 3_000_000
        await asyncio.gather(client.send("m", a), client.send("m", b), client.send("m", b""))
        got = {await server.recv("m") for _ in range(3)}
        assert got == {a, b, b""}
        await client.close()
        with pytest.raises(PeerDisconnectedError, match="closed the session"):
            await server.recv("m")
        assert server.peer_closed
        await listener.close()

    asyncio.run(main())


def test_oversized_announcement_refused_before_allocation(ids: dict[str, TlsIdentity]) -> None:
    """A frame announcing 1.9 GiB with a 2 GiB bound would be allocated; with the bound at
    1 MiB it is refused with no large allocation at all."""

    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        server.max_message = 1 << 20
        client.writer.write(
            encode_header(FLAG_FIRST, session_key("s"), 0, 1_900_000_000, b"t", 16) + bytes(16)
        )
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolViolationError, match="announced a message of 1900000000"):
                await server.recv("t")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20
        await listener.close()

    asyncio.run(main())


def test_cancelled_receive_mid_message_ends_the_session(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        client.writer.write(encode_header(FLAG_FIRST, session_key("s"), 0, 10, b"t", 5) + b"12345")
        task = asyncio.create_task(server.recv("t"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ChannelError, match="cancelled"):
            await server.recv("t")
        await listener.close()

    asyncio.run(main())


def test_stalled_peer_times_out_and_peer_is_told(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        client, server, listener = await raw_pair(ids)
        # half a message, then silence: the receiver gives up within its timeout
        client.writer.write(encode_header(FLAG_FIRST, session_key("s"), 0, 10, b"t", 5) + b"12345")
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(ChannelTimeoutError, match=r"within 0\.3 s"):
            await server.recv("t", timeout=0.3)
        assert loop.time() - t < 2
        with pytest.raises(PeerDisconnectedError, match="aborted the session: timeout"):
            await client.recv("x")
        await listener.close()

    asyncio.run(main())


def test_fingerprint_only_pinning(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        got: asyncio.Future[TlsChannel] = asyncio.get_running_loop().create_future()

        async def handler(ch: TlsChannel) -> None:
            got.set_result(ch)

        listener = await tls_serve(
            "127.0.0.1",
            0,
            ids["bank"],
            {"telecom": peer_of("telecom", ids["telecom"])},
            "bank",
            handler,
        )
        fp_only = Peer("bank", ids["bank"].fingerprint.upper())
        assert client_context(ids["telecom"], fp_only).verify_mode == ssl.CERT_NONE
        ch = await connect(
            "127.0.0.1", listener.port, ids["telecom"], fp_only, session_id="s", local="telecom"
        )
        await ch.send("t", b"ok")
        assert await (await got).recv("t") == b"ok"
        with pytest.raises(AuthenticationError, match="not the one pinned"):
            await connect(
                "127.0.0.1",
                listener.port,
                ids["telecom"],
                Peer("bank", ids["mallory"].fingerprint),
                session_id="s",
                local="telecom",
            )
        await ch.close()
        await listener.close()

    asyncio.run(main())


def test_client_without_certificate_refused_with_reason(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        listener, port = await serve_bank(ids, handler)
        ctx = client_context(None, peer_of("bank", ids["bank"]))
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=None)
        w.write(b'\x40\x00\x00\x00{"v":1,"session":"s","from":"telecom","to":"bank"}' + b" " * 13)
        reply = await asyncio.wait_for(r.read(), 5)
        assert b"a client certificate is required" in reply
        w.close()
        assert any("no certificate" in x for x in listener.refusals)
        await listener.close()

    asyncio.run(main())


def test_plaintext_server_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        async def plain(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await w.drain()
            w.close()

        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(AuthenticationError, match="TLS handshake"):
            await connect(
                "127.0.0.1",
                port,
                ids["telecom"],
                peer_of("bank", ids["bank"]),
                session_id="s",
                local="telecom",
                connect_timeout=5,
            )
        server.close()

    asyncio.run(main())


def test_expired_server_certificate_refused(tmp_path: Path, ids: dict[str, TlsIdentity]) -> None:
    old = create_identity(
        tmp_path / "oldbank", "bank", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=800), days=30
    )

    async def main() -> None:
        async def handler(ch: TlsChannel) -> None:
            raise AssertionError("must not be reached")

        listener = await tls_serve(
            "127.0.0.1", 0, old, {"telecom": peer_of("telecom", ids["telecom"])}, "bank", handler
        )
        for pinned in (peer_of("bank", old), Peer("bank", old.fingerprint)):
            with pytest.raises(AuthenticationError, match="expired"):
                await connect(
                    "127.0.0.1",
                    listener.port,
                    ids["telecom"],
                    pinned,
                    session_id="s",
                    local="telecom",
                )
        await listener.close()

    asyncio.run(main())


def test_wrong_session_and_wrong_node_refused(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        accepted = asyncio.create_task(
            accept_one(
                "127.0.0.1",
                0,
                ids["bank"],
                peer_of("telecom", ids["telecom"]),
                session_id="job-1",
                local="bank",
                on_listening=listening.set_result,
                accept_timeout=10,
            )
        )
        port = await listening
        bank = peer_of("bank", ids["bank"])
        with pytest.raises(ChannelError, match="unexpected session"):
            await connect(
                "127.0.0.1", port, ids["telecom"], bank, session_id="job-2", local="telecom"
            )
        with pytest.raises(ChannelError, match="this node is 'bank', not 'hospital'"):
            await connect(
                "127.0.0.1",
                port,
                ids["telecom"],
                Peer("hospital", bank.fingerprint),
                session_id="job-1",
                local="telecom",
            )
        ch = await connect(
            "127.0.0.1", port, ids["telecom"], bank, session_id="job-1", local="telecom"
        )
        server = await accepted
        assert server.session_id == ch.session_id == "job-1" and server.peer == "telecom"
        await ch.send_json("hi", {"n": 1})
        assert await server.recv_json("hi") == {"n": 1}
        await ch.close()
        await server.close()

    asyncio.run(main())


_DYING_PEER = textwrap.dedent(
    """
    import asyncio, os, sys
    from rainbridge.crypto.certs import TlsIdentity
    from rainbridge.net.frames import FLAG_FIRST, FLAG_LAST, encode_header, session_key
    from rainbridge.net.tls import Peer, connect

    async def main():
        me = TlsIdentity.load(sys.argv[1])
        bank = Peer("bank", sys.argv[3], open(sys.argv[2]).read())
        ch = await connect("127.0.0.1", int(sys.argv[4]), me, bank, session_id="s",
                           local="telecom")
        await ch.send("whole", b"w" * 100)
        head = encode_header(FLAG_FIRST | FLAG_LAST, session_key("s"), 1, 10**6, b"big", 10**6)
        ch.writer.write(head + b"x" * 1000)
        await ch.writer.drain()
        os._exit(3)  # the process dies mid-message, no close frame

    asyncio.run(main())
    """
)


def test_peer_process_dying_mid_message(ids: dict[str, TlsIdentity]) -> None:
    async def main() -> None:
        got: asyncio.Future[TlsChannel] = asyncio.get_running_loop().create_future()

        async def handler(ch: TlsChannel) -> None:
            got.set_result(ch)

        listener, port = await serve_bank(ids, handler, timeout=20)
        env = {**os.environ, "PYTHONPATH": str(Path(rainbridge.__file__).parents[1])}
        tel, bank = ids["telecom"], ids["bank"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _DYING_PEER,
            str(tel.cert_path.parent),
            str(bank.cert_path),
            bank.fingerprint,
            str(port),
            env=env,
        )
        ch = await asyncio.wait_for(got, 30)
        assert await ch.recv("whole") == b"w" * 100
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(PeerDisconnectedError, match="without closing the session"):
            await ch.recv("big")
        assert loop.time() - t < 15 and not ch.peer_closed
        assert await proc.wait() == 3
        await listener.close()

    asyncio.run(main())


async def serve_bank(
    ids: dict[str, TlsIdentity], handler: Callable[[TlsChannel], Awaitable[None]], **kw: Any
) -> tuple[TlsListener, int]:
    return await serve(ids["bank"], {"telecom": peer_of("telecom", ids["telecom"])}, handler, **kw)


def test_identity_files(tmp_path: Path) -> None:
    ident = create_identity(tmp_path / "n", "n")
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    assert len(ident.fingerprint) == 64 and ident.fingerprint == ident.fingerprint.lower()
    assert TlsIdentity.load(tmp_path / "n").fingerprint == ident.fingerprint
    assert ident.not_valid_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=700)
    # a re-created identity replaces a loosened key file rather than reusing it
    ident.key_path.chmod(0o644)
    create_identity(tmp_path / "n", "n")
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    other = create_identity(tmp_path / "o", "o")
    ident.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(ConfigError, match="is not the key of"):
        TlsIdentity.load(tmp_path / "n")
    with pytest.raises(ConfigError, match="no node identity"):
        TlsIdentity.load(tmp_path / "missing")
