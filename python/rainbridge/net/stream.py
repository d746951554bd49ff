"""A :class:`Channel` over any asyncio byte stream (a TLS socket, a local Unix socket).

What this protects against: a peer that announces more than it may send (every length is
checked before any allocation, see :mod:`rainbridge.net.frames`), that stalls (every frame
read is bounded by the receive timeout), that dies mid-message (end of stream becomes
:class:`~rainbridge.errors.PeerDisconnectedError`, never a short message), or that drifts out
of step (wrong tag, sequence or session: :class:`~rainbridge.errors.ProtocolViolationError`).
After any such error the channel is finished on both ends: this end refuses further use, and
the peer is sent an error frame so it fails at once instead of at its own timeout.

Design: no background task. Frames are read inside ``recv``, so a protocol's receive timeout
is the only clock and an unread message costs nothing but socket buffers (back pressure).
Large payloads leave as memoryview slices of the caller's buffer, one frame at a time; they
arrive into one buffer allocated once the announced total has passed ``max_message`` (or
straight into the caller's buffer with :meth:`StreamChannel.recv_into`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator, Sequence

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.net.channel import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_TIMEOUT_S,
    Buffer,
    Channel,
    WritableBuffer,
)
from rainbridge.net.frames import (
    FLAG_CLOSE,
    FLAG_ERROR,
    FLAG_FIRST,
    FLAG_LAST,
    HEADER,
    MAX_FRAME_LIMIT,
    MAX_REASON,
    Frame,
    decode_header,
    encode_header,
    encode_tag,
    session_key,
)

_GONE = (
    asyncio.IncompleteReadError,
    ConnectionError,
    BrokenPipeError,
    ssl.SSLError,
    EOFError,
    OSError,
)
#: frames up to this size go out as one write (one TLS record run, one syscall); larger ones
#: are written as header + a view of the caller's buffer, so the payload is never copied here
_COALESCE = 64 * 1024


class StreamChannel(Channel):
    """Framed messages over a reader/writer pair.

    Parameters
    ----------
    reader, writer
        The connected stream (already authenticated: this class does no authentication).
    session_id, local, peer
        The session and the two parties' names; every frame carries the session's key.
    timeout
        Default receive timeout in seconds: the longest wait for each frame of a message.
    max_frame
        Largest payload per frame, sent and accepted (both ends must agree).
    max_message
        Largest message accepted; an announced total above it is refused before allocating.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        session_id: str,
        local: str,
        peer: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        super().__init__()
        if not 0 < max_frame <= MAX_FRAME_LIMIT:
            raise ChannelError(f"max_frame must be 1 to {MAX_FRAME_LIMIT} bytes")
        if max_message < 0:
            raise ChannelError("max_message must not be negative")
        self.reader = reader
        self.writer = writer
        self.session_id = session_id
        self.local = local
        self.peer = peer
        self.timeout = timeout
        self.max_frame = max_frame
        self.max_message = max_message
        #: True once the peer ended the session with a close frame (not a crash)
        self.peer_closed = False
        self._session = session_key(session_id)
        self._send_seq = 0
        self._recv_seq = 0
        self._closed = False
        self._failed: ChannelError | None = None
        # Two sends from two tasks would interleave their frames; a lock orders them instead.
        # Send and receive stay independent (a protocol may gather a send with a receive).
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()

    # -- sending ---------------------------------------------------------------------------

    async def send(self, tag: str, payload: Buffer) -> None:
        """Send one message; a payload above ``max_frame`` leaves as views of it, not copies.

        The data has been handed to the transport (which copies or encrypts it) when this
        returns; the caller may then reuse ``payload``.
        """
        await self.send_many(tag, (payload,))

    async def send_many(self, tag: str, parts: Sequence[Buffer]) -> None:
        """Send the concatenation of ``parts`` as one message, without concatenating them."""
        self._check_open()
        tag_b = encode_tag(tag)
        views = [memoryview(p).cast("B") for p in parts]
        total = sum(v.nbytes for v in views)
        if total > self.max_message:
            raise ChannelError(
                f"message {tag!r} of {total} bytes exceeds the limit of {self.max_message}"
            )
        async with self._send_lock:
            first = True
            sent = 0
            try:
                for chunk in _chunks(views, total, self.max_frame):
                    self._check_open()
                    size = sum(c.nbytes for c in chunk)
                    sent += size
                    flags = (FLAG_FIRST if first else 0) | (FLAG_LAST if sent == total else 0)
                    header = encode_header(flags, self._session, self._send_seq, total, tag_b, size)
                    self._send_seq += 1
                    await self._write_frame(header, chunk, size)
                    first = False
            except asyncio.CancelledError:
                if not first:
                    # The peer holds part of a message it can never complete.
                    self._fail(ChannelError(f"sending {tag!r} to {self.peer!r} was cancelled"))
                raise

    async def _write_frame(self, header: bytes, chunk: list[memoryview], size: int) -> None:
        try:
            if size <= _COALESCE:
                self.writer.write(b"".join((header, *chunk)))
            else:
                self.writer.write(header)
                for c in chunk:
                    self.writer.write(c)
            await self.writer.drain()
        except _GONE as exc:
            raise self._fail(
                PeerDisconnectedError(f"peer {self.peer!r} went away while we were sending"),
                notify=False,
            ) from exc
        self.bytes_sent += len(header) + size

    # -- receiving -------------------------------------------------------------------------

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        """Receive the next message, which must carry ``tag``.

        ``timeout`` (default: the channel's) bounds the wait for each frame, so a large
        message that keeps arriving is not cut off while a stalled peer is still caught.
        """
        out = await self._recv(tag, timeout, None)
        assert isinstance(out, bytes | bytearray)
        return bytes(out) if isinstance(out, bytearray) else out

    async def recv_into(
        self, tag: str, buffer: WritableBuffer, *, timeout: float | None = None
    ) -> int:
        """Receive the next message (tag ``tag``) into ``buffer``; return its length.

        A message longer than ``buffer`` is refused with ``ProtocolViolationError`` before any
        of it is read, so ``buffer`` doubles as the bound the caller expects.
        """
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise ChannelError("recv_into needs a writable buffer")
        out = await self._recv(tag, timeout, view)
        assert isinstance(out, int)
        return out

    async def _recv(
        self, tag: str, timeout: float | None, into: memoryview | None
    ) -> bytes | bytearray | int:
        self._check_open()
        tag_b = encode_tag(tag)
        limit = self.timeout if timeout is None else timeout
        async with self._recv_lock:
            started = False
            try:
                buf: memoryview | None = None
                owned: bytearray | None = None
                total = filled = 0
                while True:
                    frame, got_tag, body = await self._read_frame(tag, limit)
                    started = True
                    if got_tag != tag_b:
                        shown = got_tag.decode("utf-8", "replace")
                        raise self._fail(
                            ProtocolViolationError(
                                f"peer {self.peer!r} sent {shown!r} where {tag!r} was expected"
                            )
                        )
                    if buf is None:
                        if not frame.flags & FLAG_FIRST:
                            raise self._fail(
                                ProtocolViolationError(
                                    f"peer {self.peer!r} sent a continuation frame with no "
                                    "message begun"
                                )
                            )
                        total = frame.total
                        if into is not None and total > len(into):
                            raise self._fail(
                                ProtocolViolationError(
                                    f"peer {self.peer!r} announced {total} bytes for {tag!r}; "
                                    f"at most {len(into)} were expected"
                                )
                            )
                        if into is None and frame.flags & FLAG_LAST:
                            # A one-frame message: its body already is the message, no copy.
                            if frame.length != total:
                                raise self._fail(self._short(tag))
                            return body
                        if into is None:
                            owned = bytearray(total)  # bounded: decode_header checked total
                            buf = memoryview(owned)
                        else:
                            buf = into
                    elif frame.flags & FLAG_FIRST or frame.total != total:
                        raise self._fail(
                            ProtocolViolationError(
                                f"peer {self.peer!r} began a message inside another"
                            )
                        )
                    if filled + frame.length > total:
                        raise self._fail(
                            ProtocolViolationError(
                                f"peer {self.peer!r} sent more than the {total} bytes it announced"
                            )
                        )
                    buf[filled : filled + frame.length] = body
                    filled += frame.length
                    if frame.flags & FLAG_LAST:
                        if filled != total:
                            raise self._fail(self._short(tag))
                        return owned if owned is not None else total
            except asyncio.CancelledError:
                if started:
                    # Part of a message is consumed: the stream cannot be resynchronised.
                    self._fail(ChannelError(f"receiving {tag!r} from {self.peer!r} was cancelled"))
                raise

    def _short(self, tag: str) -> ProtocolViolationError:
        return ProtocolViolationError(
            f"peer {self.peer!r} ended message {tag!r} before its announced length"
        )

    async def _read_frame(self, tag: str, limit: float) -> tuple[Frame, bytes, bytes]:
        """Read one data frame (header, tag, body); control frames end the session here."""
        try:
            async with asyncio.timeout(limit):
                raw = await self.reader.readexactly(HEADER.size)
                try:
                    frame = decode_header(
                        raw,
                        peer=self.peer,
                        session=self._session,
                        seq=self._recv_seq,
                        max_frame=self.max_frame,
                        max_message=self.max_message,
                    )
                except ProtocolViolationError as exc:
                    raise self._fail(exc) from None
                self._recv_seq += 1
                got_tag = await self.reader.readexactly(frame.tag_len) if frame.tag_len else b""
                body = await self.reader.readexactly(frame.length) if frame.length else b""
        except TimeoutError:
            raise self._fail(
                ChannelTimeoutError(
                    f"no {tag!r} message from peer {self.peer!r} within {limit:g} s"
                )
            ) from None
        except _GONE as exc:
            raise self._fail(
                PeerDisconnectedError(
                    f"peer {self.peer!r} disconnected without closing the session "
                    f"(while we waited for {tag!r})"
                ),
                notify=False,
            ) from exc
        self.bytes_received += HEADER.size + frame.tag_len + frame.length
        if frame.flags & FLAG_CLOSE:
            self.peer_closed = True
            raise self._fail(
                PeerDisconnectedError(
                    f"peer {self.peer!r} closed the session (while we waited for {tag!r})"
                ),
                notify=False,
            )
        if frame.flags & FLAG_ERROR:
            reason = body.decode("utf-8", "replace")
            raise self._fail(
                PeerDisconnectedError(f"peer {self.peer!r} aborted the session: {reason}"),
                notify=False,
            )
        return frame, got_tag, body

    # -- ending ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ChannelError(f"the channel to {self.peer!r} is closed")

    def _fail(self, exc: ChannelError, *, notify: bool = True) -> ChannelError:
        """Finish the channel with ``exc``; tell the peer why unless it is gone already.

        Synchronous on purpose (usable from any ``except``): the error frame is queued on the
        transport, which flushes it before closing.
        """
        if self._failed is None:
            self._failed = exc
            if notify and not self._closed:
                self._queue_error(f"{exc.code}: {exc}")
            self.writer.close()
        return exc

    def _queue_error(self, reason: str) -> None:
        body = reason.encode()[:MAX_REASON]
        header = encode_header(FLAG_ERROR, self._session, self._send_seq, 0, b"", len(body))
        self._send_seq += 1
        with contextlib.suppress(*_GONE, RuntimeError):
            self.writer.write(header + body)
            self.bytes_sent += len(header) + len(body)

    async def abort(self, reason: str) -> None:
        """Tell the peer this party gave up (so it fails at once, not at its timeout)."""
        if self._closed or self._failed is not None:
            return
        self._queue_error(reason)
        self._failed = ChannelError(f"the session with {self.peer!r} was aborted: {reason}")
        await self._shut()

    async def close(self) -> None:
        """Send a close frame (an orderly end, unlike a crash) and close the stream."""
        if self._closed:
            return
        if self._failed is None:
            header = encode_header(FLAG_CLOSE, self._session, self._send_seq, 0, b"", 0)
            self._send_seq += 1
            with contextlib.suppress(*_GONE, RuntimeError):
                self.writer.write(header)
                self.bytes_sent += len(header)
        self._closed = True
        await self._shut()

    async def _shut(self) -> None:
        self._closed = True
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def _chunks(views: list[memoryview], total: int, max_frame: int) -> Iterator[list[memoryview]]:
    """Split the concatenation of ``views`` into frame bodies of at most ``max_frame`` bytes.

    Yields lists of views (a frame may span two parts); an empty message yields one empty
    body, since even an empty message is a frame on the wire.
    """
    if total == 0:
        yield []
        return
    chunk: list[memoryview] = []
    room = max_frame
    for v in views:
        off = 0
        while off < v.nbytes:
            take = min(room, v.nbytes - off)
            chunk.append(v[off : off + take])
            off += take
            room -= take
            if room == 0:
                yield chunk
                chunk, room = [], max_frame
    if chunk:
        yield chunk
