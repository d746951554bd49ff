"""In-process channels: two ends of a session joined by asyncio queues.

For tests, notebooks and local simulation (``rainbridge run --local``). What this protects
against: a protocol that passes its tests locally and then fails over the network. The
checks that matter to a protocol are the TLS channel's: tags must match (strict UTF-8, at
most 64 bytes), messages are bounded by ``max_message`` on both ends, every receive times
out, and a failure ends the session on both ends with a typed error: closing one end wakes
the other with :class:`~rainbridge.errors.PeerDisconnectedError`; a timeout or a protocol
violation at one end makes the other's next receive fail at once, as the error frame of the
TLS channel does. Byte counts are those the framed channel would put on the wire (header and
tag per frame of at most ``max_frame`` bytes), so local runs report realistic traffic.

What it does not model: back pressure (queues are unbounded, so a protocol in which both
parties send large messages before either receives would stall over TCP but not here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

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
from rainbridge.net.frames import HEADER, MAX_REASON, encode_tag


@dataclass(frozen=True)
class _End:
    """What a queue carries when the sender ends the session."""

    orderly: bool
    reason: str = ""


def wire_size(tag_len: int, size: int, max_frame: int) -> int:
    """Bytes a framed channel sends for a message of ``size`` bytes with a tag of ``tag_len``."""
    frames = max(1, -(-size // max_frame))
    return size + frames * (HEADER.size + tag_len)


class LocalChannel(Channel):
    """One end of an in-process session. Build them with :meth:`pair` or :meth:`mesh`."""

    def __init__(
        self,
        session_id: str,
        local: str,
        peer: str,
        inbox: asyncio.Queue[object],
        outbox: asyncio.Queue[object],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.local = local
        self.peer = peer
        self._inbox = inbox
        self._outbox = outbox
        self.timeout = timeout
        self.max_message = max_message
        self.max_frame = max_frame
        #: True once the peer ended the session with :meth:`close` (not by failing)
        self.peer_closed = False
        self._closed = False
        self._failed: ChannelError | None = None

    @classmethod
    def pair(
        cls,
        session_id: str,
        a: str,
        b: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> tuple[LocalChannel, LocalChannel]:
        """Two connected ends: ``a``'s channel to ``b`` and ``b``'s channel to ``a``."""
        if a == b:
            raise ChannelError(f"a channel joins two parties; both are named {a!r}")
        ab: asyncio.Queue[object] = asyncio.Queue()
        ba: asyncio.Queue[object] = asyncio.Queue()
        return (
            cls(
                session_id,
                a,
                b,
                ba,
                ab,
                timeout=timeout,
                max_message=max_message,
                max_frame=max_frame,
            ),
            cls(
                session_id,
                b,
                a,
                ab,
                ba,
                timeout=timeout,
                max_message=max_message,
                max_frame=max_frame,
            ),
        )

    @classmethod
    def mesh(
        cls,
        session_id: str,
        names: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> dict[str, dict[str, LocalChannel]]:
        """A channel between every two of ``names``: ``mesh[me][peer]``."""
        if len(set(names)) != len(names):
            raise ChannelError("a party is named twice in the mesh")
        out: dict[str, dict[str, LocalChannel]] = {n: {} for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                out[a][b], out[b][a] = cls.pair(
                    session_id,
                    a,
                    b,
                    timeout=timeout,
                    max_message=max_message,
                    max_frame=max_frame,
                )
        return out

    # -- messages --------------------------------------------------------------------------

    async def send(self, tag: str, payload: Buffer) -> None:
        """Queue one message for the peer (a copy: the caller may reuse ``payload``)."""
        self._check_open()
        tag_b = encode_tag(tag)
        view = memoryview(payload).cast("B")
        if view.nbytes > self.max_message:
            raise ChannelError(
                f"message {tag!r} of {view.nbytes} bytes exceeds the limit of {self.max_message}"
            )
        self.bytes_sent += wire_size(len(tag_b), view.nbytes, self.max_frame)
        await self._outbox.put((tag, view.tobytes()))

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        """Receive the next message, which must carry ``tag`` (see :meth:`Channel.recv`)."""
        self._check_open()
        tag_b = encode_tag(tag)
        limit = self.timeout if timeout is None else timeout
        try:
            item = await asyncio.wait_for(self._inbox.get(), limit)
        except TimeoutError:
            raise self._fail(
                ChannelTimeoutError(
                    f"no {tag!r} message from peer {self.peer!r} within {limit:g} s"
                )
            ) from None
        if isinstance(item, _End):
            self.peer_closed = item.orderly
            what = "closed the session" if item.orderly else f"aborted the session: {item.reason}"
            raise self._fail(
                PeerDisconnectedError(f"peer {self.peer!r} {what} (while we waited for {tag!r})"),
                notify=False,
            )
        assert isinstance(item, tuple)
        got: str = item[0]
        payload: bytes = item[1]
        if got != tag:
            raise self._fail(
                ProtocolViolationError(
                    f"peer {self.peer!r} sent {got!r} where {tag!r} was expected"
                )
            )
        if len(payload) > self.max_message:
            raise self._fail(
                ProtocolViolationError(
                    f"peer {self.peer!r} announced a message of {len(payload)} bytes; "
                    f"the limit is {self.max_message}"
                )
            )
        self.bytes_received += wire_size(len(tag_b), len(payload), self.max_frame)
        return payload

    async def recv_into(
        self, tag: str, buffer: WritableBuffer, *, timeout: float | None = None
    ) -> int:
        """Receive the next message into ``buffer`` (see :meth:`Channel.recv_into`)."""
        view = memoryview(buffer).cast("B")
        data = await self.recv(tag, timeout=timeout)
        if len(data) > view.nbytes:
            raise self._fail(
                ProtocolViolationError(
                    f"peer {self.peer!r} announced {len(data)} bytes for {tag!r}; "
                    f"at most {view.nbytes} were expected"
                )
            )
        view[: len(data)] = data
        return len(data)

    # -- ending ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ChannelError(f"the channel to {self.peer!r} is closed")

    def _fail(self, exc: ChannelError, *, notify: bool = True) -> ChannelError:
        # As over TLS, the first failure ends the session at both ends.
        if self._failed is None:
            self._failed = exc
            if notify and not self._closed:
                self._outbox.put_nowait(_End(False, f"{exc.code}: {exc}"[:MAX_REASON]))
        return exc

    async def abort(self, reason: str) -> None:
        """Tell the peer this party gave up; its next receive fails at once."""
        if self._closed or self._failed is not None:
            return
        self._failed = ChannelError(f"the session with {self.peer!r} was aborted: {reason}")
        self._closed = True
        await self._outbox.put(_End(False, reason[:MAX_REASON]))

    async def close(self) -> None:
        """End the session in order; the peer's next receive raises PeerDisconnectedError."""
        if not self._closed:
            self._closed = True
            if self._failed is None:
                await self._outbox.put(_End(True))
