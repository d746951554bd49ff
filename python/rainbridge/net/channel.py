"""The `Channel`: typed, framed, ordered messages between two parties of one session.

Protocols are written against this interface only (sans-I/O in spirit: they never open sockets
or files). Implementations: :class:`rainbridge.net.local.LocalChannel` (in-process) and the
mutual-TLS TCP channel in :mod:`rainbridge.net.tls`.

Contract every implementation keeps:

* messages are delivered in order; each carries a *tag* naming what it is (``"psi/masked"``),
  and ``recv(tag)`` raises :class:`~rainbridge.errors.ProtocolViolationError` if the next
  message has another tag, so a protocol that drifts out of step fails loudly;
* a payload of any size may be sent; it travels as frames of at most ``max_frame`` bytes and
  is refused on receipt if it exceeds ``max_message``;
* every ``recv`` is bounded by a timeout (:class:`~rainbridge.errors.ChannelTimeoutError`);
* a peer that goes away raises :class:`~rainbridge.errors.PeerDisconnectedError`;
* after any :class:`~rainbridge.errors.ChannelError` the session is over on that channel:
  a protocol aborts, it does not retry on the same channel.

What this protects against: protocol code that would otherwise parse unframed, unbounded
or out-of-step input. The guarantees above hold for every implementation, so a protocol
tested over :class:`~rainbridge.net.local.LocalChannel` meets the same failures over TLS.

Payloads are bytes-like: ``bytes``, ``bytearray``, ``memoryview`` (pass ``array.data`` for
a contiguous numpy array). ``recv`` returns ``bytes``; ``recv_into`` fills a buffer the caller
owns (e.g. a preallocated numpy array), which also bounds what the peer may send.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any, TypeAlias

from rainbridge.errors import ProtocolViolationError

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB, as yacl chunks payloads
DEFAULT_MAX_MESSAGE = 1 << 31  # 2 GiB per message, checked before allocating

#: what ``send`` accepts (any C-contiguous buffer works at run time, e.g. ``ndarray.data``)
Buffer: TypeAlias = bytes | bytearray | memoryview
#: what ``recv_into`` fills
WritableBuffer: TypeAlias = bytearray | memoryview


class Channel(abc.ABC):
    """One end of a two-party session."""

    #: the session this channel belongs to (every frame carries it)
    session_id: str
    #: this party's name and the peer's
    local: str
    peer: str

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.bytes_received = 0

    @abc.abstractmethod
    async def send(self, tag: str, payload: Buffer) -> None:
        """Send one message; large payloads are split into frames without extra copies.

        Parameters
        ----------
        tag
            What the message is (1 to 64 bytes of UTF-8), e.g. ``"psi/masked"``.
        payload
            Any bytes-like object; the caller may reuse it once this returns.

        Raises
        ------
        ChannelError
            The payload exceeds ``max_message``, the tag is invalid, or the channel is over.
        PeerDisconnectedError
            The peer went away.
        """

    async def send_many(self, tag: str, parts: Sequence[Buffer]) -> None:
        """Send the concatenation of ``parts`` as one message (vectored send).

        Implementations that can avoid the concatenation do; this default joins.
        """
        await self.send(tag, b"".join(parts))

    @abc.abstractmethod
    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        """Receive the next message, which must carry ``tag``.

        Raises
        ------
        ProtocolViolationError
            The next message has another tag, or the peer broke the framing.
        ChannelTimeoutError
            Nothing arrived within ``timeout`` seconds (default: the channel's).
        PeerDisconnectedError
            The peer closed the session or went away.
        """

    async def recv_into(
        self, tag: str, buffer: WritableBuffer, *, timeout: float | None = None
    ) -> int:
        """Receive the next message into ``buffer``; return its length in bytes.

        A message longer than ``buffer`` raises ``ProtocolViolationError``. Implementations
        that can read straight into ``buffer`` do; this default copies once.
        """
        view = memoryview(buffer).cast("B")
        data = await self.recv(tag, timeout=timeout)
        if len(data) > view.nbytes:
            raise ProtocolViolationError(
                f"peer {self.peer!r} sent {len(data)} bytes for {tag!r}; "
                f"at most {view.nbytes} were expected"
            )
        view[: len(data)] = data
        return len(data)

    @abc.abstractmethod
    async def close(self) -> None:
        """End the session in order; the peer's next receive raises ``PeerDisconnectedError``.

        Later sends and receives on this end raise ``ChannelError``. Idempotent.
        """

    async def abort(self, reason: str) -> None:
        """Tell the peer this party gave up (its next receive fails at once), then close.

        This default closes in order; the framed channels send the reason.
        """
        await self.close()

    async def send_json(self, tag: str, obj: Any) -> None:
        """Send a small JSON-encodable control message."""
        await self.send(tag, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())

    async def recv_json(self, tag: str, *, timeout: float | None = None) -> Any:
        """Receive a control message sent with :meth:`send_json`."""
        raw = await self.recv(tag, timeout=timeout)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            # ValueError too: an integer of more digits than Python converts (4,300)
            raise ProtocolViolationError(
                f"peer {self.peer!r} sent a malformed {tag!r} message (not JSON)"
            ) from exc
