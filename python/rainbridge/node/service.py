"""The node's logic: peers, datasets, job proposals and decisions, workers, the data plane.

One data-plane port serves every peer over mutual TLS. A connection carries either a control
exchange (session ``control:…``: propose, start, abort) or one job's protocol messages
between two parties (session ``job:<id>/<a>-<b>``). Jobs run in worker processes; the
worker of the party whose name sorts first dials its peer's data plane itself, and the
accepting node relays that authenticated stream to its own worker over a Unix socket, so the
frame checks happen end to end while each node keeps a single listening port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from rainbridge.crypto.certs import TlsIdentity, fingerprint_pem, normalise_fingerprint
from rainbridge.data import inspect_dataset
from rainbridge.errors import (
    AuthenticationError,
    AuthorizationError,
    ChannelError,
    ConfigError,
    DataError,
    JobRefusedError,
    RainbridgeError,
)
from rainbridge.jobs.spec import JobSpec, parse_job
from rainbridge.net.tls import Peer, TlsChannel, TlsListener, connect, fetch_certificate
from rainbridge.node.config import NodeConfig
from rainbridge.node.storage import JobRow, PeerRow, Storage
from rainbridge.node.worker import pair_session

log = logging.getLogger("rainbridge.node")

ACTIVE = ("starting", "running")
FINAL = ("succeeded", "failed", "refused", "aborted", "cancelled")


def parse_url(url: str) -> tuple[str, int]:
    """``host:port`` (optionally ``tls://host:port``) of a peer's data plane."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"peer URL {url!r}: expected HOST:PORT of the peer's data plane")
    return host.strip("[]"), int(port)


class NodeService:
    """Everything a node does, independent of how it is reached (REST API, tests)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.name
        self.storage = Storage(config.database_url)
        self.identity = TlsIdentity.load(config.dir)
        self.listener = TlsListener(
            self.identity,
            self.pinned,
            self.name,
            self._on_channel,
            accept=self._accept,
            timeout=config.timeout,
        )
        self.workers: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.data_port = config.data_port

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_port = await self.listener.start(self.config.data_host, self.config.data_port)
        for d in ("run", "jobs", "outputs"):
            (self.config.path / d).mkdir(exist_ok=True)
        # Jobs that were running when the node last stopped cannot resume.
        for row in self.storage.jobs(limit=1000):
            if row.status in ACTIVE or row.status in ("proposed", "accepted"):
                self.storage.update_job(row.id, status="failed", error="the node restarted")
        log.info("node %s: data plane on %s:%d", self.name, self.config.data_host, self.data_port)

    async def stop(self) -> None:
        for job_id in list(self.workers):
            self._kill(job_id)
        await self.listener.close()
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def info(self) -> dict[str, Any]:
        from rainbridge import __version__

        return {
            "name": self.name,
            "fingerprint": self.identity.fingerprint,
            "data_plane": f"{self.config.data_host}:{self.data_port}",
            "version": __version__,
        }

    # -- peers -----------------------------------------------------------------------------

    def pinned(self) -> dict[str, Peer]:
        return {p.name: Peer(p.name, p.fingerprint, p.cert_pem) for p in self.storage.peers()}

    async def add_peer(
        self, name: str, url: str, fingerprint: str, cert_pem: str | None = None
    ) -> dict[str, Any]:
        from rainbridge.node.config import check_name

        check_name(name)
        if name == self.name:
            raise ConfigError(f"{name!r} is this node's own name")
        host, port = parse_url(url)
        fp = normalise_fingerprint(fingerprint)
        if cert_pem is None:
            cert_pem = await fetch_certificate(host, port)
        if fingerprint_pem(cert_pem) != fp:
            raise AuthenticationError(
                f"the certificate presented at {host}:{port} does not have the fingerprint "
                f"given for {name!r}; check both with the peer's operator"
            )
        row = PeerRow(name=name, host=host, port=port, fingerprint=fp, cert_pem=cert_pem)
        row = self.storage.put_peer(row)
        self.listener.reload()
        self.storage.log("peer_added", {"peer": name, "fingerprint": fp})
        return row.to_dict()

    # -- datasets --------------------------------------------------------------------------

    def add_dataset(self, name: str, path: str, id_column: str | None) -> dict[str, Any]:
        from rainbridge.node.config import check_name

        check_name(name)
        ref = inspect_dataset(name, path, id_column)
        row = self.storage.put_dataset(ref)
        self.storage.log("dataset_added", {"dataset": name, "rows": ref.num_rows})
        return row.to_dict()

    # -- jobs: checks ----------------------------------------------------------------------

    def check_job(self, job: JobSpec, initiator: str) -> None:
        """Refuse a job this node must not run, saying why (no partial acceptance)."""
        if self.name not in job.parties:
            raise AuthorizationError(f"{self.name!r} is not a party of job {job.name!r}")
        known = {p.name for p in self.storage.peers()}
        for p in job.parties:
            if p != self.name and p not in known:
                raise AuthorizationError(f"{p!r} is not a known peer of {self.name!r}")
        if initiator != self.name and initiator not in job.parties:
            raise AuthorizationError(f"initiator {initiator!r} is not a party of the job")
        datasets = self.storage.dataset_refs()
        for c in job.components:
            ref = c.inputs.get(self.name)
            if ref is None or ref.dataset is None:
                continue
            ds = datasets.get(ref.dataset)
            if ds is None:
                raise AuthorizationError(
                    f"dataset {ref.dataset!r} is not registered at {self.name!r} "
                    f"(component {c.id!r})"
                )
            wanted = [ref.id] if ref.id else []
            for out in c.outputs.values():
                wanted += out.columns.get(self.name, [])
            missing = [col for col in wanted if col not in ds.columns]
            if missing:
                raise DataError(
                    f"dataset {ds.name!r} ({ds.path}) has no column "
                    f"{', '.join(map(repr, missing))} (component {c.id!r})"
                )

    # -- jobs: initiator -------------------------------------------------------------------

    async def submit(self, spec: dict[str, Any] | str) -> dict[str, Any]:
        text = spec if isinstance(spec, str) else json.dumps(spec)
        job = parse_job(text, source="job")
        self.check_job(job, self.name)
        job_id = uuid.uuid4().hex[:16]
        row = JobRow(
            id=job_id,
            name=job.name,
            spec=job.to_dict(),
            digest=job.digest(),
            initiator=self.name,
            status="proposed",
            progress={},
            decisions={self.name: {"accept": True}},
        )
        self.storage.put_job(row)
        self.storage.log("job_proposed", {"digest": row.digest, "parties": job.parties}, job_id)
        others = [p for p in job.parties if p != self.name]
        replies = await asyncio.gather(
            *(
                self._control(
                    p,
                    {
                        "type": "propose",
                        "job_id": job_id,
                        "spec": job.to_dict(),
                        "digest": row.digest,
                    },
                )
                for p in others
            ),
            return_exceptions=True,
        )
        decisions: dict[str, Any] = {self.name: {"accept": True}}
        for p, r in zip(others, replies, strict=True):
            if isinstance(r, BaseException):
                decisions[p] = {"accept": False, "reason": f"unreachable: {r}"}
            else:
                decisions[p] = {"accept": bool(r.get("accept")), "reason": r.get("reason")}
        refused = {p: d["reason"] for p, d in decisions.items() if not d["accept"]}
        if refused:
            why = "; ".join(f"{p}: {r}" for p, r in refused.items())
            self.storage.update_job(job_id, status="refused", decisions=decisions, error=why)
            self.storage.log("job_refused", {"by": refused}, job_id)
            for p in others:
                if decisions[p]["accept"]:
                    self._spawn(
                        self._control_quiet(
                            p,
                            {
                                "type": "abort",
                                "job_id": job_id,
                                "reason": "refused by another party",
                            },
                        )
                    )
            raise JobRefusedError(f"job {job.name!r} was refused: {why}")
        self.storage.update_job(job_id, status="starting", decisions=decisions)
        self.storage.log("job_accepted", {"parties": job.parties}, job_id)
        started = await asyncio.gather(
            *(self._control(p, {"type": "start", "job_id": job_id}) for p in others),
            return_exceptions=True,
        )
        failed = [
            f"{p}: {r if isinstance(r, BaseException) else r.get('reason')}"
            for p, r in zip(others, started, strict=True)
            if isinstance(r, BaseException) or not r.get("ok")
        ]
        if failed:
            why = "; ".join(failed)
            self.storage.update_job(job_id, status="failed", error=f"could not start: {why}")
            for p in others:
                self._spawn(
                    self._control_quiet(
                        p, {"type": "abort", "job_id": job_id, "reason": "start failed"}
                    )
                )
            raise JobRefusedError(f"job {job.name!r} could not start: {why}")
        await self._start_worker(job_id)
        return self.storage.job(job_id).to_dict()

    async def cancel(self, job_id: str) -> dict[str, Any]:
        row = self.storage.job(job_id)
        if row.status in FINAL:
            return row.to_dict()
        self._kill(job_id)
        self.storage.update_job(job_id, status="cancelled", error="cancelled by the user")
        self.storage.log("job_cancelled", {}, job_id)
        for p in row.spec.get("parties", []):
            if p != self.name:
                self._spawn(
                    self._control_quiet(
                        p,
                        {
                            "type": "abort",
                            "job_id": job_id,
                            "reason": f"cancelled at {self.name!r}",
                        },
                    )
                )
        return self.storage.job(job_id).to_dict()

    async def _control(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        row = self.storage.peer(peer)
        ch = await connect(
            row.host,
            row.port,
            self.identity,
            Peer(row.name, row.fingerprint, row.cert_pem),
            session_id=f"control:{uuid.uuid4().hex}",
            local=self.name,
            timeout=self.config.timeout,
        )
        try:
            await ch.send_json("control", msg)
            reply = await ch.recv_json("reply")
        finally:
            await ch.close()
        if not isinstance(reply, dict):
            raise ChannelError(f"peer {peer!r} sent a malformed reply")
        return reply

    async def _control_quiet(self, peer: str, msg: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self._control(peer, msg)

    # -- data plane: incoming --------------------------------------------------------------

    def _accept(self, peer: str, session: str) -> str | None:
        if session.startswith("control:"):
            return None
        if not session.startswith("job:"):
            return "unknown kind of session"
        job_id = session[4:].split("/", 1)[0]
        row = self.storage.find_job(job_id)
        if row is None:
            return "no such job here"
        parties = row.spec.get("parties", [])
        if peer not in parties or session != pair_session(job_id, peer, self.name):
            return "this peer takes no part in that job"
        if row.status not in ACTIVE:
            return f"job not running here (it is {row.status})"
        return None

    async def _on_channel(self, ch: TlsChannel) -> None:
        if ch.session_id.startswith("control:"):
            await self._serve_control(ch)
        else:
            await self._relay(ch)

    async def _serve_control(self, ch: TlsChannel) -> None:
        try:
            msg = await ch.recv_json("control", timeout=10)
            reply = await self._handle_control(ch.peer, msg)
            await ch.send_json("reply", reply)
        except RainbridgeError as exc:
            log.warning("control exchange with %s failed: %s", ch.peer, exc)
        finally:
            await ch.close()

    async def _handle_control(self, peer: str, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, dict):
            return {"ok": False, "reason": "malformed request"}
        kind = msg.get("type")
        job_id = str(msg.get("job_id", ""))
        if not job_id.isalnum() or len(job_id) > 64:
            return {"ok": False, "accept": False, "reason": "invalid job id"}
        if kind == "propose":
            return self._on_propose(peer, job_id, msg)
        row = self.storage.find_job(job_id)
        if row is None or peer not in row.spec.get("parties", []):
            return {"ok": False, "reason": "no such job here"}
        if kind == "start":
            if row.initiator != peer:
                return {"ok": False, "reason": "only the initiator starts a job"}
            if row.status != "accepted":
                return {"ok": False, "reason": f"job is {row.status}, not accepted"}
            self.storage.update_job(job_id, status="starting")
            await self._start_worker(job_id)
            return {"ok": True}
        if kind == "abort":
            if row.status not in FINAL:
                self._kill(job_id)
                reason = str(msg.get("reason", ""))[:300]
                self.storage.update_job(job_id, status="aborted", error=f"{peer}: {reason}")
                self.storage.log("job_aborted", {"by": peer, "reason": reason}, job_id)
            return {"ok": True}
        return {"ok": False, "reason": f"unknown request {kind!r}"}

    def _on_propose(self, peer: str, job_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        if self.storage.find_job(job_id) is not None:
            return {"accept": False, "reason": "job id already used"}
        try:
            job = parse_job(json.dumps(msg.get("spec")), source="proposal")
            if job.digest() != msg.get("digest"):
                raise ConfigError("the job's digest does not match its content")
            self.check_job(job, peer)
        except RainbridgeError as exc:
            reason = str(exc)
            self.storage.log("job_refused", {"from": peer, "reason": reason}, job_id)
            return {"accept": False, "reason": reason}
        self.storage.put_job(
            JobRow(
                id=job_id,
                name=job.name,
                spec=job.to_dict(),
                digest=job.digest(),
                initiator=peer,
                status="accepted",
                progress={},
                decisions={},
            )
        )
        self.storage.log("job_accepted", {"from": peer, "digest": job.digest()}, job_id)
        return {"accept": True}

    async def _relay(self, ch: TlsChannel) -> None:
        """Pipe an authenticated job stream to this node's worker for that job."""
        job_id = ch.session_id[4:].split("/", 1)[0]
        sock = self._socket_path(job_id)
        deadline = asyncio.get_running_loop().time() + self.config.timeout
        while True:
            try:
                r, w = await asyncio.open_unix_connection(str(sock))
                break
            except OSError:
                row = self.storage.find_job(job_id)
                if (
                    asyncio.get_running_loop().time() > deadline
                    or row is None
                    or (row.status not in ACTIVE)
                ):
                    await ch.abort("the job's worker is not running")
                    return
                await asyncio.sleep(0.05)
        w.write(json.dumps({"peer": ch.peer, "session": ch.session_id}).encode() + b"\n")
        await w.drain()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(ch.reader, w), pump(r, ch.writer))

    # -- workers ---------------------------------------------------------------------------

    def _socket_path(self, job_id: str) -> Path:
        return self.config.path / "run" / f"{job_id}.sock"

    async def _start_worker(self, job_id: str) -> None:
        row = self.storage.job(job_id)
        job = JobSpec.model_validate(row.spec)
        peers = {p.name: p for p in self.storage.peers()}
        job_dir = self.config.path / "jobs" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        context = {
            "job_id": job_id,
            "party": self.name,
            "node_dir": str(self.config.path),
            "spec": row.spec,
            "timeout": self.config.timeout,
            "socket": str(self._socket_path(job_id)),
            "out_dir": str(self.config.path / "outputs" / job_id),
            "result": str(job_dir / "result.json"),
            "peers": {
                p: {
                    "host": peers[p].host,
                    "port": peers[p].port,
                    "fingerprint": peers[p].fingerprint,
                    "cert_pem": peers[p].cert_pem,
                }
                for p in job.parties
                if p != self.name
            },
            "datasets": {
                name: ref.to_dict()
                for name, ref in self.storage.dataset_refs().items()
                if name in job.datasets_of(self.name)
            },
        }
        ctx_path = job_dir / "context.json"
        ctx_path.write_text(json.dumps(context))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rainbridge.node.worker",
            str(ctx_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.workers[job_id] = proc
        self.storage.update_job(job_id, status="running")
        self.storage.log("job_started", {"pid": proc.pid}, job_id)
        self._spawn(self._watch(job_id, proc, job_dir / "result.json"))

    async def _watch(self, job_id: str, proc: asyncio.subprocess.Process, result: Path) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        progress: dict[str, float] = {}
        while line := await proc.stdout.readline():
            try:
                msg = json.loads(line)
                progress[str(msg["component"])] = float(msg["fraction"])
                self.storage.update_job(job_id, progress=dict(progress))
            except (ValueError, KeyError, TypeError):
                continue
        stderr = (await proc.stderr.read()).decode(errors="replace")
        code = await proc.wait()
        self.workers.pop(job_id, None)
        with contextlib.suppress(OSError):
            self._socket_path(job_id).unlink()
        row = self.storage.find_job(job_id)
        if row is None or row.status in ("cancelled", "aborted"):
            return
        outcome: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            outcome = json.loads(result.read_text())
        if code == 0 and outcome.get("ok"):
            self.storage.update_job(
                job_id, status="succeeded", result=outcome["result"], progress=progress
            )
            self.storage.log("job_succeeded", {"outputs": _outputs(outcome["result"])}, job_id)
        else:
            err = outcome.get("error") or {
                "code": "worker",
                "message": f"worker exited with {code}: {stderr.strip().splitlines()[-1:]}",
            }
            self.storage.update_job(job_id, status="failed", error=err["message"])
            self.storage.log("job_failed", err, job_id)

    def _kill(self, job_id: str) -> None:
        proc = self.workers.pop(job_id, None)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)


def _outputs(result: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{cid}.{name}": {"path": o.get("path"), "rows": o.get("rows")}
        for cid, comp in result.get("components", {}).items()
        for name, o in comp.get("outputs", {}).items()
    }
