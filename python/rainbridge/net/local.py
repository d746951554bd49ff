"""In-process channels: two ends of a session joined by asyncio queues.

For tests, notebooks and local simulation (``rainbridge run --local``). The same checks as the
TLS channel apply where they matter to a protocol: tags must match, messages are bounded,
receives time out, and closing one end wakes the other with
:class:`~rainbridge.errors.PeerDisconnectedError`. Byte counts include the frame header a
real channel would send, so local runs report realistic traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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

_FRAME_OVERHEAD = 48  # what a TLS frame header costs per frame, for honest byte counts
_CLOSED = object()


class LocalChannel(Channel):
    """One end of an in-process session."""

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
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.local = local
        self.peer = peer
        self._inbox = inbox
        self._outbox = outbox
        self.timeout = timeout
        self.max_message = max_message
        self._closed = False
        self._peer_gone = False

    @classmethod
    def pair(
        cls,
        session_id: str,
        a: str,
        b: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> tuple[LocalChannel, LocalChannel]:
        """Two connected ends: ``a``'s channel to ``b`` and ``b``'s channel to ``a``."""
        ab: asyncio.Queue[object] = asyncio.Queue()
        ba: asyncio.Queue[object] = asyncio.Queue()
        kw = {"timeout": timeout, "max_message": max_message}
        return cls(session_id, a, b, ba, ab, **kw), cls(session_id, b, a, ab, ba, **kw)  # type: ignore[arg-type]

    @classmethod
    def mesh(
        cls,
        session_id: str,
        names: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> dict[str, dict[str, LocalChannel]]:
        """A channel between every two of ``names``: ``mesh[me][peer]``."""
        if len(set(names)) != len(names):
            raise ChannelError("a party is named twice in the mesh")
        out: dict[str, dict[str, LocalChannel]] = {n: {} for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                out[a][b], out[b][a] = cls.pair(
                    session_id, a, b, timeout=timeout, max_message=max_message
                )
        return out

    async def send(self, tag: str, payload: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ChannelError(f"channel to {self.peer!r} is closed")
        if self._peer_gone:
            raise PeerDisconnectedError(f"peer {self.peer!r} closed the session")
        size = memoryview(payload).nbytes
        if size > self.max_message:
            raise ProtocolViolationError(
                f"message {tag!r} of {size} bytes exceeds the limit of {self.max_message}"
            )
        frames = max(1, -(-size // DEFAULT_MAX_FRAME))
        self.bytes_sent += size + frames * _FRAME_OVERHEAD
        # A copy, as a socket would make: the sender may reuse its buffer at once.
        await self._outbox.put((tag, bytes(payload)))

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        if self._closed:
            raise ChannelError(f"channel to {self.peer!r} is closed")
        if self._peer_gone:
            raise PeerDisconnectedError(f"peer {self.peer!r} closed the session")
        limit = self.timeout if timeout is None else timeout
        try:
            item = await asyncio.wait_for(self._inbox.get(), limit)
        except TimeoutError:
            raise ChannelTimeoutError(
                f"no {tag!r} message from {self.peer!r} within {limit:g} s"
            ) from None
        if item is _CLOSED:
            self._peer_gone = True
            raise PeerDisconnectedError(f"peer {self.peer!r} closed the session")
        assert isinstance(item, tuple)
        got: str = item[0]
        payload: bytes = item[1]
        if got != tag:
            raise ProtocolViolationError(
                f"peer {self.peer!r} sent {got!r} where {tag!r} was expected"
            )
        frames = max(1, -(-len(payload) // DEFAULT_MAX_FRAME))
        self.bytes_received += len(payload) + frames * _FRAME_OVERHEAD
        return payload

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._outbox.put(_CLOSED)
