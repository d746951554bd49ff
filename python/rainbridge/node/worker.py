"""A job's worker process: runs this party's roles with channels to every peer.

Started by the node as ``python -m rainbridge.node.worker CONTEXT.json``. For each peer, the
party whose name sorts first dials the peer's data plane over mutual TLS; the other waits for
the stream its node relays to this worker's Unix socket. Progress goes to stdout as JSON
lines; the outcome to the result file. Before it opens any channel the worker checks every
input of its party (:func:`~rainbridge.jobs.execute.check_inputs`: the files may have changed
since the proposal was accepted). On failure, or when its node stops it (SIGTERM), the worker
tells its peers why (an abort frame) so they stop at once instead of waiting for their
timeout, and leaves no output behind: outputs are staged in the job's private folder and
moved to ``outputs/`` only once every party has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rainbridge.compute.engine import ComputeEngine, make_engine
from rainbridge.crypto.certs import TlsIdentity
from rainbridge.data import DatasetRef
from rainbridge.data.sql_source import provide_url
from rainbridge.errors import ChannelError, ChannelTimeoutError, RainbridgeError
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.execute import check_inputs, run_party
from rainbridge.jobs.spec import JobSpec
from rainbridge.net.channel import Channel
from rainbridge.net.stream import StreamChannel
from rainbridge.net.tls import Peer, connect
from rainbridge.node.sessions import NOT_RUNNING, pair_session

#: seconds between two progress lines of one component (the node stores each)
_PROGRESS_INTERVAL = 0.1
#: errors about the session itself, whose message is the peers' business too; any other
#: (a local file, a column, a bug) is told to peers by its code only, so that a failure
#: never hands another institution this node's paths or data details
SESSION_CODES = frozenset(
    {
        "channel",
        "peer_disconnected",
        "timeout",
        "protocol_violation",
        "parameter_mismatch",
        "invalid_element",
        "authentication",
        "cancelled",
    }
)


def public_reason(code: str, message: str) -> str:
    """What the other parties are told when this party's part of a job fails."""
    if code in SESSION_CODES:
        return f"failed: {message}"
    return f"failed ({code} error; the details are in its node's record of the job)"


async def _dial(ctx: dict[str, Any], identity: TlsIdentity, peer: str) -> Channel:
    info = ctx["peers"][peer]
    deadline = time.monotonic() + ctx["timeout"]
    delay = 0.05
    while True:
        try:
            return await connect(
                info["host"],
                info["port"],
                identity,
                Peer(peer, info["fingerprint"], info["cert_pem"]),
                session_id=pair_session(ctx["job_id"], ctx["party"], peer),
                local=ctx["party"],
                timeout=ctx["timeout"],
            )
        except ChannelError as exc:
            # The peer's node may not have started its side yet: retry until the timeout.
            if NOT_RUNNING not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


class Links:
    """This worker's links to its peers, and new ones after a link dropped.

    The party whose name sorts first dials (again); the other takes the next stream its
    node relays for that peer. A relayed stream that arrives while no link to that peer is
    awaited waits in a queue of one, so a redial that comes before this side noticed the
    drop is not lost.
    """

    def __init__(self, ctx: dict[str, Any], identity: TlsIdentity) -> None:
        self.ctx = ctx
        self.identity = identity
        self.me = ctx["party"]
        self.incoming: dict[str, asyncio.Queue[Channel]] = {
            p: asyncio.Queue(maxsize=1) for p in ctx["peers"] if p < self.me
        }
        self.reconnects = 0

    async def reconnect(self, peer: str) -> Channel:
        """A new link to ``peer`` of this job's session (the old one dropped)."""
        self.reconnects += 1
        if peer > self.me:
            return await _dial(self.ctx, self.identity, peer)
        try:
            return await asyncio.wait_for(self.incoming[peer].get(), self.ctx["timeout"])
        except TimeoutError:
            raise ChannelTimeoutError(
                f"peer {peer!r} did not connect again within {self.ctx['timeout']:g} s"
            ) from None


async def open_channels(
    ctx: dict[str, Any],
) -> tuple[dict[str, Channel], asyncio.Server, Links]:
    me = ctx["party"]
    identity = TlsIdentity.load(ctx["node_dir"], ctx.get("key_password"))
    links = Links(ctx, identity)
    incoming = links.incoming

    async def on_relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = json.loads(await asyncio.wait_for(reader.readline(), 10))
            peer = str(head["peer"])
            queue = incoming.get(peer)
            if (
                queue is None
                or queue.full()
                or head["session"] != pair_session(ctx["job_id"], me, peer)
            ):
                writer.close()
                return
        except (ValueError, KeyError, TimeoutError, OSError):
            writer.close()
            return
        queue.put_nowait(
            StreamChannel(
                reader,
                writer,
                session_id=head["session"],
                local=me,
                peer=peer,
                timeout=ctx["timeout"],
            )
        )

    sock = Path(ctx["socket"])
    with contextlib.suppress(OSError):
        sock.unlink()
    server = await asyncio.start_unix_server(on_relay, str(sock))
    channels: dict[str, Channel] = {}
    dials = {p: asyncio.create_task(_dial(ctx, identity, p)) for p in ctx["peers"] if p > me}
    try:
        for p, task in dials.items():
            channels[p] = await task
        for p, queue in incoming.items():
            try:
                channels[p] = await asyncio.wait_for(queue.get(), ctx["timeout"])
            except TimeoutError:
                raise ChannelTimeoutError(
                    f"peer {p!r} did not connect within {ctx['timeout']:g} s"
                ) from None
    except BaseException:
        for t in dials.values():
            t.cancel()
        for ch in channels.values():
            await ch.close()
        server.close()
        raise
    return channels, server, links


_last_progress: dict[str, float] = {}
#: frame bytes sent to and received from each peer, written beside the outcome for the
#: node's per-peer metrics (the dialing side's bytes never pass through the node)
_traffic: dict[str, dict[str, int]] = {}


def _count_traffic(channels: dict[str, Channel]) -> None:
    for peer, ch in channels.items():
        _traffic[peer] = {"sent": ch.bytes_sent, "received": ch.bytes_received}


def _progress(component: str, fraction: float) -> None:
    now = time.monotonic()
    if fraction < 1.0 and now - _last_progress.get(component, 0.0) < _PROGRESS_INTERVAL:
        return
    _last_progress[component] = now
    print(json.dumps({"component": component, "fraction": round(fraction, 4)}), flush=True)


async def run(ctx: dict[str, Any]) -> dict[str, Any]:
    # The node stops a worker with SIGTERM (cancel, a peer's abort, shutdown): turn it into a
    # cancellation so the peers hear why instead of seeing the connection drop.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    job = JobSpec.model_validate(ctx["spec"])
    datasets = {n: DatasetRef.from_dict(d) for n, d in ctx["datasets"].items()}
    models = dict(ctx.get("models") or {})
    # before any channel: nothing has moved yet
    check_inputs(complete_job(job, ctx["party"], datasets, models), ctx["party"], datasets)
    engine = make_engine(ctx.get("compute"))
    await engine.start()  # a cluster that cannot be joined fails the job before any message
    try:
        return await _run_with(ctx, job, datasets, engine)
    finally:
        await engine.close()


async def _run_with(
    ctx: dict[str, Any], job: JobSpec, datasets: dict[str, DatasetRef], engine: ComputeEngine
) -> dict[str, Any]:
    channels, server, links = await open_channels(ctx)
    try:
        result = await run_party(
            job,
            ctx["party"],
            channels,
            datasets,
            Path(ctx["out_dir"]),
            job_id=ctx["job_id"],
            progress=_progress,
            staging_dir=Path(ctx["staging_dir"]) if ctx.get("staging_dir") else None,
            ic_peers={
                name: {**cfg, "node_dir": ctx["node_dir"], "key_password": ctx.get("key_password")}
                for name, cfg in (ctx.get("ic_peers") or {}).items()
            },
            compute=engine,
            reconnect=links.reconnect,
            models=dict(ctx.get("models") or {}),
        )
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            reason = "stopped by its node"
        elif isinstance(exc, RainbridgeError):
            reason = public_reason(exc.code, str(exc))
        else:
            reason = public_reason("internal", "")
        for ch in channels.values():
            if isinstance(ch, StreamChannel):
                with contextlib.suppress(Exception):
                    await ch.abort(reason[:300])
        raise
    finally:
        server.close()
        _count_traffic(channels)
    for ch in channels.values():
        await ch.close()
    _count_traffic(channels)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ctx = json.loads(Path(args[0]).read_text())
    # the node writes the TLS key's password on stdin: it never touches the disk
    password = sys.stdin.buffer.readline().rstrip(b"\n") if not sys.stdin.isatty() else b""
    ctx["key_password"] = password or None
    # then the clear URLs of this job's SQL datasets, kept in memory only
    urls = sys.stdin.buffer.readline() if not sys.stdin.isatty() else b""
    with contextlib.suppress(ValueError):
        for key, url in (json.loads(urls) if urls.strip() else {}).items():
            provide_url(str(key), str(url))
    out = Path(ctx["result"])
    try:
        result = asyncio.run(run(ctx))
    except asyncio.CancelledError:
        stopped = {"code": "cancelled", "message": "stopped by its node"}
        out.write_text(json.dumps({"ok": False, "error": stopped, "traffic": _traffic}))
        return 3
    except RainbridgeError as exc:
        error = {"code": exc.code, "message": str(exc)}
        out.write_text(json.dumps({"ok": False, "error": error, "traffic": _traffic}))
        return 1
    except Exception as exc:  # a bug: report its type, keep the details in the worker's log
        traceback.print_exc()
        error = {"code": "internal", "message": type(exc).__name__}
        out.write_text(json.dumps({"ok": False, "error": error, "traffic": _traffic}))
        return 2
    out.write_text(json.dumps({"ok": True, "result": result, "traffic": _traffic}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
