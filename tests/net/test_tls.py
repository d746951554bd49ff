"""Mutual TLS channels over loopback: the happy path and every way a peer can be wrong."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rainbridge.crypto.certs import TlsIdentity, create_identity, fingerprint_pem
from rainbridge.errors import (
    AuthenticationError,
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.frames import FLAG_FIRST, FLAG_LAST, encode_header, session_key
from rainbridge.net.tls import Peer, TlsChannel, TlsListener, connect, fetch_certificate


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
        with pytest.raises(PeerDisconnectedError):
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
