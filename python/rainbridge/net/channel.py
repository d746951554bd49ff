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
* a peer that goes away raises :class:`~rainbridge.errors.PeerDisconnectedError`.
"""

from __future__ import annotations

import abc
import json
from typing import Any

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB, as yacl chunks payloads
DEFAULT_MAX_MESSAGE = 1 << 31  # 2 GiB per message, checked before allocating


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
    async def send(self, tag: str, payload: bytes | bytearray | memoryview) -> None:
        """Send one message; large payloads are split into frames without extra copies."""

    @abc.abstractmethod
    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        """Receive the next message, which must carry ``tag``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel; later sends and receives raise ``ChannelError``."""

    async def send_json(self, tag: str, obj: Any) -> None:
        """Send a small JSON-encodable control message."""
        await self.send(tag, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())

    async def recv_json(self, tag: str, *, timeout: float | None = None) -> Any:
        """Receive a control message sent with :meth:`send_json`."""
        from rainbridge.errors import ProtocolViolationError

        raw = await self.recv(tag, timeout=timeout)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolViolationError(
                f"peer {self.peer!r} sent a malformed {tag!r} message (not JSON)"
            ) from exc
