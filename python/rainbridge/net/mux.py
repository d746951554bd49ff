"""Sub-channels multiplexed over one :class:`~rainbridge.net.channel.Channel` (the *link*).

A PSI split into bucket pairs runs the unchanged per-bucket protocol, written against
``Channel``, on many sub-channels at once, all over the one authenticated link between two
parties. Both parties wrap their end of the link in a :class:`Mux` and open sub-channels by
name (``"b3.0"``); a sub-channel opened at one end talks to the sub-channel of the same name
at the other.

Wire: every mux message is one message on the link with the mux's tag (``"mux"``): a header
naming its kind, sub-channel and inner tag, and a body (:mod:`rainbridge.net.mux_wire`).

What this protects against: a sub-channel's protocol that drifts out of step (inner tags are
checked as a channel's tags are), a peer that forges a header (anything malformed fails the
whole mux with :class:`~rainbridge.errors.ProtocolViolationError` and aborts the link, since
the link can no longer be trusted to be in step), a peer that gives up on one bucket (its
ABORT fails that sub-channel at once, with the reason) and a link that fails (every
sub-channel fails with the same error class, naming the link). Each sub-channel keeps the
:class:`~rainbridge.net.channel.Channel` contract, receive timeouts included.

What it does not do: flow control per sub-channel. One reader task reads the link and queues
each message for its sub-channel, so a sub-channel whose protocol is slow to receive costs
memory (as much as the peer sends it), never a stall of the others. Messages for a
sub-channel not opened yet are kept until it is opened (the peer may start bucket k first).

:meth:`Mux.close` ends in order: both ends send END and read the other's, so the link is
left at a message boundary and the job's later components use it for ordinary messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.channel import DEFAULT_TIMEOUT_S, Buffer, Channel, WritableBuffer
from rainbridge.net.frames import encode_tag
from rainbridge.net.mux_wire import (
    MAX_ABORT_REASON,
    MAX_SUB,
    Kind,
    MuxMessage,
    abort_message,
    check_sub,
    close_message,
    decode_message,
    encode_header,
    end_message,
)

__all__ = [
    "MAX_ABORT_REASON",
    "MAX_SUB",
    "Kind",
    "Mux",
    "MuxMessage",
    "SubChannel",
    "abort_message",
    "check_sub",
    "close_message",
    "decode_message",
    "encode_header",
    "end_message",
]

#: where the link sits under a receive that has no timeout: the reader waits for the peer's
#: next message however long the sub-channels' protocols compute (each recv has its own)
_FOREVER = math.inf

Sink = Callable[[bytes], Awaitable[None]]


class _Wake:
    """Queued to wake a waiting receive after an abort or a link failure (checked first)."""


_WAKE = _Wake()


@dataclass(frozen=True)
class _PeerEnd:
    """Queued after the last message the peer sent on a sub-channel."""

    what: str


class Mux:
    """Sub-channels over one Channel (the link). Both ends wrap their end of the link.

    Parameters
    ----------
    link
        The channel between the two parties; while the mux runs, only it reads the link.
    tag
        The link tag every mux message carries.
    """

    def __init__(self, link: Channel, *, tag: str = "mux") -> None:
        encode_tag(tag)
        self.link = link
        self.tag = tag
        #: set when the link failed (every sub-channel then fails with its class)
        self.failure: ChannelError | None = None
        #: DATA messages that arrived for sub-channels already closed at this end
        self.dropped = 0
        timeout = getattr(link, "timeout", None)
        self.timeout: float = (
            float(timeout) if isinstance(timeout, int | float) else DEFAULT_TIMEOUT_S
        )
        self._send_lock = asyncio.Lock()
        self._subs: dict[str, SubChannel] = {}
        self._forwards: dict[str, _Forward] = {}
        #: what arrived for subs not opened (nor forwarded) yet, in order
        self._pending: dict[str, list[tuple[MuxMessage, bytes]]] = {}
        #: every name ever opened or forwarded here: a name serves one sub-channel only
        self._used: set[str] = set()
        self._aborts: dict[str, str] = {}
        #: forwarded subs whose relayed side already sent CLOSE or ABORT
        self._raw_ended: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._peer_ended = False
        self._closing = False
        self._closed = asyncio.Event()
        self._failed = asyncio.Event()

    # -- opening ---------------------------------------------------------------------------

    def open(self, sub: str, *, timeout: float | None = None) -> SubChannel:
        """Open sub-channel ``sub`` (call inside the running event loop).

        ``timeout`` is its default receive timeout (default: the link's). Opening a name a
        second time at one end raises ``ChannelError``; after a link failure the sub-channel
        opens but every use raises the link's error.
        """
        check_sub(sub)
        self._claim(sub)
        ch = SubChannel(self, sub, self.timeout if timeout is None else timeout)
        self._subs[sub] = ch
        for msg, _raw in self._pending.pop(sub, ()):
            ch._deliver(msg)
        if self._peer_ended:
            ch._deliver_end(f"peer {self.link.peer!r} ended the multiplexed link")
        self._ensure_reader()
        return ch

    def forward(self, sub: str, sink: Sink) -> None:
        """Hand every raw mux message the peer sends for ``sub`` to ``sink``, in order.

        For a relay: the messages go on, header and all, to another :class:`Mux` (a Ray
        task's). Messages that arrived before are handed over first. If ``sink`` raises, the
        relayed side is gone: later messages for ``sub`` are dropped. When the link fails or
        the peer ends the mux, ``sink`` gets a synthesised ABORT or CLOSE for ``sub``.
        """
        check_sub(sub)
        self._claim(sub)
        fwd = _Forward(self, sub, sink)
        self._forwards[sub] = fwd
        for msg, raw in self._pending.pop(sub, ()):
            fwd.put(msg, raw)
        if self.failure is not None:
            fwd.put_failure(self.failure)
        elif self._peer_ended:
            fwd.put_end()
        self._ensure_reader()

    def _claim(self, sub: str) -> None:
        if self._closing:
            raise ChannelError(f"the multiplexed link to {self.link.peer!r} is closed")
        if sub in self._used:
            raise ChannelError(f"sub-channel {sub!r} was already opened at this end")
        self._used.add(sub)

    async def wait_failure(self) -> ChannelError:
        """Wait until the link fails; return its error (for waits that read no sub-channel,
        such as a relayed task's, which must not outlast the link)."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    def aborted(self, sub: str) -> str | None:
        """The reason the peer gave when it aborted ``sub``, else None."""
        return self._aborts.get(sub)

    # -- sending ---------------------------------------------------------------------------

    async def send_raw(self, message: Buffer, *, sub: str) -> None:
        """Send a raw mux message produced by another Mux (a relayed task's) for ``sub``.

        ``sub`` must be forwarded here (:meth:`forward`). A malformed header, one naming
        another sub-channel (or none: END), or anything after the relayed side's CLOSE or
        ABORT raises ``ProtocolViolationError`` and nothing is sent.
        """
        if sub not in self._forwards:
            raise ChannelError(f"sub-channel {sub!r} is not forwarded at this end")
        msg = decode_message(message, peer=f"relayed {sub}")
        if msg.sub != sub:
            raise ProtocolViolationError(
                f"a relayed message for sub-channel {sub!r} names {msg.sub or 'no sub-channel'!r}"
            )
        if sub in self._raw_ended:
            raise ProtocolViolationError(
                f"a relayed message for sub-channel {sub!r} came after its end"
            )
        if msg.kind is not Kind.DATA:
            self._raw_ended.add(sub)
        await self._send((memoryview(message).cast("B"),), sub)

    async def _send(self, parts: Sequence[Buffer], sub: str) -> None:
        """Send one mux message; whole messages never interleave on the link."""
        if self.failure is not None:
            raise self.link_error(sub)
        limit = getattr(self.link, "max_message", None)
        if isinstance(limit, int):
            total = sum(memoryview(p).nbytes for p in parts)
            if total > limit:
                # A local refusal, before anything is sent: the link stays sound.
                raise ChannelError(
                    f"a message of {total} bytes on sub-channel {sub!r} exceeds the link's "
                    f"limit of {limit}"
                )
        async with self._send_lock:
            if self.failure is not None:
                raise self.link_error(sub)
            try:
                await self.link.send_many(self.tag, parts)
            except ChannelError as exc:
                self._fail(exc)
                raise self.link_error(sub) from exc

    # -- receiving -------------------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None and self.failure is None and not self._peer_ended:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(), name=f"mux reader {self.link.session_id}"
            )

    async def _read(self) -> None:
        peer = self.link.peer
        while True:
            try:
                raw = await self.link.recv(self.tag, timeout=_FOREVER)
            except ChannelError as exc:
                self._fail(exc)
                return
            try:
                msg = decode_message(raw, peer=peer)
            except ProtocolViolationError as exc:
                self._fail(exc)
                # The link can no longer be trusted to be in step: end it, telling the peer.
                with contextlib.suppress(ChannelError):
                    await self.link.abort(f"{exc.code}: {exc}")
                return
            if msg.kind is Kind.END:
                self._on_end()
                return
            self._dispatch(msg, raw)

    def _dispatch(self, msg: MuxMessage, raw: bytes) -> None:
        sub = msg.sub
        if msg.kind is Kind.ABORT:
            self._aborts[sub] = msg.reason
        ch = self._subs.get(sub)
        if ch is not None:
            if ch._closed:
                if msg.kind is Kind.DATA:
                    self.dropped += 1
                return
            ch._deliver(msg)
            return
        fwd = self._forwards.get(sub)
        if fwd is not None:
            fwd.put(msg, raw)
            return
        self._pending.setdefault(sub, []).append((msg, raw))

    def _on_end(self) -> None:
        self._peer_ended = True
        for ch in self._subs.values():
            ch._deliver_end(f"peer {self.link.peer!r} ended the multiplexed link")
        for fwd in self._forwards.values():
            fwd.put_end()

    def _fail(self, exc: ChannelError) -> None:
        if self.failure is not None:
            return
        self.failure = exc
        self._failed.set()
        for ch in self._subs.values():
            ch._wake()
        for fwd in self._forwards.values():
            fwd.put_failure(exc)

    def link_error(self, sub: str) -> ChannelError:
        """The link's failure as seen on ``sub``: the same class, naming the link."""
        assert self.failure is not None
        exc = self.failure
        return type(exc)(
            f"sub-channel {sub!r}: the link to peer {self.link.peer!r} "
            f"(session {self.link.session_id!r}) failed: {exc}"
        )

    # -- ending ----------------------------------------------------------------------------

    async def close(self) -> None:
        """End in order: close every sub-channel, send END, read the peer's END.

        Bounded by the link's timeout; then the reader has stopped at a message boundary and
        the link carries ordinary messages again. Forwarded sub-channels whose relayed side
        has not ended are aborted toward the peer. Returns at once if the link failed.
        Idempotent.

        Raises
        ------
        ChannelTimeoutError
            The peer's END did not come within the link's timeout (the mux is then failed).
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self._close()
        finally:
            for fwd in self._forwards.values():
                fwd.stop()
            self._closed.set()

    async def _close(self) -> None:
        if self.failure is not None:
            return
        for ch in list(self._subs.values()):
            await ch.close()
        for sub in list(self._forwards):
            if sub not in self._raw_ended and self.failure is None:
                self._raw_ended.add(sub)
                with contextlib.suppress(ChannelError):
                    await self._send((abort_message(sub, "the multiplexed link was closed"),), sub)
        if self.failure is not None:
            return
        try:
            await self._send((end_message(),), "")
        except ChannelError:
            return
        self._ensure_reader()
        reader = self._reader
        if reader is None:  # the peer's END was read already
            return
        done, _ = await asyncio.wait({reader}, timeout=self.timeout)
        if not done:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            exc = ChannelTimeoutError(
                f"peer {self.link.peer!r} did not end the multiplexed link within "
                f"{self.timeout:g} s"
            )
            self._fail(exc)
            raise exc


class _Forward:
    """Hands a forwarded sub's raw messages to its sink, in order, from its own task."""

    def __init__(self, mux: Mux, sub: str, sink: Sink) -> None:
        self.mux = mux
        self.sub = sub
        self.sink = sink
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer_done = False  # the peer sent CLOSE or ABORT for the sub
        self.task = asyncio.get_running_loop().create_task(self._pump())

    def put(self, msg: MuxMessage, raw: bytes) -> None:
        if msg.kind is not Kind.DATA:
            self.peer_done = True
        self.queue.put_nowait(raw)

    def put_end(self) -> None:
        if not self.peer_done:
            self.peer_done = True
            self.queue.put_nowait(close_message(self.sub))

    def put_failure(self, exc: ChannelError) -> None:
        if not self.peer_done:
            self.peer_done = True
            self.queue.put_nowait(
                abort_message(self.sub, f"the link to peer {self.mux.link.peer!r} failed: {exc}")
            )

    def stop(self) -> None:
        self.queue.put_nowait(None)

    async def _pump(self) -> None:
        gone = False
        while True:
            raw = await self.queue.get()
            if raw is None:
                return
            data = raw[0] == Kind.DATA
            if not gone:
                try:
                    await self.sink(raw)
                except Exception:
                    # The relayed side is gone; what the peer still sends for it is dropped.
                    gone = True
            if gone:
                self.mux.dropped += data
            elif not data:
                return  # the peer's CLOSE or ABORT is the last it sends for the sub


class SubChannel(Channel):
    """One sub-channel of a :class:`Mux`: a :class:`Channel` to the same-named one at the peer.

    ``session_id`` is the link's with ``"/" + sub``; ``local`` and ``peer`` are the link's.
    ``bytes_sent`` and ``bytes_received`` count this sub-channel's payload bytes; the link's
    counters keep the totals on the wire.
    """

    def __init__(self, mux: Mux, sub: str, timeout: float) -> None:
        super().__init__()
        self.mux = mux
        self.sub = sub
        self.session_id = f"{mux.link.session_id}/{sub}"
        self.local = mux.link.local
        self.peer = mux.link.peer
        self.timeout = timeout
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed = False
        self._failed: ChannelError | None = None
        #: the peer sends no more on this sub (CLOSE, ABORT or END seen by the reader)
        self._peer_done = False

    # -- from the reader -------------------------------------------------------------------

    def _deliver(self, msg: MuxMessage) -> None:
        if msg.kind is Kind.DATA:
            self._queue.put_nowait((msg.tag, msg.body))
        elif msg.kind is Kind.CLOSE:
            self._peer_done = True
            self._queue.put_nowait(_PeerEnd(f"peer {self.peer!r} closed sub-channel {self.sub!r}"))
        elif msg.kind is Kind.ABORT:
            self._peer_done = True
            if self._failed is None:
                # At once: queued messages are not worth reading after the peer gave up.
                self._failed = PeerDisconnectedError(
                    f"peer {self.peer!r} aborted sub-channel {self.sub!r}: {msg.reason}"
                )
            self._wake()

    def _deliver_end(self, what: str) -> None:
        if not self._peer_done:
            self._peer_done = True
            self._queue.put_nowait(_PeerEnd(f"{what} with sub-channel {self.sub!r} open"))

    def _wake(self) -> None:
        self._queue.put_nowait(_WAKE)

    # -- state -----------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self.mux.failure is not None:
            raise self.mux.link_error(self.sub)
        if self._closed:
            raise ChannelError(f"sub-channel {self.sub!r} to {self.peer!r} is closed")

    async def _fail(self, exc: ChannelError, *, notify: bool = True) -> ChannelError:
        """The sub is over with ``exc``; tell the peer (an ABORT) so it fails at once too."""
        if self._failed is None:
            self._failed = exc
            if notify and not self._closed and self.mux.failure is None:
                with contextlib.suppress(ChannelError):
                    await self.mux._send((abort_message(self.sub, f"{exc.code}: {exc}"),), self.sub)
            self._closed = True
        return exc

    # -- messages --------------------------------------------------------------------------

    async def send(self, tag: str, payload: Buffer) -> None:
        """Send one message on this sub-channel (see :meth:`Channel.send`)."""
        await self.send_many(tag, (payload,))

    async def send_many(self, tag: str, parts: Sequence[Buffer]) -> None:
        """Send the concatenation of ``parts`` as one message, without joining them."""
        self._check()
        if self._peer_done:
            raise PeerDisconnectedError(
                f"peer {self.peer!r} no longer reads sub-channel {self.sub!r} "
                f"(it closed it); {tag!r} was not sent"
            )
        header = encode_header(Kind.DATA, self.sub, tag)
        views = [memoryview(p).cast("B") for p in parts]
        await self.mux._send((header, *views), self.sub)
        self.bytes_sent += sum(v.nbytes for v in views)

    async def _next(self, tag: str, timeout: float | None) -> memoryview:
        self._check()
        encode_tag(tag)
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    self._check()
                    item = await self._queue.get()
                    if item is _WAKE:
                        continue
                    if isinstance(item, _PeerEnd):
                        raise await self._fail(
                            PeerDisconnectedError(f"{item.what} (while we waited for {tag!r})"),
                            notify=False,
                        )
                    assert isinstance(item, tuple)
                    got: str = item[0]
                    body: memoryview = item[1]
                    if got != tag:
                        raise await self._fail(
                            ProtocolViolationError(
                                f"peer {self.peer!r} sent {got!r} where {tag!r} was expected "
                                f"on sub-channel {self.sub!r}"
                            )
                        )
                    self.bytes_received += body.nbytes
                    return body
        except TimeoutError:
            raise await self._fail(
                ChannelTimeoutError(
                    f"no {tag!r} message from peer {self.peer!r} on sub-channel "
                    f"{self.sub!r} within {limit:g} s"
                )
            ) from None

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        """Receive the next message of this sub-channel, which must carry ``tag``."""
        return bytes(await self._next(tag, timeout))

    async def recv_into(
        self, tag: str, buffer: WritableBuffer, *, timeout: float | None = None
    ) -> int:
        """Receive the next message into ``buffer`` (one copy); longer than it is refused."""
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise ChannelError("recv_into needs a writable buffer")
        body = await self._next(tag, timeout)
        if body.nbytes > view.nbytes:
            raise await self._fail(
                ProtocolViolationError(
                    f"peer {self.peer!r} sent {body.nbytes} bytes for {tag!r} on sub-channel "
                    f"{self.sub!r}; at most {view.nbytes} were expected"
                )
            )
        view[: body.nbytes] = body
        return body.nbytes

    # -- ending ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Send CLOSE (the peer's next receive, once it read what came before, fails)."""
        if self._closed:
            return
        self._closed = True
        self._drain()
        if self._failed is None and self.mux.failure is None and not self.mux._peer_ended:
            with contextlib.suppress(ChannelError):
                await self.mux._send((close_message(self.sub),), self.sub)

    async def abort(self, reason: str) -> None:
        """Send ABORT with ``reason`` (the peer fails at once with it), then close."""
        if self._closed or self._failed is not None:
            return
        self._failed = ChannelError(f"sub-channel {self.sub!r} was aborted: {reason}")
        self._closed = True
        self._drain()
        if self.mux.failure is None and not self.mux._peer_ended:
            with contextlib.suppress(ChannelError):
                await self.mux._send((abort_message(self.sub, reason),), self.sub)

    def _drain(self) -> None:
        # Messages left unread are dropped with the sub (and counted); waiters are woken.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, tuple):
                self.mux.dropped += 1
        self._wake()
