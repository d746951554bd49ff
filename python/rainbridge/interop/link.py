"""The interconnection transport (PPCA 9—2023 §9): gRPC ``ReceiverService.Push`` between
ranks, messages addressed by key, large ones in chunks.

Each party runs a ``Push`` server; a message is a ``PushRequest`` with the sender's rank, a
key and a value, whole (``MONO``) or in chunks (``CHUNKED``, each with the total length
and its offset), answered by a ``PushResponse`` whose header carries the standard's error
code. Received messages wait in a mailbox by key until read. Keys:

* ``connect_{rank}``: the link's own handshake (every party sends it to every other and
  waits for theirs);
* ``{channel}:P2P-{counter}:{sender}->{receiver}``: point-to-point messages, one counter
  per channel and ordered pair. The standard's text numbers them from 0 (``root:P2P-0:0->1``)
  while the published repository's transport page starts at 1; ``counter_start`` picks
  (default 0, as the standard). Sub-channels are named ``{channel}-{n}``.

Limits: a message over ``max_message`` bytes (announced or sent), chunks out of order or
overflowing their message, a sender rank that is not the peer's, more than
``max_pending_bytes`` held for one peer (unread messages and partly received ones, keys
included) or more than ``max_pending`` unread messages are refused with ``INVALID_REQUEST``
(the sender sees a :class:`~rainbridge.errors.ProtocolViolationError`), the message's partial
buffer is dropped, and a reader waiting for it gets a :class:`MessageRefusedError` at once.
A chunked message's buffer grows as its chunks arrive: the announced ``message_length`` is
checked against the limits but never allocated.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import grpc

from rainbridge.errors import (
    ChannelError,
    ChannelTimeoutError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.interop import messages as m
from rainbridge.interop.pb import decode, encode

_CHANNEL = re.compile(r"^\w+(-\d+)*$")
MAX_KEY = 1024  # bytes of a message key; the standard's keys are a few dozen


class MessageRefusedError(ProtocolViolationError):
    """A peer's message was refused on arrival (over a limit, or malformed): the message a
    reader waits for will not come."""


@dataclass(frozen=True)
class IcTls:
    """Mutual TLS for the gRPC link: our certificate and key, the peer's pinned certificate
    (its only trusted root) and, if the address is not in it, a name its certificate
    carries."""

    cert_pem: bytes
    key_pem: bytes
    peer_cert_pem: bytes
    peer_name: str | None = None

    @classmethod
    def from_identity(
        cls, identity: Any, peer_cert_pem: str, peer_name: str | None = None
    ) -> IcTls:
        """From a node's :class:`~rainbridge.crypto.certs.TlsIdentity` (its key decrypted in
        memory) and the peer's pinned certificate."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(
            identity.key_path.read_bytes(), identity.key_password
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(identity.cert_pem.encode(), key_pem, peer_cert_pem.encode(), peer_name)


class _Partial:
    """A chunked message being received: only the chunks that arrived (in any order, no
    overlaps), never a buffer of the announced length."""

    __slots__ = ("chunks", "got", "offsets", "sender", "total")

    def __init__(self, sender: int, total: int) -> None:
        self.sender, self.total, self.got = sender, total, 0
        self.offsets: list[int] = []
        self.chunks: dict[int, bytes] = {}

    def fits(self, offset: int, n: int) -> bool:
        if offset < 0 or offset + n > self.total:
            return False
        i = bisect.bisect_left(self.offsets, offset)
        if i < len(self.offsets) and self.offsets[i] < offset + n:
            return False
        return not (i > 0 and self.offsets[i - 1] + len(self.chunks[self.offsets[i - 1]]) > offset)

    def add(self, offset: int, value: bytes) -> None:
        bisect.insort(self.offsets, offset)
        self.chunks[offset] = value
        self.got += len(value)

    def join(self) -> bytes:
        return b"".join(self.chunks[o] for o in self.offsets)


class IcLink:
    """One party's end of an interconnection link between ranks ``0..n-1``."""

    def __init__(
        self,
        rank: int,
        listen: str,
        peers: dict[int, str] | None = None,
        *,
        channel: str = "root",
        counter_start: int = 0,
        chunk_bytes: int = 1 << 20,
        max_message: int = 256 << 20,
        max_pending_bytes: int = 1 << 30,
        max_pending: int = 10_000,
        timeout: float = 60.0,
        tls: IcTls | None = None,
    ) -> None:
        if not _CHANNEL.match(channel):
            raise ValueError(f"channel name {channel!r}: letters, digits and '_' only")
        self.rank = rank
        self.listen = listen
        self.peers = dict(peers or {})
        self.channel = channel
        self.counter_start = counter_start
        self.chunk_bytes = chunk_bytes
        self.max_message = max_message
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.timeout = timeout
        self.tls = tls
        self.port = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._mail: dict[str, bytes] = {}
        self._sender: dict[str, int] = {}  # who sent each unread message
        self._partial: dict[str, _Partial] = {}
        self._held: dict[int, int] = defaultdict(int)  # bytes held per sender
        self._refused: dict[str, str] = {}  # key -> why, for a reader waiting on it
        self._arrived = asyncio.Condition()
        self._send_counters: dict[tuple[str, int], int] = defaultdict(lambda: counter_start)
        self._recv_counters: dict[tuple[str, int], int] = defaultdict(lambda: counter_start)
        self._server: Any = None
        self._channels: dict[int, Any] = {}
        self._error: str | None = None

    # -- the server ----------------------------------------------------------------------

    async def start(self) -> int:
        """Start the ``Push`` server; returns the port it listens on."""
        opts = [("grpc.max_receive_message_length", self.chunk_bytes * 2 + (1 << 16))]
        self._server = grpc.aio.server(options=opts)
        handler = grpc.method_handlers_generic_handler(
            "org.interconnection.link.ReceiverService",
            {"Push": grpc.unary_unary_rpc_method_handler(self._on_push)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        if self.tls is None:
            self.port = self._server.add_insecure_port(self.listen)
        else:
            creds = grpc.ssl_server_credentials(
                [(self.tls.key_pem, self.tls.cert_pem)],
                root_certificates=self.tls.peer_cert_pem,
                require_client_auth=True,
            )
            self.port = self._server.add_secure_port(self.listen, creds)
        await self._server.start()
        return self.port

    def _reply(self, code: int, msg: str = "") -> bytes:
        return encode(m.PUSH_RESPONSE, {"header": {"error_code": code, "error_msg": msg}})

    def _drop_partial(self, key: str) -> None:
        part = self._partial.pop(key, None)
        if part is not None:
            self._held[part.sender] -= part.got + len(key)

    async def _refuse(self, key: str, why: str) -> bytes:
        """Refuse a message: its partial buffer goes, a reader waiting for it is told."""
        self._drop_partial(key)
        if key and key not in self._mail and len(self._refused) < self.max_pending:
            async with self._arrived:
                self._refused[key] = why
                self._arrived.notify_all()
        return self._reply(m.INVALID_REQUEST, why)

    async def _on_push(self, request: bytes, context: Any) -> bytes:
        try:
            req = decode(m.PUSH_REQUEST, request)
        except ProtocolViolationError as exc:
            return self._reply(m.INVALID_REQUEST, str(exc))
        sender, key, value = req["sender_rank"], req["key"], req["value"]
        if sender not in self.peers:
            return self._reply(m.INVALID_REQUEST, f"rank {sender} is not a peer of this link")
        if len(key.encode()) > MAX_KEY:
            return self._reply(m.INVALID_REQUEST, f"a message key over {MAX_KEY} bytes")
        self.bytes_received += len(request)
        if key in self._mail:
            return await self._refuse(key, f"message {key!r} received twice")
        part = self._partial.get(key)
        if part is None and len(self._mail) + len(self._partial) >= self.max_pending:
            return self._reply(m.INVALID_REQUEST, "too many unread messages")
        if req["trans_type"] == m.CHUNKED:
            info = req["chunk_info"] or {}
            total, offset = int(info.get("message_length", 0)), int(info.get("chunk_offset", 0))
            if total > self.max_message:
                return await self._refuse(
                    key, f"message too large: {total} bytes announced, {self.max_message} allowed"
                )
            if part is None:
                part = _Partial(sender, total)
                self._partial[key] = part
                self._held[sender] += len(key)
            if part.sender != sender or part.total != total:
                return await self._refuse(key, "chunks disagree on the message length")
            if total <= 0 or not value or not part.fits(offset, len(value)):
                return await self._refuse(key, "a chunk outside its message")
            if self._held[sender] + len(value) > self.max_pending_bytes:
                return await self._refuse(
                    key, f"over {self.max_pending_bytes} bytes held for rank {sender}"
                )
            part.add(offset, value)
            self._held[sender] += len(value)
            if part.got < total:
                return self._reply(m.OK)
            value = part.join()
            self._drop_partial(key)
        elif len(value) > self.max_message:
            return await self._refuse(key, "message too large")
        if self._held[sender] + len(value) + len(key) > self.max_pending_bytes:
            return await self._refuse(
                key, f"over {self.max_pending_bytes} bytes held for rank {sender}"
            )
        async with self._arrived:
            self._held[sender] += len(value) + len(key)
            self._sender[key] = sender
            self._mail[key] = value
            self._arrived.notify_all()
        return self._reply(m.OK)

    # -- the client ----------------------------------------------------------------------

    def _channel(self, dst: int) -> Any:
        ch = self._channels.get(dst)
        if ch is None:
            if dst not in self.peers:
                raise ChannelError(f"rank {dst} is not a peer of this link")
            opts: list[tuple[str, Any]] = [
                ("grpc.max_send_message_length", self.chunk_bytes * 2 + (1 << 16))
            ]
            if self.tls is None:
                ch = grpc.aio.insecure_channel(self.peers[dst], options=opts)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self.tls.peer_cert_pem,
                    private_key=self.tls.key_pem,
                    certificate_chain=self.tls.cert_pem,
                )
                if self.tls.peer_name:
                    opts.append(("grpc.ssl_target_name_override", self.tls.peer_name))
                ch = grpc.aio.secure_channel(self.peers[dst], creds, options=opts)
            self._channels[dst] = ch
        return ch

    async def _push(self, dst: int, req: dict[str, Any]) -> None:
        body = encode(m.PUSH_REQUEST, req)
        call = self._channel(dst).unary_unary(m.PUSH_METHOD)
        try:
            raw = await call(body, timeout=self.timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ChannelTimeoutError(f"rank {dst} did not take a message in time") from None
            raise PeerDisconnectedError(f"rank {dst}: {exc.code().name}") from None
        self.bytes_sent += len(body)
        header = decode(m.PUSH_RESPONSE, raw).get("header") or {}
        if header.get("error_code", 0) != m.OK:
            raise ProtocolViolationError(
                f"rank {dst} refused a message ({header.get('error_code')}): "
                f"{str(header.get('error_msg'))[:200]}"
            )

    async def send_raw(self, dst: int, key: str, value: bytes) -> None:
        """Push one message under ``key`` (chunked when larger than ``chunk_bytes``)."""
        if len(value) <= self.chunk_bytes:
            await self._push(
                dst, {"sender_rank": self.rank, "key": key, "value": value, "trans_type": m.MONO}
            )
            return
        for off in range(0, len(value), self.chunk_bytes):
            await self._push(
                dst,
                {
                    "sender_rank": self.rank,
                    "key": key,
                    "value": value[off : off + self.chunk_bytes],
                    "trans_type": m.CHUNKED,
                    "chunk_info": {"message_length": len(value), "chunk_offset": off},
                },
            )

    async def recv_raw(self, key: str) -> bytes:
        """Wait for the message ``key`` (and take it out of the mailbox)."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: key in self._mail or key in self._refused),
                    self.timeout,
                )
            except TimeoutError:
                raise ChannelTimeoutError(f"no message {key!r} within {self.timeout:g} s") from None
            if key not in self._mail:
                raise MessageRefusedError(f"message {key!r} was refused: {self._refused[key]}")
            value = self._mail.pop(key)
            self._held[self._sender.pop(key)] -= len(value) + len(key)
            return value

    def sub(self, n: int) -> str:
        """The name of sub-channel ``n``."""
        return f"{self.channel}-{n}"

    def _key(self, channel: str, src: int, dst: int, counters: dict[tuple[str, int], int]) -> str:
        peer = dst if src == self.rank else src
        n = counters[(channel, peer)]
        counters[(channel, peer)] = n + 1
        return f"{channel}:P2P-{n}:{src}->{dst}"

    async def send(self, dst: int, value: bytes, channel: str | None = None) -> None:
        """A point-to-point message on ``channel`` (default: the main one)."""
        ch = channel or self.channel
        await self.send_raw(dst, self._key(ch, self.rank, dst, self._send_counters), value)

    async def recv(self, src: int, channel: str | None = None) -> bytes:
        ch = channel or self.channel
        return await self.recv_raw(self._key(ch, src, self.rank, self._recv_counters))

    async def connect(self) -> None:
        """The link's handshake: tell every peer we exist, wait until each has told us."""
        await asyncio.gather(*(self.send_raw(p, f"connect_{self.rank}", b"") for p in self.peers))
        for p in self.peers:
            await self.recv_raw(f"connect_{p}")

    async def close(self) -> None:
        self._partial.clear()
        for ch in self._channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
        if self._server is not None:
            await self._server.stop(grace=0.5)
