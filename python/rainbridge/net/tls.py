"""Mutual TLS 1.3 between nodes, with pinned certificates.

Each node has a self-signed certificate; a peer is known by the SHA-256 fingerprint of its
certificate and nothing else. Both ends verify: the server asks every client for a
certificate and accepts only those of its pinned peers (OpenSSL refuses any other during the
handshake, and expired ones), the client accepts only the server certificate pinned for the
peer it meant to reach, and both then compare fingerprints in constant time. TLS 1.3 is the
minimum. After the handshake a small hello names the session and the two parties; a server
refuses a hello whose claimed name does not match the certificate, or whose session it does
not expect.

What this protects against: an active network attacker (impersonation, tampering, replay
across sessions), an unknown or revoked node, a plaintext client. What it does not: a pinned
peer that misbehaves inside a session — that is the protocols' business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rainbridge.crypto.certs import (
    TlsIdentity,
    check_pinned,
    der_to_pem,
    fingerprint_der,
    same_fingerprint,
)
from rainbridge.errors import (
    AuthenticationError,
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.channel import DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE, DEFAULT_TIMEOUT_S
from rainbridge.net.stream import StreamChannel

HELLO_VERSION = 1
MAX_HELLO = 4096
_LEN = struct.Struct("<I")


class TlsChannel(StreamChannel):
    """A :class:`StreamChannel` over an authenticated TLS connection."""

    peer_fingerprint: str = ""


@dataclass(frozen=True)
class Peer:
    """A pinned peer: its name, certificate (PEM) and the certificate's fingerprint."""

    name: str
    fingerprint: str
    cert_pem: str


def server_context(identity: TlsIdentity, peers: Mapping[str, Peer]) -> ssl.SSLContext:
    """TLS 1.3 server context that requires a client certificate from ``peers``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert_path, identity.key_path)
    # CERT_OPTIONAL: a client without a certificate completes the handshake only to be refused
    # at the hello with a clear error (and to let `peer add` fetch our certificate);
    # a client with an unknown certificate fails the handshake itself.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    pems = "".join(p.cert_pem for p in peers.values())
    if pems:
        ctx.load_verify_locations(cadata=pems)
    return ctx


def client_context(identity: TlsIdentity | None, peer: Peer | None) -> ssl.SSLContext:
    """TLS 1.3 client context that trusts only ``peer``'s certificate (or none, to fetch)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is the pinned certificate, not a host name
    if peer is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=peer.cert_pem)
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    return ctx


async def _send_hello(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    writer.write(_LEN.pack(len(body)) + body)
    await writer.drain()


async def _recv_hello(reader: asyncio.StreamReader, peer: str, timeout: float) -> dict[str, Any]:
    try:
        (n,) = _LEN.unpack(await asyncio.wait_for(reader.readexactly(_LEN.size), timeout))
        if n > MAX_HELLO:
            raise ProtocolViolationError(f"{peer}: hello of {n} bytes exceeds {MAX_HELLO}")
        obj = json.loads(await asyncio.wait_for(reader.readexactly(n), timeout))
    except TimeoutError:
        raise ChannelTimeoutError(f"{peer}: no hello within {timeout:g} s") from None
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        raise PeerDisconnectedError(f"{peer}: connection closed during the hello") from exc
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolViolationError(f"{peer}: malformed hello") from None
    if not isinstance(obj, dict) or obj.get("v") != HELLO_VERSION:
        raise ProtocolViolationError(f"{peer}: unsupported hello")
    return obj


def _peer_der(writer: asyncio.StreamWriter) -> bytes | None:
    sslobj = writer.get_extra_info("ssl_object")
    return sslobj.getpeercert(binary_form=True) if sslobj is not None else None


async def connect(
    host: str,
    port: int,
    identity: TlsIdentity,
    peer: Peer,
    *,
    session_id: str,
    local: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    connect_timeout: float = 10.0,
    max_frame: int = DEFAULT_MAX_FRAME,
    max_message: int = DEFAULT_MAX_MESSAGE,
) -> TlsChannel:
    """Open a mutually authenticated channel to ``peer`` for ``session_id``.

    Raises
    ------
    AuthenticationError
        The server's certificate is not the one pinned for ``peer``, or it refused ours.
    PeerDisconnectedError
        Nothing listens there, or the connection dropped.
    """
    ctx = client_context(identity, peer)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=None),
            connect_timeout,
        )
    except TimeoutError:
        raise ChannelTimeoutError(
            f"could not reach peer {peer.name!r} at {host}:{port} within {connect_timeout:g} s"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise AuthenticationError(
            f"peer {peer.name!r} at {host}:{port} presented a certificate that is not the one "
            f"pinned for it ({exc.verify_message})"
        ) from None
    except ssl.SSLError as exc:
        raise AuthenticationError(
            f"TLS handshake with peer {peer.name!r} at {host}:{port} failed: {exc.reason}"
        ) from None
    except OSError as exc:
        raise PeerDisconnectedError(
            f"could not reach peer {peer.name!r} at {host}:{port}: {exc.strerror or exc}"
        ) from None
    try:
        check_pinned(_peer_der(writer), peer.fingerprint, peer.name)
        await _send_hello(
            writer, {"v": HELLO_VERSION, "session": session_id, "from": local, "to": peer.name}
        )
        reply = await _recv_hello(reader, peer.name, connect_timeout)
    except (ChannelError, OSError, ssl.SSLError) as exc:
        writer.close()
        if isinstance(exc, PeerDisconnectedError | ssl.SSLError | OSError):
            # TLS 1.3 reports a refused client certificate only after the handshake.
            raise AuthenticationError(
                f"peer {peer.name!r} refused the connection (is this node pinned there?)"
            ) from None
        raise
    if not reply.get("ok"):
        writer.close()
        code = str(reply.get("code", "refused"))
        msg = str(reply.get("message", "refused"))[:300]
        err = AuthenticationError if code == "authentication" else ChannelError
        raise err(f"peer {peer.name!r} refused the session: {msg}")
    ch = TlsChannel(
        reader,
        writer,
        session_id=session_id,
        local=local,
        peer=peer.name,
        timeout=timeout,
        max_frame=max_frame,
        max_message=max_message,
    )
    ch.peer_fingerprint = peer.fingerprint
    return ch


OnChannel = Callable[[TlsChannel], Awaitable[None]]
#: decides whether a hello is acceptable: returns None to accept or a refusal reason
AcceptFn = Callable[[str, str], str | None]


class TlsListener:
    """Accepts authenticated channels from pinned peers and hands them to a callback."""

    def __init__(
        self,
        identity: TlsIdentity,
        peers: Mapping[str, Peer] | Callable[[], Mapping[str, Peer]],
        local: str,
        on_channel: OnChannel,
        *,
        accept: AcceptFn | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        hello_timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.identity = identity
        self._peers = peers
        self.local = local
        self.on_channel = on_channel
        self.accept = accept
        self.timeout = timeout
        self.hello_timeout = hello_timeout
        self.max_frame = max_frame
        self.max_message = max_message
        self.server: asyncio.Server | None = None
        self.refusals: list[str] = []  # recent refusal reasons, for logs and tests
        self._tasks: set[asyncio.Task[None]] = set()

    def peers(self) -> Mapping[str, Peer]:
        return self._peers() if callable(self._peers) else self._peers

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (pass 0 for an ephemeral one)."""
        self._ctx = server_context(self.identity, self.peers())
        self.server = await asyncio.start_server(
            self._handle, host, port, ssl=self._ctx, ssl_handshake_timeout=self.hello_timeout
        )
        return int(self.server.sockets[0].getsockname()[1])

    def reload(self) -> None:
        """Trust newly pinned peers for later handshakes.

        A removed peer stays in OpenSSL's store until restart, but is refused all the same:
        every connection's fingerprint is looked up in the current set after the handshake.
        """
        pems = "".join(p.cert_pem for p in self.peers().values())
        if pems and getattr(self, "_ctx", None) is not None:
            self._ctx.load_verify_locations(cadata=pems)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        for t in list(self._tasks):
            t.cancel()

    def _refuse(self, reason: str) -> None:
        self.refusals.append(reason)
        del self.refusals[:-50]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handle_inner(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _handle_inner(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        der = _peer_der(writer)
        if not der:
            self._refuse("a client presented no certificate")
            writer.close()
            return
        fp = fingerprint_der(der)
        name = next(
            (p.name for p in self.peers().values() if same_fingerprint(p.fingerprint, fp)), None
        )
        try:
            hello = await _recv_hello(reader, name or "unknown peer", self.hello_timeout)
        except ChannelError as exc:
            self._refuse(str(exc))
            writer.close()
            return
        claimed = str(hello.get("from", ""))
        session = str(hello.get("session", ""))
        reason: str | None = None
        code = "refused"
        if name is None:
            reason, code = "certificate not pinned here", "authentication"
        elif claimed != name:
            reason, code = f"certificate belongs to {name!r}, not {claimed!r}", "authentication"
        elif hello.get("to") != self.local:
            reason = f"this node is {self.local!r}, not {hello.get('to')!r}"
        elif not session or len(session) > 200:
            reason = "invalid session id"
        elif self.accept is not None:
            reason = self.accept(name, session)
        if reason is not None:
            self._refuse(f"{claimed or 'unknown'}: {reason}")
            with contextlib.suppress(Exception):
                await _send_hello(
                    writer, {"v": HELLO_VERSION, "ok": False, "code": code, "message": reason}
                )
            writer.close()
            return
        assert name is not None
        await _send_hello(writer, {"v": HELLO_VERSION, "ok": True})
        ch = TlsChannel(
            reader,
            writer,
            session_id=session,
            local=self.local,
            peer=name,
            timeout=self.timeout,
            max_frame=self.max_frame,
            max_message=self.max_message,
        )
        ch.peer_fingerprint = fp
        await self.on_channel(ch)


async def accept_one(
    host: str,
    port: int,
    identity: TlsIdentity,
    peer: Peer,
    *,
    session_id: str,
    local: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_listening: Callable[[int], None] | None = None,
    accept_timeout: float = 60.0,
) -> TlsChannel:
    """Listen until ``peer`` connects for ``session_id``; return its channel (two-process use)."""
    got: asyncio.Future[TlsChannel] = asyncio.get_running_loop().create_future()

    async def on_channel(ch: TlsChannel) -> None:
        if not got.done():
            got.set_result(ch)

    def accept(name: str, session: str) -> str | None:
        return None if session == session_id and not got.done() else "unexpected session"

    listener = TlsListener(
        identity, {peer.name: peer}, local, on_channel, accept=accept, timeout=timeout
    )
    bound = await listener.start(host, port)
    if on_listening is not None:
        on_listening(bound)
    try:
        return await asyncio.wait_for(got, accept_timeout)
    except TimeoutError:
        raise ChannelTimeoutError(
            f"peer {peer.name!r} did not connect within {accept_timeout:g} s"
        ) from None
    finally:
        if listener.server is not None:
            listener.server.close()


async def fetch_certificate(host: str, port: int, *, timeout: float = 10.0) -> str:
    """The PEM certificate a node presents at ``host:port`` (verify its fingerprint after!)."""
    ctx = client_context(None, None)
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=None), timeout
        )
    except TimeoutError:
        raise ChannelTimeoutError(f"no answer from {host}:{port} within {timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise PeerDisconnectedError(f"could not reach {host}:{port}: {exc}") from None
    der = _peer_der(writer)
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2)
    if not der:
        raise AuthenticationError(f"{host}:{port} presented no certificate")
    return der_to_pem(der)
