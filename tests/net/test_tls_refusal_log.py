"""Connections the data plane refuses before a session exists are logged, one line each
with the remote address and the reason, rate-limited per kind of reason."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from rainbridge.crypto.certs import TlsIdentity, create_identity
from rainbridge.errors import AuthenticationError, ChannelError
from rainbridge.net.tls import (
    REFUSALS_PER_SECOND,
    Peer,
    RefusalLog,
    TlsChannel,
    TlsListener,
    connect,
)


def peer_of(name: str, ident: TlsIdentity) -> Peer:
    return Peer(name, ident.fingerprint, ident.cert_pem)


@pytest.fixture
def ids(tmp_path: Path) -> dict[str, TlsIdentity]:
    out = {n: create_identity(tmp_path / n, n) for n in ("bank", "telecom", "mallory")}
    out["look-alike"] = create_identity(tmp_path / "fake", "telecom")  # same name, other key
    return out


async def listen(ids: dict[str, TlsIdentity]) -> tuple[TlsListener, int]:
    async def handler(ch: TlsChannel) -> None:
        raise AssertionError("must not be reached")

    listener = TlsListener(
        ids["bank"],
        {"telecom": peer_of("telecom", ids["telecom"])},
        "bank",
        handler,
        hello_timeout=2,
    )
    return listener, await listener.start("127.0.0.1", 0)


async def garbage(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"\x16\x03\x01garbage, not a TLS ClientHello" * 4)
    await w.drain()
    await r.read()  # until the server closes
    w.close()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rainbridge.net.tls" and "refused a connection" in r.getMessage()
    ]


def test_garbage_and_unpinned_certificates_are_logged(
    ids: dict[str, TlsIdentity], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rainbridge.net.tls")

    async def main() -> None:
        listener, port = await listen(ids)
        try:
            await garbage(port)
            for who in ("mallory", "look-alike"):
                with pytest.raises((AuthenticationError, ChannelError)):
                    await connect(
                        "127.0.0.1",
                        port,
                        ids[who],
                        peer_of("bank", ids["bank"]),
                        session_id="s",
                        local="telecom",
                    )
            await asyncio.sleep(0.2)
        finally:
            await listener.close()

    asyncio.run(main())
    lines = refusals(caplog)
    assert len(lines) == 3, lines
    assert all("from 127.0.0.1:" in line for line in lines)
    assert "TLS handshake failed" in lines[0]
    assert all("certificate not pinned" in line for line in lines[1:])


def test_a_flood_is_logged_in_bounded_lines(
    ids: dict[str, TlsIdentity], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rainbridge.net.tls")

    async def main() -> float:
        listener, port = await listen(ids)
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for _ in range(20):
                await asyncio.gather(*(garbage(port) for _ in range(50)))
            await asyncio.sleep(0.2)
        finally:
            await listener.close()
        return loop.time() - start

    took = asyncio.run(main())
    lines = refusals(caplog)
    # at most REFUSALS_PER_SECOND per second, however many connections
    assert 1 <= len(lines) <= REFUSALS_PER_SECOND * (int(took) + 2), (len(lines), took)
    flushed = [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]
    assert flushed, "the skipped refusals are counted"


def test_refusal_log_counts_what_it_skips(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rainbridge.net.tls")
    now = [0.0]
    rl = RefusalLog(per_second=2, clock=lambda: now[0])
    assert [rl.refuse("tls", "10.0.0.1:5", "bad") for _ in range(5)] == [1, 1, 0, 0, 0]
    assert rl.refuse("other", "10.0.0.1:6", "no certificate")  # its own budget
    now[0] = 1.5
    assert rl.refuse("tls", "10.0.0.2:7", "bad")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert "10.0.0.2:7" in lines[-1] and "3 more refused" in lines[-1]
