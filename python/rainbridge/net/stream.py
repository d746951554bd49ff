"""A :class:`Channel` over any asyncio byte stream (a TLS socket, a local Unix socket).

Frames are read in ``recv`` (no background task), so a protocol's receive timeout is the
only clock. Large payloads leave as memoryview slices, one frame at a time with back
pressure, and arrive into one buffer allocated once the announced total has been checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

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
    Channel,
)
from rainbridge.net.frames import (
    FLAG_CLOSE,
    FLAG_ERROR,
    FLAG_FIRST,
    FLAG_LAST,
    HEADER,
    decode_header,
    encode_header,
    session_key,
)

_GONE = (
    asyncio.IncompleteReadError,
    ConnectionError,
    BrokenPipeError,
    ssl.SSLError,
    EOFError,
)


class StreamChannel(Channel):
    """Framed messages over a reader/writer pair."""

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
        self.reader = reader
        self.writer = writer
        self.session_id = session_id
        self.local = local
        self.peer = peer
        self.timeout = timeout
        self.max_frame = max_frame
        self.max_message = max_message
        self._session = session_key(session_id)
        self._send_seq = 0
        self._recv_seq = 0
        self._closed = False
        self._failed: ChannelError | None = None

    # -- sending ---------------------------------------------------------------------------

    async def _write(self, header: bytes, body: memoryview | bytes) -> None:
        try:
            self.writer.write(header)
            if len(body):
                self.writer.write(body)
            await self.writer.drain()
        except _GONE as exc:
            raise self._fail(PeerDisconnectedError(f"peer {self.peer!r} went away")) from exc
        self.bytes_sent += len(header) + len(body)

    async def send(self, tag: str, payload: bytes | bytearray | memoryview) -> None:
        self._check_open()
        view = memoryview(payload).cast("B")
        total = view.nbytes
        if total > self.max_message:
            raise ProtocolViolationError(
                f"message {tag!r} of {total} bytes exceeds the limit of {self.max_message}"
            )
        tag_b = tag.encode()
        off = 0
        first = True
        while True:
            chunk = view[off : off + self.max_frame]
            off += len(chunk)
            flags = (FLAG_FIRST if first else 0) | (FLAG_LAST if off >= total else 0)
            header = encode_header(flags, self._session, self._send_seq, total, tag_b, len(chunk))
            self._send_seq += 1
            await self._write(header, chunk)
            first = False
            if off >= total:
                return

    # -- receiving -------------------------------------------------------------------------

    async def _read_exactly(self, n: int, deadline: float, tag: str) -> bytes:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise self._fail(self._timeout_error(tag))
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), remaining)
        except TimeoutError:
            raise self._fail(self._timeout_error(tag)) from None
        except _GONE as exc:
            raise self._fail(
                PeerDisconnectedError(f"peer {self.peer!r} disconnected before sending {tag!r}")
            ) from exc

    def _timeout_error(self, tag: str) -> ChannelTimeoutError:
        return ChannelTimeoutError(
            f"no {tag!r} message from peer {self.peer!r} within {self.timeout:g} s"
        )

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        self._check_open()
        limit = self.timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + limit
        buf: bytearray | None = None
        filled = 0
        while True:
            raw = await self._read_exactly(HEADER.size, deadline, tag)
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
            got_tag = (await self._read_exactly(frame.tag_len, deadline, tag)).decode(
                "utf-8", "replace"
            )
            body = await self._read_exactly(frame.length, deadline, tag) if frame.length else b""
            if frame.flags & FLAG_CLOSE:
                raise self._fail(PeerDisconnectedError(f"peer {self.peer!r} closed the session"))
            if frame.flags & FLAG_ERROR:
                reason = bytes(body[:500]).decode("utf-8", "replace")
                raise self._fail(PeerDisconnectedError(f"peer {self.peer!r} aborted: {reason}"))
            if got_tag != tag:
                raise self._fail(
                    ProtocolViolationError(
                        f"peer {self.peer!r} sent {got_tag!r} where {tag!r} was expected"
                    )
                )
            if buf is None:
                if not frame.flags & FLAG_FIRST:
                    raise self._fail(
                        ProtocolViolationError(f"peer {self.peer!r} sent a stray continuation")
                    )
                buf = bytearray(frame.total)  # bounded by max_message, checked above
                total = frame.total
            elif frame.flags & FLAG_FIRST or frame.total != total:
                raise self._fail(
                    ProtocolViolationError(f"peer {self.peer!r} interleaved two messages")
                )
            if filled + frame.length > total:
                raise self._fail(
                    ProtocolViolationError(f"peer {self.peer!r} overran its message length")
                )
            buf[filled : filled + frame.length] = body
            filled += frame.length
            self.bytes_received += len(raw) + frame.tag_len + frame.length
            if frame.flags & FLAG_LAST:
                if filled != total:
                    raise self._fail(
                        ProtocolViolationError(f"peer {self.peer!r} cut its message short")
                    )
                return bytes(buf)

    # -- ending ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ChannelError(f"the channel to {self.peer!r} is closed")

    def _fail(self, exc: ChannelError) -> ChannelError:
        if self._failed is None:
            self._failed = exc
            self.writer.close()
        return exc

    async def abort(self, reason: str) -> None:
        """Tell the peer this party gave up (so it fails at once, not at its timeout)."""
        if self._closed or self._failed is not None:
            return
        body = reason.encode()[:500]
        with contextlib.suppress(ChannelError, *_GONE):
            header = encode_header(FLAG_ERROR, self._session, self._send_seq, 0, b"", len(body))
            await asyncio.wait_for(self._write(header, body), 2)
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._failed is None:
            with contextlib.suppress(ChannelError, TimeoutError, *_GONE):
                header = encode_header(FLAG_CLOSE, self._session, self._send_seq, 0, b"", 0)
                await asyncio.wait_for(self._write(header, b""), 2)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
