"""A Ray task's sub-channel, through its party's job worker.

With the ``ray`` compute engine the per-bucket protocol runs in a Ray worker process of the
party, but the mutual-TLS link to the peer party is held by the job worker (the *driver*),
which wraps it in a :class:`~rainbridge.net.mux.Mux`. The driver runs a :class:`Relay`: it
listens on the party's network, and a task calls :func:`connect_sub` with the
:class:`RelayTicket` it was given to get a :class:`~rainbridge.net.mux.SubChannel` that
behaves as if it had been opened on the link itself. The driver forwards that sub-channel's
mux messages both ways without parsing their bodies: what the task's own Mux sends goes on
the link unchanged (its header checked to name the task's sub-channel and no other), and
what the peer sends for that sub-channel goes back to the task.

Security: the traffic between a task and its driver is plain TCP inside the party. The
party's Ray network is private to the party, and that is what keeps it confidential; the
relay adds no encryption. The ticket's secret (32 random bytes, new for each relay) only keeps
other processes on that network from speaking on the job's link: a connection names one
sub-channel and proves the secret with HMAC-SHA256 over that name; the driver accepts only
sub-channels it allowed, each by one connection at most, once.

If a task's connection drops before its sub-channel was closed, the driver aborts the
sub-channel toward the peer (reason ``"relay: task connection lost"``), so the peer fails at
once rather than at its receive timeout. If the link fails, or the peer ends the mux, the
task's sub-channel gets an ABORT or a CLOSE from the driver in the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    ConfigError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.mux import Mux, SubChannel
from rainbridge.net.mux_wire import Kind, abort_message, check_sub, decode_message, end_message
from rainbridge.net.stream import StreamChannel

#: the tag of mux messages between a task and its driver
TAG = "mux"
#: the longest hello line accepted (a sub-channel name and a 64-digit proof fit easily)
MAX_HELLO = 1024
LOST = "relay: task connection lost"


@dataclass(frozen=True)
class RelayTicket:
    """What a task needs to reach its driver's relay; picklable, sent with the task.

    ``session_id``, ``local`` and ``peer`` are the link's, so that the task's sub-channel
    carries the same names as one opened on the link.
    """

    host: str
    port: int
    #: 32 random bytes, hex; kept out of ``repr`` so that logging a ticket does not leak it
    secret: str = field(repr=False)
    timeout: float
    session_id: str
    local: str
    peer: str


def proof(secret_hex: str, sub: str) -> str:
    """HMAC-SHA256 of the sub-channel's name under the ticket's secret, hex."""
    try:
        key = bytes.fromhex(secret_hex)
    except ValueError:
        raise ConfigError("a relay ticket's secret is not hexadecimal") from None
    return hmac.new(key, sub.encode(), hashlib.sha256).hexdigest()


class Relay:
    """Listens on ``host`` (default 127.0.0.1, a free port) for tasks of this job.

    Each connection names one sub-channel and proves the job's secret (see the module's
    docstring); the driver answers ``ok`` or a line saying why it refused and closes.

    Parameters
    ----------
    mux
        The driver's mux over the link to the peer.
    host
        Where to listen: an address of the party's private network.
    timeout
        Bound on a task's hello, and the receive timeout the task's sub-channel gets.
    """

    def __init__(self, mux: Mux, *, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.mux = mux
        self.host = host
        self.timeout = timeout
        self._secret = secrets.token_bytes(32)
        self._allowed: set[str] = set()
        #: subs a task connected for (now or before): each serves one connection, once
        self._served: set[str] = set()
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        """Start listening; return the bound address."""
        if self._address is not None:
            return self._address
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = (str(host), int(port))
        return self._address

    @property
    def ticket(self) -> RelayTicket:
        """What a task needs to connect (after :meth:`start`)."""
        if self._address is None:
            raise ChannelError("the relay is not started")
        link = self.mux.link
        return RelayTicket(
            host=self._address[0],
            port=self._address[1],
            secret=self._secret.hex(),
            timeout=self.timeout,
            session_id=link.session_id,
            local=link.local,
            peer=link.peer,
        )

    def allow(self, sub: str) -> None:
        """Accept one task connection for ``sub``."""
        check_sub(sub)
        self._allowed.add(sub)

    async def abandon(self, sub: str) -> None:
        """The task for ``sub`` is gone: if it never connected, tell the peer (an ABORT
        with :data:`LOST`, as for a dropped connection) and refuse a late connection.

        A task that connected needs nothing here: its dropped connection aborts the sub.
        """
        if sub in self._served:
            return
        self._served.add(sub)
        try:
            ch = self.mux.open(sub)
        except ChannelError:  # the mux is closed: the peer is not waiting for the sub
            return
        await ch.abort(LOST)

    async def close(self) -> None:
        """Stop listening and drop every task connection (their subs are aborted)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers.values()):
            writer.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=self.timeout)

    # -- one task's connection -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            sub = await self._hello(reader, writer)
            if sub is not None:
                try:
                    await self._relay(sub, reader, writer)
                finally:
                    self._writers.pop(sub, None)
        except Exception:
            # A task's connection never takes the driver down; its sub is aborted in _relay.
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _hello(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str | None:
        """Read and check the hello; return the sub, or refuse (None)."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self.timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return None
        sub, why = self._check_hello(line)
        if sub is None:
            await _refuse(writer, why)
            return None
        self._served.add(sub)
        self._writers[sub] = writer
        return sub

    def _check_hello(self, line: bytes) -> tuple[str | None, str]:
        if len(line) > MAX_HELLO:
            return None, "hello too long"
        try:
            hello = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, "malformed hello"
        if not isinstance(hello, dict):
            return None, "malformed hello"
        sub, given = hello.get("sub"), hello.get("proof")
        if not isinstance(sub, str) or not isinstance(given, str):
            return None, "malformed hello"
        try:
            check_sub(sub)
        except ChannelError:
            return None, "invalid sub-channel name"
        want = hmac.new(self._secret, sub.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want.encode(), given.encode("utf-8", "replace")):
            return None, "wrong proof"
        if sub not in self._allowed:
            return None, f"sub-channel {sub!r} is not allowed"
        if sub in self._writers:
            return None, f"sub-channel {sub!r} is already connected"
        if sub in self._served:
            return None, f"sub-channel {sub!r} was already served"
        return sub, ""

    async def _relay(
        self, sub: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = self.mux.link
        task_ch = StreamChannel(
            reader,
            writer,
            session_id=link.session_id,
            local=link.local,
            peer=f"task of {sub}",
            timeout=self.timeout,
        )

        async def to_task(raw: bytes) -> None:
            await task_ch.send(TAG, raw)

        try:
            self.mux.forward(sub, to_task)
        except ChannelError as exc:  # the mux is closed, or the sub is this driver's own
            await _refuse(writer, str(exc))
            return
        # Before any await: the forwarded messages the pump writes must follow this line.
        writer.write(b"ok\n")
        ended = False  # the task's CLOSE or ABORT went to the peer
        reason = LOST
        try:
            while True:
                try:
                    # A task computes for as long as its bucket takes: no timeout here.
                    raw = await task_ch.recv(TAG, timeout=math.inf)
                except ChannelError:
                    return  # gone, orderly or not: the finally below decides
                try:
                    kind = decode_message(raw, peer=task_ch.peer).kind
                except ProtocolViolationError:
                    reason = "relay: the task sent a malformed message"
                    return
                if kind is Kind.END:
                    # The task's Mux is closing: answer for the link's end of it; the END
                    # itself is no message of the link's mux.
                    with contextlib.suppress(ChannelError):
                        await task_ch.send(TAG, end_message())
                    continue
                try:
                    await self.mux.send_raw(raw, sub=sub)
                except ProtocolViolationError:
                    reason = "relay: the task spoke out of turn on its sub-channel"
                    return
                except ChannelError:
                    ended = True  # the link failed: the peer is told by the link itself
                    return
                if kind is not Kind.DATA:
                    ended = True
        finally:
            if not ended:
                with contextlib.suppress(ChannelError):
                    await self.mux.send_raw(abort_message(sub, reason), sub=sub)
            await task_ch.close()


async def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
    with contextlib.suppress(OSError):
        writer.write(f"refused: {why}\n".encode())
        await writer.drain()


async def connect_sub(
    ticket: RelayTicket, sub: str
) -> tuple[SubChannel, Callable[[], Awaitable[None]]]:
    """Task side: open ``sub`` through the driver's relay.

    Returns the sub-channel and a closer that closes the sub-channel, then the task's mux in
    order, then the connection.

    Raises
    ------
    PeerDisconnectedError
        The relay cannot be reached, or it closed the connection during the hello.
    ChannelTimeoutError
        The relay did not answer within the ticket's timeout.
    ChannelError
        The relay refused (wrong secret, a sub-channel not allowed or already connected).
    """
    check_sub(sub)
    hello = json.dumps({"sub": sub, "proof": proof(ticket.secret, sub)}).encode() + b"\n"
    where = f"{ticket.host}:{ticket.port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ticket.host, ticket.port), ticket.timeout
        )
    except TimeoutError:
        raise ChannelTimeoutError(f"the job worker's relay at {where} did not answer") from None
    except OSError as exc:
        raise PeerDisconnectedError(
            f"cannot reach the job worker's relay at {where}: {exc}"
        ) from None
    try:
        writer.write(hello)
        answer = await asyncio.wait_for(reader.readline(), ticket.timeout)
    except TimeoutError:
        writer.close()
        raise ChannelTimeoutError(
            f"the job worker's relay at {where} did not answer the hello for {sub!r}"
        ) from None
    except (OSError, ValueError):
        writer.close()
        raise PeerDisconnectedError(
            f"the job worker's relay at {where} dropped the connection for {sub!r}"
        ) from None
    if answer != b"ok\n":
        writer.close()
        why = answer.decode("utf-8", "replace").strip() or "it closed the connection"
        raise ChannelError(f"the job worker's relay refused sub-channel {sub!r}: {why}")
    stream = StreamChannel(
        reader,
        writer,
        session_id=ticket.session_id,
        local=ticket.local,
        # what the task's errors about its connection name: the peer, reached through here
        peer=f"{ticket.peer} (through the job worker's relay)",
        timeout=ticket.timeout,
    )
    mux = Mux(stream, tag=TAG)
    ch = mux.open(sub)
    ch.peer = ticket.peer  # the sub-channel is one to the peer party, as on the link

    async def closer() -> None:
        await ch.close()
        with contextlib.suppress(ChannelError):
            await mux.close()
        await stream.close()

    return ch, closer
