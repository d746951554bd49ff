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
across sessions), an unknown or unpinned node, a client without a certificate, an expired
certificate, a plaintext client, a peer claiming another's name, a connection meant for
another session or node. Every refusal is an
:class:`~rainbridge.errors.AuthenticationError` (or a typed ``ChannelError``) at the
refused end; the server records why in :attr:`TlsListener.refusals` and logs one warning
per refused connection (``rainbridge.net.tls``) with the remote address and the reason —
including those refused in the TLS handshake itself (garbage bytes, an unpinned or
look-alike certificate), which is why the listener runs the handshake in its own handler —
at most :data:`REFUSALS_PER_SECOND` lines a second per kind of reason, the lines skipped
counted in the next one. Framing, bounds and
timeouts inside the session are :mod:`rainbridge.net.stream`'s. What it does not protect
against: a pinned peer that misbehaves inside a session — that is the protocols' business.

Why the server needs the pinned peers' certificates and not only their fingerprints:
Python's ``ssl`` can ask a client for a certificate only while verifying it against a trust
store, so the pinned certificates are that store (each self-signed certificate is its own
anchor); the fingerprint is compared after the handshake all the same. A client may pin a
server by fingerprint alone (``Peer(name, fingerprint)``): the handshake proves the server
holds the key of the certificate it shows, and the fingerprint and validity are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rainbridge.crypto.certs import (
    TlsIdentity,
    check_pinned,
    check_validity,
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
from rainbridge.net.frames import VERSION as FRAME_VERSION
from rainbridge.net.stream import StreamChannel

log = logging.getLogger("rainbridge.net.tls")

HELLO_VERSION = 1
#: refused connections logged per second and kind of reason (the rest are counted)
REFUSALS_PER_SECOND = 5
MAX_HELLO = 4096
MAX_SESSION_ID = 200
_LEN = struct.Struct("<I")
#: stream buffer: a whole default frame fits, so reading one does not stall on flow control
_STREAM_LIMIT = 1 << 20


class TlsChannel(StreamChannel):
    """A :class:`StreamChannel` over an authenticated TLS connection.

    ``bytes_sent``/``bytes_received`` count frame bytes (header, tag, payload); TLS adds
    about 22 bytes per 16 KiB record, and the handshake and hello are not counted.
    """

    #: SHA-256 fingerprint of the peer's certificate, as verified
    peer_fingerprint: str = ""


@dataclass(frozen=True)
class Peer:
    """A pinned peer: its name, its certificate's fingerprint and the certificate (PEM).

    ``cert_pem`` may be left empty where this node only dials the peer (the fingerprint
    alone pins it); a listener needs it (see the module docstring).
    """

    name: str
    fingerprint: str
    cert_pem: str = ""


def server_context(identity: TlsIdentity, peers: Mapping[str, Peer]) -> ssl.SSLContext:
    """TLS 1.3 server context that requires a client certificate from ``peers``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert_path, identity.key_path, identity.key_password)
    # CERT_OPTIONAL: a client without a certificate completes the handshake only to be refused
    # at the hello with a clear error (and to let `peer add` fetch our certificate);
    # a client with an unknown certificate fails the handshake itself.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    pems = "".join(p.cert_pem for p in peers.values() if p.cert_pem)
    if pems:
        ctx.load_verify_locations(cadata=pems)
    return ctx


def client_context(identity: TlsIdentity | None, peer: Peer | None) -> ssl.SSLContext:
    """TLS 1.3 client context that trusts only ``peer``'s certificate (or none, to fetch)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is the pinned certificate, not a host name
    if peer is None or not peer.cert_pem:
        # No trust store: the fingerprint (and validity) checked after the handshake pin it.
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=peer.cert_pem)
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path, identity.key_password)
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

    Parameters
    ----------
    host, port
        The peer's data plane.
    identity
        This node's certificate and key.
    peer
        Who must answer: its name and pinned fingerprint (and certificate, if known).
    session_id
        The session (at most 200 characters); the server must expect it.
    local
        This node's name; the server checks it against our certificate.
    timeout
        The channel's receive timeout.
    connect_timeout
        Bound on the TCP connect, the handshake and the hello.
    max_frame, max_message
        Frame and message bounds (both ends must use the same ``max_frame``).

    Raises
    ------
    AuthenticationError
        The server's certificate is not the one pinned for ``peer`` or is expired, or the
        server refused our certificate or our claimed name.
    ChannelError
        The server refused the session (unknown session, wrong node name).
    ChannelTimeoutError
        No answer within ``connect_timeout``.
    PeerDisconnectedError
        Nothing listens there, or the connection dropped.
    """
    if not session_id or len(session_id) > MAX_SESSION_ID:
        raise ChannelError(f"a session id is 1 to {MAX_SESSION_ID} characters")
    ctx = client_context(identity, peer)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=None, limit=_STREAM_LIMIT),
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
        der = _peer_der(writer)
        check_pinned(der, peer.fingerprint, peer.name)
        assert der is not None
        check_validity(der, peer.name)
        await _send_hello(
            writer,
            {
                "v": HELLO_VERSION,
                "frame": FRAME_VERSION,
                "session": session_id,
                "from": local,
                "to": peer.name,
            },
        )
        reply = await _recv_hello(reader, peer.name, connect_timeout)
    except (ChannelError, OSError, ssl.SSLError) as exc:
        writer.close()
        if isinstance(exc, AuthenticationError | ChannelTimeoutError | ProtocolViolationError):
            raise
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
    if reply.get("from") != peer.name or reply.get("session") != session_id:
        # The certificate is pinned, so this is a misconfigured peer, not an attacker; still,
        # a channel must never join two parties that disagree on who and what it is for.
        writer.close()
        raise ChannelError(
            f"peer {peer.name!r} answered as {str(reply.get('from'))[:80]!r} for another "
            "session; check its configuration"
        )
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
#: decides whether a hello is acceptable: returns None to accept or a refusal reason (or an
#: awaitable of one, for a decision that reads storage off the event loop)
AcceptFn = Callable[[str, str], "str | Awaitable[str | None] | None"]


class RefusalLog:
    """One warning per refused connection, with the remote address and the reason, at most
    ``per_second`` lines a second for each ``kind`` of reason; the lines skipped are counted
    in the next line of their kind (or at :meth:`flush`)."""

    def __init__(
        self, per_second: int = REFUSALS_PER_SECOND, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.clock = clock
        self._state: dict[str, tuple[float, int, int]] = {}  # kind -> start, logged, skipped

    def refuse(self, kind: str, addr: str, reason: str) -> bool:
        """Log a refusal (True) or count it as skipped (False)."""
        now = self.clock()
        start, logged, skipped = self._state.get(kind, (now, 0, 0))
        if now - start >= 1.0:
            start, logged = now, 0
        if logged >= self.per_second:
            self._state[kind] = (start, logged, skipped + 1)
            return False
        more = f" ({skipped} more refused for this reason not logged)" if skipped else ""
        log.warning("data plane refused a connection from %s: %s%s", addr, reason, more)
        self._state[kind] = (start, logged + 1, 0)
        return True

    def flush(self) -> None:
        for kind, (_, _, skipped) in self._state.items():
            if skipped:
                log.warning(
                    "data plane: %d more connections refused (%s) not logged", skipped, kind
                )
        self._state.clear()


def _address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unknown address")


class TlsListener:
    """Accepts authenticated channels from pinned peers and hands them to a callback.

    Parameters
    ----------
    identity
        This node's certificate and key.
    peers
        The pinned peers by name (with their certificates), or a function returning them,
        consulted on every connection (so unpinning takes effect at once; call
        :meth:`reload` after pinning a new peer).
    local
        This node's name; a hello addressed to another is refused.
    on_channel
        ``async (channel) -> None``, called with each accepted :class:`TlsChannel`;
        ``channel.peer`` and ``channel.session_id`` say who and what for.
    accept
        ``(peer_name, session_id) -> None | reason``: refuse sessions this node does not
        expect (the reason goes back to the client).
    timeout, max_frame, max_message
        For the accepted channels.
    hello_timeout
        Bound on the TLS handshake and the hello.
    """

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
        self.port = 0
        self.refusals: list[str] = []  # recent refusal reasons, for logs and tests
        self.refusal_log = RefusalLog()
        self._tasks: set[asyncio.Task[None]] = set()

    def peers(self) -> Mapping[str, Peer]:
        return self._peers() if callable(self._peers) else self._peers

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (pass 0 for an ephemeral one)."""
        self._ctx = server_context(self.identity, self.peers())
        # TLS is started in the handler, so that a failed handshake is seen (and logged)
        self.server = await asyncio.start_server(self._handle, host, port, limit=_STREAM_LIMIT)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    def reload(self) -> None:
        """Trust newly pinned peers for later handshakes.

        A removed peer stays in OpenSSL's store until restart, but is refused all the same:
        every connection's fingerprint is looked up in the current set after the handshake.
        """
        pems = "".join(p.cert_pem for p in self.peers().values() if p.cert_pem)
        if pems and getattr(self, "_ctx", None) is not None:
            self._ctx.load_verify_locations(cadata=pems)

    def set_identity(self, identity: TlsIdentity) -> None:
        """Present ``identity`` from the next handshake on; open connections keep theirs."""
        self.identity = identity
        if getattr(self, "_ctx", None) is not None:
            self._ctx.load_cert_chain(identity.cert_path, identity.key_path, identity.key_password)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        for t in list(self._tasks):
            t.cancel()
        self.refusal_log.flush()

    def _refuse(self, reason: str, addr: str = "unknown address", kind: str = "") -> None:
        self.refusals.append(reason)
        del self.refusals[:-50]
        self.refusal_log.refuse(kind or reason, addr, reason)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = _address(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if await self._start_tls(writer, addr):
                await self._handle_inner(reader, writer, addr)
        except (ChannelError, OSError, ssl.SSLError) as exc:
            # A client that vanished mid-hello, or a callback's channel error: nothing to
            # answer, and not worth a traceback in the event loop's log.
            self._refuse(f"connection ended: {exc}", addr, "connection ended")
            writer.close()
        except asyncio.CancelledError:
            # the listener is closing: end quietly, for asyncio's start_server callback
            # asks a cancelled handler task for its exception and logs a traceback
            writer.close()
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _start_tls(self, writer: asyncio.StreamWriter, addr: str) -> bool:
        """The TLS handshake; a failure is refused (and logged) here."""
        try:
            # called before the handler first yields: no byte of the client's is read in plain
            await writer.start_tls(self._ctx, ssl_handshake_timeout=self.hello_timeout)
            return True
        except ssl.SSLCertVerificationError as exc:
            reason = f"TLS handshake: certificate not pinned here ({exc.verify_message})"
            self._refuse(reason, addr, "certificate not pinned")
        except (ssl.SSLError, OSError, EOFError) as exc:
            why = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self._refuse(f"TLS handshake failed: {why}", addr, "TLS handshake failed")
        writer.close()
        return False

    async def _handle_inner(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, addr: str
    ) -> None:
        der = _peer_der(writer)
        if not der:
            # Allowed through the handshake only so `peer add` can fetch our certificate:
            # a session needs a certificate. Say so, so the client fails with a reason.
            self._refuse("a client presented no certificate", addr)
            with contextlib.suppress(Exception):
                await _send_hello(
                    writer,
                    {
                        "v": HELLO_VERSION,
                        "ok": False,
                        "code": "authentication",
                        "message": "a client certificate is required",
                    },
                )
            writer.close()
            return
        fp = fingerprint_der(der)
        name = next(
            (p.name for p in self.peers().values() if same_fingerprint(p.fingerprint, fp)), None
        )
        try:
            hello = await _recv_hello(reader, name or "unknown peer", self.hello_timeout)
        except ChannelError as exc:
            self._refuse(str(exc), addr, "bad hello")
            writer.close()
            return
        claimed = str(hello.get("from", ""))
        session = str(hello.get("session", ""))
        reason: str | None = None
        code = "refused"
        if name is None:
            reason, code = "certificate not pinned here", "authentication"
        elif (expired := _validity_problem(der, name)) is not None:
            reason, code = expired, "authentication"
        elif claimed != name:
            reason, code = f"certificate belongs to {name!r}, not {claimed!r}", "authentication"
        elif hello.get("to") != self.local:
            reason = f"this node is {self.local!r}, not {hello.get('to')!r}"
        elif hello.get("frame", FRAME_VERSION) != FRAME_VERSION:
            reason = f"this node speaks frame version {FRAME_VERSION}"
        elif not session or len(session) > MAX_SESSION_ID:
            reason = "invalid session id"
        elif self.accept is not None:
            decided = self.accept(name, session)
            reason = await decided if inspect.isawaitable(decided) else decided
        if reason is not None:
            self._refuse(f"{claimed or 'unknown'}: {reason}", addr, f"hello refused ({code})")
            with contextlib.suppress(Exception):
                await _send_hello(
                    writer, {"v": HELLO_VERSION, "ok": False, "code": code, "message": reason}
                )
            writer.close()
            return
        assert name is not None
        await _send_hello(
            writer, {"v": HELLO_VERSION, "ok": True, "from": self.local, "session": session}
        )
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


def _validity_problem(der: bytes, name: str) -> str | None:
    try:
        check_validity(der, name)
    except AuthenticationError as exc:
        return str(exc)
    return None


async def serve(
    host: str,
    port: int,
    identity: TlsIdentity,
    trusted: Mapping[str, Peer] | Callable[[], Mapping[str, Peer]],
    local: str,
    on_channel: OnChannel,
    **options: Any,
) -> TlsListener:
    """Start a :class:`TlsListener` on ``host:port`` (0: ephemeral) and return it.

    ``options`` are :class:`TlsListener`'s (``accept``, ``timeout``, ``max_frame``...). The
    bound port is ``listener.port``; stop with ``await listener.close()``.
    """
    listener = TlsListener(identity, trusted, local, on_channel, **options)
    await listener.start(host, port)
    return listener


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
        # Stop listening; the accepted channel lives on (its handler task has finished).
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
