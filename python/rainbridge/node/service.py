"""What a node does, independent of how it is reached: peers, datasets and the life of a job.

A job's life at the node that submits it (the initiator)::

    proposed ──(a party refuses or is unreachable)──▶ refused
        │ every party accepts
        ▼
    starting ─▶ running ─▶ succeeded | failed | cancelled | aborted

and at every other party: ``accepted`` (or ``refused``) on the proposal, then ``starting``
when the initiator says start, and the same ends. A party that fails tells the others why,
in its worker's abort frames and in a control ``abort``, so they stop at once and record the
reason. The REST API (:mod:`rainbridge.node.api`) and the tests drive this class.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from rainbridge.crypto.certs import TlsIdentity, fingerprint_pem, normalise_fingerprint
from rainbridge.data import inspect_dataset
from rainbridge.errors import (
    AuthenticationError,
    ConfigError,
    JobRefusedError,
    RainbridgeError,
)
from rainbridge.jobs.spec import JobSpec, parse_job
from rainbridge.net.tls import fetch_certificate
from rainbridge.node.config import NodeConfig, check_name, private_dir
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.proposals import check_job
from rainbridge.node.runner import FINAL, Runner
from rainbridge.node.sessions import new_job_id, valid_job_id
from rainbridge.node.storage import JobRow, PeerRow, Storage
from rainbridge.node.worker import public_reason

log = logging.getLogger("rainbridge.node")

#: longest reason a peer may put into this node's records
_MAX_REASON = 500


def parse_url(url: str) -> tuple[str, int]:
    """``host:port`` (optionally ``tls://host:port``) of a peer's data plane."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"peer URL {url!r}: expected HOST:PORT of the peer's data plane")
    return host.strip("[]"), int(port)


def _reason(exc: BaseException) -> str:
    """A failure to reach a peer, as a decision's reason."""
    if isinstance(exc, AuthenticationError):
        return str(exc)  # already says which side refused which certificate
    if isinstance(exc, RainbridgeError):
        return f"unreachable: {exc}"
    return f"unreachable: {type(exc).__name__}"


class NodeService:
    """One party's node: its state, its data plane and its job workers.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; its directory holds the key, certificate and database.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.name
        self.storage = Storage(config.database_url)
        self.identity = TlsIdentity.load(config.dir)
        self.runner = Runner(config, self.storage, self._on_worker_failure)
        self.dataplane = DataPlane(config, self.identity, self.storage, self.runner, self._handle)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the data plane; fail jobs that were under way when the node last stopped."""
        for d in ("jobs", "outputs"):
            private_dir(self.config.path / d)
        for row in self.storage.jobs(limit=10_000):
            if row.status not in FINAL:
                self.storage.update_job(row.id, status="failed", error="the node restarted")
        port = await self.dataplane.start()
        log.info("node %s: data plane on %s:%d", self.name, self.config.data_host, port)

    async def stop(self, reason: str | None = None) -> None:
        """Stop every job (telling the other parties why), then the data plane."""
        reason = reason or "node stopped"
        running = self.runner.running()
        for job_id in running:
            self._end(job_id, "failed", reason)
        await asyncio.gather(
            *(self._tell_parties(job_id, reason) for job_id in running),
            return_exceptions=True,
        )
        await self.runner.stop_all()
        await self.dataplane.close()
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def info(self) -> dict[str, Any]:
        from rainbridge import __version__

        return {
            "name": self.name,
            "fingerprint": self.identity.fingerprint,
            "data_plane": f"{self.config.data_host}:{self.dataplane.port}",
            "version": __version__,
        }

    # -- peers -----------------------------------------------------------------------------

    async def add_peer(
        self, name: str, url: str, fingerprint: str, cert_pem: str | None = None
    ) -> dict[str, Any]:
        """Pin a peer: its certificate must have ``fingerprint`` (fetched from ``url`` if not
        given).

        Raises
        ------
        ConfigError
            Invalid name, URL or fingerprint, or this node's own name.
        AuthenticationError
            The certificate does not have the given fingerprint.
        ChannelError
            Nothing answers at ``url`` (and no certificate was given).
        """
        check_name(name)
        if name == self.name:
            raise ConfigError(f"{name!r} is this node's own name")
        host, port = parse_url(url)
        fp = normalise_fingerprint(fingerprint)
        if cert_pem is None:
            cert_pem = await fetch_certificate(host, port)
        try:
            actual = fingerprint_pem(cert_pem)
        except (ValueError, TypeError):
            raise ConfigError(
                f"the certificate given for {name!r} is not a PEM certificate"
            ) from None
        if actual != fp:
            raise AuthenticationError(
                f"the certificate of {name!r} at {host}:{port} does not have the fingerprint "
                f"given; check both with the peer's operator"
            )
        row = self.storage.put_peer(
            PeerRow(name=name, host=host, port=port, fingerprint=fp, cert_pem=cert_pem)
        )
        self.dataplane.reload()
        self.storage.log("peer_added", {"peer": name, "fingerprint": fp})
        return row.to_dict()

    # -- datasets --------------------------------------------------------------------------

    def add_dataset(self, name: str, path: str, id_column: str | None) -> dict[str, Any]:
        """Register a CSV or Parquet file in place: its schema and row count are recorded.

        Raises
        ------
        DataError
            The file is missing or unreadable, or lacks ``id_column`` (both are named).
        """
        check_name(name)
        ref = inspect_dataset(name, path, id_column)
        row = self.storage.put_dataset(ref)
        self.storage.log("dataset_added", {"dataset": name, "rows": ref.num_rows})
        return row.to_dict()

    # -- jobs: this node's checks ----------------------------------------------------------

    def check_job(self, job: JobSpec, initiator: str) -> None:
        """Refuse a job this node must not run, saying why (see :mod:`.proposals`)."""
        check_job(
            job,
            node=self.name,
            initiator=initiator,
            peers={p.name for p in self.storage.peers()},
            datasets=self.storage.dataset_refs(),
        )

    # -- jobs: as initiator ----------------------------------------------------------------

    async def submit(self, spec: dict[str, Any] | str) -> dict[str, Any]:
        """Validate a job, propose it to every party and start it once all accept.

        Raises
        ------
        JobSpecError
            The job is malformed (the message names the field).
        AuthorizationError, DataError
            This node refuses it (see :func:`~rainbridge.node.proposals.check_job`).
        JobRefusedError
            Another party refused it or could not be reached; every reason is given.
        """
        text = spec if isinstance(spec, str) else json.dumps(spec)
        job = parse_job(text, source="job")
        self.check_job(job, self.name)
        job_id = new_job_id()
        digest = job.digest()
        self.storage.put_job(
            JobRow(
                id=job_id,
                name=job.name,
                spec=job.to_dict(),
                digest=digest,
                initiator=self.name,
                status="proposed",
                progress={},
            )
        )
        self.storage.decide(job_id, self.name, True)
        self.storage.log("job_proposed", {"digest": digest, "parties": job.parties}, job_id)
        others = [p for p in job.parties if p != self.name]
        proposal = {"type": "propose", "job_id": job_id, "spec": job.to_dict(), "digest": digest}
        replies = await asyncio.gather(
            *(self.dataplane.request(p, proposal) for p in others), return_exceptions=True
        )
        refused: dict[str, str] = {}
        for p, r in zip(others, replies, strict=True):
            if isinstance(r, BaseException):
                accept, said = False, _reason(r)
            else:
                accept = r.get("accept") is True
                said = "" if accept else str(r.get("reason") or "no reason given")[:_MAX_REASON]
            self.storage.decide(job_id, p, accept, said or None)
            if not accept:
                refused[p] = said
        if refused:
            why = "; ".join(f"{p}: {r}" for p, r in refused.items())
            self._end(job_id, "refused", why)
            self.storage.log("job_refused", {"by": refused}, job_id)
            accepted = [p for p in others if p not in refused]
            self._spawn(self._tell_parties(job_id, f"refused by {', '.join(refused)}", accepted))
            raise JobRefusedError(f"job {job.name!r} was refused: {why}")
        self.storage.update_job(job_id, status="starting")
        self.storage.log("job_accepted", {"parties": job.parties}, job_id)
        started = await asyncio.gather(
            *(self.dataplane.request(p, {"type": "start", "job_id": job_id}) for p in others),
            return_exceptions=True,
        )
        failed = [
            f"{p}: {_reason(r) if isinstance(r, BaseException) else r.get('reason')}"
            for p, r in zip(others, started, strict=True)
            if isinstance(r, BaseException) or r.get("ok") is not True
        ]
        if failed:
            why = f"could not start: {'; '.join(failed)}"
            self._end(job_id, "failed", why)
            self._spawn(self._tell_parties(job_id, "the job could not start everywhere"))
            raise JobRefusedError(f"job {job.name!r} {why}")
        await self._start_worker(job_id)
        return self.storage.job_dict(job_id)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a job here and tell the other parties (a finished job is left as it is)."""
        row = self.storage.job(job_id)
        if row.status not in FINAL:
            self._end(job_id, "cancelled", "cancelled by the user")
            await asyncio.gather(
                self.runner.stop(job_id),
                self._tell_parties(job_id, "cancelled by the user"),
            )
        return self.storage.job_dict(job_id)

    # -- the other parties -----------------------------------------------------------------

    def _end(self, job_id: str, status: str, error: str) -> None:
        self.storage.update_job(job_id, status=status, error=error)
        self.storage.log(f"job_{status}", {"reason": error}, job_id)

    async def _tell_parties(
        self, job_id: str, reason: str, parties: Iterable[str] | None = None
    ) -> None:
        """Abort ``job_id`` at the other parties; each records "<this node>: <reason>"."""
        row = self.storage.find_job(job_id)
        if row is None:
            return
        targets = [p for p in (row.parties if parties is None else parties) if p != self.name]
        msg = {"type": "abort", "job_id": job_id, "reason": reason[:_MAX_REASON]}
        await asyncio.gather(*(self.dataplane.tell(p, msg) for p in targets))

    async def _on_worker_failure(self, job_id: str, code: str, message: str) -> None:
        await self._tell_parties(job_id, public_reason(code, message))

    # -- requests from peers ---------------------------------------------------------------

    async def _handle(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Answer a pinned peer's control request (the data plane authenticated ``peer``)."""
        kind = msg.get("type")
        job_id = str(msg.get("job_id", ""))
        if not valid_job_id(job_id):
            return {"ok": False, "accept": False, "reason": "invalid job id"}
        if kind == "propose":
            return self._on_propose(peer, job_id, msg)
        row = self.storage.find_job(job_id)
        if row is None or peer not in row.parties:
            return {"ok": False, "reason": "no such job here"}
        if kind == "start":
            return await self._on_start(peer, row)
        if kind == "abort":
            await self._on_abort(peer, row, str(msg.get("reason", ""))[:_MAX_REASON])
            return {"ok": True}
        return {"ok": False, "reason": f"unknown request {str(kind)[:40]!r}"}

    def _on_propose(self, peer: str, job_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        if self.storage.find_job(job_id) is not None:
            return {"accept": False, "reason": "job id already used"}
        try:
            job = parse_job(json.dumps(msg.get("spec")), source="proposal")
        except RainbridgeError as exc:
            self.storage.log("proposal_refused", {"from": peer, "reason": str(exc)}, job_id)
            return {"accept": False, "reason": str(exc)}
        reason: str | None = None
        try:
            if job.digest() != msg.get("digest"):
                raise ConfigError("the job's digest does not match its content")
            self.check_job(job, peer)
        except RainbridgeError as exc:
            reason = str(exc)
        self.storage.put_job(
            JobRow(
                id=job_id,
                name=job.name,
                spec=job.to_dict(),
                digest=job.digest(),
                initiator=peer,
                status="accepted" if reason is None else "refused",
                progress={},
                error=reason,
            )
        )
        self.storage.decide(job_id, self.name, reason is None, reason)
        if reason is not None:
            self.storage.log("job_refused", {"from": peer, "reason": reason}, job_id)
            log.info("refused job %s from %s: %s", job_id, peer, reason)
            return {"accept": False, "reason": reason}
        self.storage.log("job_accepted", {"from": peer, "digest": job.digest()}, job_id)
        return {"accept": True}

    async def _on_start(self, peer: str, row: JobRow) -> dict[str, Any]:
        if row.initiator != peer:
            return {"ok": False, "reason": "only the initiator starts a job"}
        if row.status != "accepted":
            return {"ok": False, "reason": f"job is {row.status}, not accepted"}
        self.storage.update_job(row.id, status="starting")
        for p in row.parties:
            if p != self.name:
                self.storage.decide(row.id, p, True)  # the initiator vouches all accepted
        try:
            await self._start_worker(row.id)
        except RainbridgeError as exc:
            return {"ok": False, "reason": str(exc)}
        return {"ok": True}

    async def _on_abort(self, peer: str, row: JobRow, reason: str) -> None:
        if row.status in FINAL:
            return
        self._end(row.id, "aborted", f"{peer}: {reason}" if reason else f"aborted by {peer}")
        self._spawn(self.runner.stop(row.id))

    # -- workers ---------------------------------------------------------------------------

    async def _start_worker(self, job_id: str) -> None:
        row = self.storage.job(job_id)
        job = JobSpec.model_validate(row.spec)
        peers = {p.name: p for p in self.storage.peers()}
        datasets = self.storage.dataset_refs()
        context = {
            "party": self.name,
            "spec": row.spec,
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
                name: datasets[name].to_dict()
                for name in job.datasets_of(self.name)
                if name in datasets
            },
        }
        try:
            await self.runner.start(job_id, context)
        except OSError as exc:
            why = f"could not start the job's worker: {exc.strerror or exc}"
            log.exception("job %s", job_id)
            self._end(job_id, "failed", why)
            self._spawn(self._tell_parties(job_id, why))
            raise RainbridgeError(why) from None
