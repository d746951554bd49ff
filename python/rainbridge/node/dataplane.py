"""The node's data plane: one mutual-TLS port for every peer.

A connection carries either one control exchange (session ``control:…``: a request such as
propose, start or abort, and its reply) or one job's protocol messages between two parties
(session ``job:<id>/<a>-<b>``). For a job, the worker of the party whose name sorts first
dials its peer's data plane itself; the accepting node checks that the certificate is pinned
(the TLS listener), that the session belongs to a running job naming that peer (here), and
then relays the byte stream to its own worker over a Unix socket. The workers run the frame
codec end to end, so size limits, sequence numbers and session binding are checked where the
bytes are used, while each node keeps a single listening port and its key stays with the node
and its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rainbridge.crypto.certs import TlsIdentity
from rainbridge.errors import (
    AuthorizationError,
    ChannelError,
    DataError,
    NotFoundError,
    RainbridgeError,
    RateLimitError,
)
from rainbridge.net.tls import Peer, TlsChannel, TlsListener, connect
from rainbridge.node.background import Background
from rainbridge.node.config import NodeConfig
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.runner import ACTIVE, Runner
from rainbridge.node.sessions import NOT_RUNNING, control_session, is_control, job_of, pair_session
from rainbridge.node.storage import PeerRow, Storage

log = logging.getLogger("rainbridge.node.dataplane")

#: a control request or reply is a small JSON object; anything larger is refused
MAX_CONTROL_BYTES = 2 << 20
#: relay buffer: enough for throughput, small enough to keep memory bounded per stream
_RELAY_CHUNK = 1 << 16

ControlHandler = Callable[[str, Any], Awaitable[dict[str, Any]]]
#: a service's own refusal: ``(peer, reason, reply) -> the error to raise``
Refusal = Callable[[str, str, dict[str, Any]], Exception]


class DataPlane:
    """Serves peers' control requests and relays job streams; sends this node's requests.

    Parameters
    ----------
    config : NodeConfig
        Host, port and timeouts.
    identity : TlsIdentity
        This node's key and certificate.
    storage : Storage
        Pinned peers and jobs (to decide which sessions to accept).
    runner : Runner
        Where job streams are relayed to (each job's worker socket).
    background : Background
        Where the storage reads of a job session's checks run (off the event loop).
    handle : callable
        ``await handle(peer, request) -> reply`` for control requests from pinned peers
        (the node's :class:`~rainbridge.node.router.MessageRouter`).
    metrics : NodeMetrics, optional
        Where the bytes of control exchanges are counted per peer (a job's bytes are
        counted by its worker, which reports them when it exits).

    The pinned peers are read from storage at construction and at each :meth:`reload` (a
    peer pinned, revoked or re-keyed), never per handshake or request: a slow database does
    not slow the data plane.
    """

    def __init__(
        self,
        config: NodeConfig,
        identity: TlsIdentity,
        storage: Storage,
        runner: Runner,
        background: Background,
        handle: ControlHandler,
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self.identity = identity
        self.storage = storage
        self.runner = runner
        self.background = background
        self.handle = handle
        self.port = config.data_port
        self._peers: dict[str, PeerRow] = {p.name: p for p in storage.peers()}
        self.listener = TlsListener(
            identity,
            self.pinned,
            config.name,
            self._on_channel,
            accept=self._accept,
            timeout=config.timeout,
        )

    async def start(self) -> int:
        self.port = await self.listener.start(self.config.data_host, self.config.data_port)
        return self.port

    async def close(self) -> None:
        await self.listener.close()

    def pinned(self) -> dict[str, Peer]:
        return {p.name: Peer(p.name, p.fingerprint, p.cert_pem) for p in self._peers.values()}

    def reload(self) -> None:
        """Trust newly pinned peers' certificates from the next handshake on."""
        self._peers = {p.name: p for p in self.storage.peers()}
        self.listener.reload()

    def set_identity(self, identity: TlsIdentity) -> None:
        """Present ``identity`` from the next handshake on (a key rotation)."""
        self.identity = identity
        self.listener.set_identity(identity)

    # -- requests to peers -----------------------------------------------------------------

    async def request(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one control request to ``peer`` and return its reply.

        Raises
        ------
        NotFoundError
            ``peer`` is not pinned here.
        ChannelError
            The peer is unreachable, refused our certificate, or answered nonsense.
        """
        row = self._peers.get(peer)
        if row is None:  # pinned since the last reload (straight in storage): look again
            self.reload()
            row = self._peers.get(peer)
        if row is None:
            raise NotFoundError(f"no peer named {peer!r} (add it with `rainbridge peer add`)")
        timeout = self.config.control_timeout
        ch = await connect(
            row.host,
            row.port,
            self.identity,
            Peer(row.name, row.fingerprint, row.cert_pem),
            session_id=control_session(),
            local=self.config.name,
            timeout=timeout,
            connect_timeout=timeout,
            max_message=MAX_CONTROL_BYTES,
        )
        try:
            await ch.send_json("control", msg)
            reply = await ch.recv_json("reply")
        finally:
            await ch.close()
            self.metrics.traffic(row.name, "control", ch.bytes_sent, ch.bytes_received)
        if not isinstance(reply, dict):
            raise ChannelError(f"peer {peer!r} sent a malformed reply")
        return reply

    async def call(
        self, peer: str, msg: dict[str, Any], refusals: Mapping[str, Refusal] | None = None
    ) -> dict[str, Any]:
        """:meth:`request` for a service that answers ``{"ok": true, ...}`` or
        ``{"ok": false, "code", "reason"}``: a refusal becomes the typed error its code names.

        ``refusals`` maps a service's own refusal kinds (the reply's ``refusal``) to the
        error each becomes: ``make(peer, reason, reply)``.

        Raises
        ------
        RateLimitError, AuthorizationError, DataError
            The peer refused (rate limit; grant, membership or unknown name; anything else).
        """
        reply = await self.request(peer, msg)
        if reply.get("ok") is not True:
            reason = str(reply.get("reason", "refused"))[:300]
            make = (refusals or {}).get(str(reply.get("refusal")))
            if make is not None:
                raise make(peer, reason, reply)
            if reply.get("code") == "rate_limited":
                raise RateLimitError(f"{peer!r}: {reason}")
            if reply.get("code") in ("unauthorized", "not_found"):
                raise AuthorizationError(f"{peer!r} refused: {reason}")
            raise DataError(f"{peer!r} refused: {reason}")
        return reply

    async def ask(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """:meth:`request` that never raises: a failure to reach ``peer`` is the reply
        ``{"ok": false, "reason": ...}`` (countersignatures, reports, key hand-overs)."""
        try:
            return await self.request(peer, msg)
        except RainbridgeError as exc:
            return {"ok": False, "reason": str(exc)}

    async def tell(self, peer: str, msg: dict[str, Any]) -> None:
        """Send a request whose reply does not matter (an abort); failures are only logged."""
        try:
            await self.request(peer, msg)
        except RainbridgeError as exc:
            log.info("could not tell %s about %s: %s", peer, msg.get("type"), exc)

    # -- incoming --------------------------------------------------------------------------

    async def _accept(self, peer: str, session: str) -> str | None:
        """Decide on a pinned peer's hello: None to accept, else the reason to refuse."""
        if is_control(session):
            return None
        job_id = job_of(session)
        if job_id is None:
            return "unknown kind of session"
        row = await self.background.db(self.storage.find_job, job_id)
        if row is None:
            return "no such job here"
        if peer not in row.parties or session != pair_session(job_id, peer, self.config.name):
            return "this peer takes no part in that job"
        if row.status not in ACTIVE:
            return f"{NOT_RUNNING} (it is {row.status})"
        return None

    async def _on_channel(self, ch: TlsChannel) -> None:
        if is_control(ch.session_id):
            await self._serve_control(ch)
        else:
            await self._relay(ch)

    async def _serve_control(self, ch: TlsChannel) -> None:
        ch.max_message = MAX_CONTROL_BYTES
        try:
            msg = await ch.recv_json("control", timeout=self.config.control_timeout)
            reply = await self.handle(ch.peer, msg)
            await ch.send_json("reply", reply)
        except RainbridgeError as exc:
            log.warning("control exchange with %s failed: %s", ch.peer, exc)
        except Exception:
            # A bug must not take the listener down; the peer sees a closed session.
            log.exception("control request from %s", ch.peer)
        finally:
            await ch.close()
            self.metrics.traffic(ch.peer, "control", ch.bytes_sent, ch.bytes_received)

    async def _relay(self, ch: TlsChannel) -> None:
        """Pipe an authenticated job stream to this node's worker for that job."""
        job_id = job_of(ch.session_id)
        assert job_id is not None  # _accept let only job sessions through
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        sock = str(self.runner.socket_path(job_id))
        while True:
            try:
                r, w = await asyncio.open_unix_connection(sock)
                break
            except OSError:
                # The worker may still be starting; give up once the job is over or late.
                row = await self.background.db(self.storage.find_job, job_id)
                if loop.time() > deadline or row is None or row.status not in ACTIVE:
                    await ch.abort("the job's worker is not running here")
                    return
                await asyncio.sleep(0.05)
        w.write(json.dumps({"peer": ch.peer, "session": ch.session_id}).encode() + b"\n")
        await w.drain()
        await asyncio.gather(_pump(ch.reader, w), _pump(r, ch.writer))


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_RELAY_CHUNK):
            dst.write(data)
            await dst.drain()  # back pressure: never buffer more than the peer reads
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.close()
