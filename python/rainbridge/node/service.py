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

Governance: every proposal is checked against this node's grants (:mod:`.grants`); a grant
in ``manual`` approval mode holds the job as ``pending_approval`` until the dataset's owner
approves or declines it here, and the initiator starts the job once every party accepted.
Quotas are consumed when a job starts; revoking a grant stops the jobs running under it.
Every event is appended to the signed ledger (:mod:`.ledger`) with the user or peer behind
it, and when a job ends its parties countersign one job record (:mod:`.records`) and meter
what it used (:mod:`.metering`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from rainbridge.audit.verify_ledger import ROTATION_DOMAIN, ledger_key_of, verify_signature
from rainbridge.crypto.certs import fingerprint_pem, normalise_fingerprint
from rainbridge.errors import (
    AuthenticationError,
    ChannelError,
    ConfigError,
    JobRefusedError,
    RainbridgeError,
)
from rainbridge.jobs.spec import JobSpec, parse_job
from rainbridge.net.tls import fetch_certificate
from rainbridge.node.closing import JobClosing
from rainbridge.node.config import NodeConfig, check_name, private_dir
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.grants import (
    GrantCheck,
    GrantError,
    check_column_policies,
    check_grants,
    check_group_thresholds,
    check_privacy_budgets,
    dp_costs,
    why_not,
)
from rainbridge.node.interop import InteropOps
from rainbridge.node.keys import NodeKeys, load_master_key
from rainbridge.node.ledger import Ledger
from rainbridge.node.mlq import MlqOps
from rainbridge.node.models import ModelOps
from rainbridge.node.owners import DataOwnerOps
from rainbridge.node.pir import PirOps
from rainbridge.node.proposals import check_job
from rainbridge.node.records import MAX_PEER_REASON as _MAX_REASON
from rainbridge.node.runner import ACTIVE, FINAL, Runner
from rainbridge.node.sessions import new_job_id, valid_job_id
from rainbridge.node.storage import (
    CertificateRow,
    DatasetRow,
    GrantRow,
    JobRow,
    PeerRow,
    Storage,
)
from rainbridge.node.users import Users
from rainbridge.node.worker import public_reason

log = logging.getLogger("rainbridge.node")

#: statuses of a job waiting for a data owner's decision
PENDING = "pending_approval"


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


class NodeService(DataOwnerOps, ModelOps, PirOps, MlqOps, InteropOps, JobClosing):
    """One party's node: its state, its data plane and its job workers.

    The data owner's operations are in :mod:`.owners`, the end of a job (metering and the
    countersigned record) in :mod:`.closing`.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; its directory holds the key, certificate and database.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.name
        self.storage = Storage(config.database_url)
        self.keys = NodeKeys.load(config.path, config.crypto_suite, config.master_key_file)
        self.ledger = Ledger(self.storage, self.name, self.keys, config.path)
        self.users = Users(self.storage)
        token_file = config.path / "api.token"
        if token_file.is_file():  # the token `node init` wrote is the first admin's
            self.users.ensure("admin", "admin", token_file.read_text().strip())
        self.runner = Runner(
            config,
            self.storage,
            self._on_worker_failure,
            on_ended=self._on_job_ended,
            key_password=self.keys.identity.key_password,
        )
        self.dataplane = DataPlane(config, self.identity, self.storage, self.runner, self._handle)
        #: called with the new identity after a key rotation (the API's TLS reloads)
        self.identity_listeners: list[Callable[[Any], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finalizing: set[str] = set()
        self._indexes = {}  # online scoring: per model, its features by ID
        self._parts = {}  # per model, this node's part
        self._trees = {}  # per SecureBoost model, its trees parsed once
        self._pir = {}  # PIR services served here: name -> (metadata, sealed table)
        self._pir_limits = {}  # (service, peer) -> its rate limit
        self._replicas = {}  # (peer, service) -> this node's replica of a peer's table
        self._pir_bits = {}  # (peer, service) -> bucket bits (bucket mode)
        self._mlq_limits = {}  # (service, lender) -> its rate limit for counts
        self._mlq_cache = {}  # multi-lender: the multiset and own window, masks in a build

    @property
    def identity(self) -> Any:
        return self.keys.identity

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
        self.ledger.flush()
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
            "fingerprint": self.keys.fingerprint,
            "data_plane": f"{self.config.data_host}:{self.dataplane.port}",
            "crypto_suite": self.keys.suite.name,
            "ledger_key": self.keys.ledger_key.alg,
            "version": __version__,
        }

    # -- peers -----------------------------------------------------------------------------

    async def add_peer(
        self,
        name: str,
        url: str,
        fingerprint: str,
        cert_pem: str | None = None,
        actor: str = "node",
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
        self.storage.keep_certificate(name, fp, cert_pem)
        self.dataplane.reload()
        self.storage.log("peer_added", {"peer": name, "fingerprint": fp}, actor=actor)
        return row.to_dict()

    async def revoke_peer(self, name: str, actor: str = "node") -> dict[str, Any]:
        """Unpin ``name``: its connections are refused from now on and its jobs stopped."""
        row = self.storage.peer(name)
        now = dt.datetime.now(dt.UTC)
        with self.storage.session() as s:
            s.delete(s.get(PeerRow, name))
            for c in s.scalars(select(CertificateRow).where(CertificateRow.owner == name)):
                c.revoked_at = c.revoked_at or now
        self.storage.log(
            "peer_revoked", {"peer": name, "fingerprint": row.fingerprint}, actor=actor
        )
        for job_id in self.runner.running():
            job = self.storage.find_job(job_id)
            if job is not None and name in job.parties:
                await self._stop_job(job_id, f"peer {name} was revoked at {self.name}")
        return {"name": name, "revoked": True}

    # -- jobs: this node's checks ----------------------------------------------------------

    def check_job(self, job: JobSpec, initiator: str) -> GrantCheck:
        """Refuse a job this node must not run, saying why (see :mod:`.proposals` and
        :mod:`.grants`); returns the grants that cover it."""
        rows = self.storage.datasets()
        datasets = {r.name: r.ref() for r in rows}
        check_job(
            job,
            node=self.name,
            initiator=initiator,
            peers={p.name for p in self.storage.peers()} | self.ic_names(),
            datasets=datasets,
        )
        check_group_thresholds(
            job, node=self.name, thresholds={d.name: d.min_group_size for d in rows}
        )
        check_privacy_budgets(
            job, node=self.name, budgets={d.name: (d.dp_budget, d.dp_spent) for d in rows}
        )
        check_column_policies(
            job,
            node=self.name,
            datasets=datasets,
            policies={d.name: dict(d.column_policy or {}) for d in rows},
        )
        return check_grants(job, node=self.name, datasets=datasets, grants=self.grants())

    # -- jobs: as initiator ----------------------------------------------------------------

    async def submit(self, spec: dict[str, Any] | str, actor: str = "node") -> dict[str, Any]:
        """Validate a job, propose it to every party and start it once all accept.

        A party whose grant asks for approval holds the job: it is then returned as
        ``pending_approval`` and starts when the last owner approves.

        Raises
        ------
        JobSpecError
            The job is malformed (the message names the field).
        AuthorizationError, DataError
            This node refuses it (see :func:`~rainbridge.node.proposals.check_job`).
        JobRefusedError
            Another party refused it; every reason is given (an unreachable party's too).
        ChannelError
            No party refused, but one could not be reached.
        """
        text = spec if isinstance(spec, str) else json.dumps(spec)
        job = parse_job(text, source="job")
        try:
            self.check_interop_job(job)
            check = self.check_job(job, self.name)
        except RainbridgeError as exc:
            self.storage.log(
                "job_refused_locally", {"name": job.name, "reason": str(exc)}, actor=actor
            )
            raise
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
                grants=check.grants,
                submitted_by=actor,
            )
        )
        own_pending = bool(check.manual)
        self._decide(job_id, self.name, not own_pending, pending=own_pending)
        self.storage.log(
            "job_proposed",
            {"name": job.name, "digest": digest, "parties": job.parties, "grants": check.grants},
            job_id,
            actor=actor,
        )
        ic = self.ic_names()
        for p in job.parties:
            if p in ic:  # the standard has no proposal step: its operator starts its side
                self._decide(job_id, p, True)
        others = [p for p in job.parties if p != self.name and p not in ic]
        proposal = {"type": "propose", "job_id": job_id, "spec": job.to_dict(), "digest": digest}
        replies = await asyncio.gather(
            *(self.dataplane.request(p, proposal) for p in others), return_exceptions=True
        )
        refused: dict[str, str] = {}
        unreachable: set[str] = set()
        pending: list[str] = [self.name] if own_pending else []
        for p, r in zip(others, replies, strict=True):
            if isinstance(r, BaseException):
                accept, said, held = False, _reason(r), False
                if not isinstance(r, AuthenticationError):
                    unreachable.add(p)
            else:
                accept = r.get("accept") is True
                held = r.get("pending") is True and not accept
                said = "" if accept else str(r.get("reason") or "no reason given")[:_MAX_REASON]
            self._decide(job_id, p, accept, said or None, pending=held)
            if held:
                pending.append(p)
            elif not accept:
                refused[p] = said
        if refused:
            why = "; ".join(f"{p}: {r}" for p, r in refused.items())
            self._end(job_id, "refused", why)
            accepted = [p for p in others if p not in refused]
            self._spawn(self._tell_parties(job_id, f"refused by {', '.join(refused)}", accepted))
            if set(refused) <= unreachable:  # nobody said no: a peer could not be reached
                raise ChannelError(f"job {job.name!r} was not started: {why}")
            raise JobRefusedError(f"job {job.name!r} was refused: {why}")
        if pending:
            self.storage.update_job(job_id, status=PENDING)
            self.storage.log("job_pending_approval", {"by": pending}, job_id)
            return self.storage.job_dict(job_id)
        await self._start_everywhere(job_id)
        return self.storage.job_dict(job_id)

    async def _start_everywhere(self, job_id: str) -> None:
        """Every party accepted: tell them to start, then start here."""
        row = self.storage.job(job_id)
        ic = self.ic_names()
        others = [p for p in row.parties if p != self.name and p not in ic]
        self.storage.update_job(job_id, status="starting")
        self.storage.log("job_accepted", {"parties": row.parties}, job_id)
        started = await asyncio.gather(
            *(self.dataplane.request(p, {"type": "start", "job_id": job_id}) for p in others),
            return_exceptions=True,
        )
        failed = {
            p: r
            for p, r in zip(others, started, strict=True)
            if isinstance(r, BaseException) or r.get("ok") is not True
        }
        if failed:
            why = "could not start: " + "; ".join(
                f"{p}: {_reason(r) if isinstance(r, BaseException) else r.get('reason')}"
                for p, r in failed.items()
            )
            self._end(job_id, "failed", why)
            self._spawn(self._tell_parties(job_id, "the job could not start everywhere"))
            if all(
                isinstance(r, BaseException) and not isinstance(r, AuthenticationError)
                for r in failed.values()
            ):  # no party said no: one could not be reached
                raise ChannelError(f"job {row.name!r} {why}")
            raise JobRefusedError(f"job {row.name!r} {why}")
        await self._start_worker(job_id)

    async def _on_party_decided(self, job_id: str) -> None:
        """A held job: start it once every party accepted (at the initiator)."""
        row = self.storage.find_job(job_id)
        if row is None or row.status != PENDING:
            return
        decisions = self.storage.decisions(job_id)
        if all(decisions.get(p, {}).get("accept") for p in row.parties):
            try:
                await self._start_everywhere(job_id)
            except RainbridgeError as exc:
                log.info("job %s could not start: %s", job_id, exc)

    async def approve(self, job_id: str, actor: str = "node") -> dict[str, Any]:
        """The data owner's approval of a job held under a ``manual`` grant."""
        row = self.storage.job(job_id)
        if row.status != PENDING or self.storage.decisions(job_id).get(self.name, {}).get("accept"):
            raise ConfigError(f"job {job_id} is not waiting for this node's approval")
        job = JobSpec.model_validate(row.spec)
        try:
            check = self.check_job(job, row.initiator)  # the grants may have changed since
        except RainbridgeError as exc:
            await self.decline(job_id, f"no longer allowed: {exc}", actor)
            raise
        self.storage.update_job(job_id, grants=check.grants)
        self._decide(job_id, self.name, True)
        self.storage.log("job_approved", {"grants": check.grants}, job_id, actor=actor)
        if row.initiator == self.name:
            await self._on_party_decided(job_id)
        else:
            self.storage.update_job(job_id, status="accepted")
            reply = await self.dataplane.request(
                row.initiator, {"type": "approved", "job_id": job_id}
            )
            if reply.get("ok") is not True:
                raise JobRefusedError(
                    f"the initiator did not take the approval: {reply.get('reason')}"
                )
        return self.storage.job_dict(job_id)

    async def decline(self, job_id: str, reason: str, actor: str = "node") -> dict[str, Any]:
        """The data owner's refusal of a job held for approval."""
        row = self.storage.job(job_id)
        if row.status != PENDING:
            raise ConfigError(f"job {job_id} is not waiting for approval")
        why = f"declined by the owner at {self.name}" + (f": {reason}" if reason else "")
        self._decide(job_id, self.name, False, why[:_MAX_REASON])
        self._end(job_id, "refused", why[:_MAX_REASON], actor=actor)
        await self._tell_parties(job_id, why)
        return self.storage.job_dict(job_id)

    async def cancel(self, job_id: str, actor: str = "node") -> dict[str, Any]:
        """Stop a job here and tell the other parties (a finished job is left as it is)."""
        row = self.storage.job(job_id)
        if row.status not in FINAL:
            self._end(job_id, "cancelled", "cancelled by the user", actor=actor)
            await asyncio.gather(
                self.runner.stop(job_id),
                self._tell_parties(job_id, "cancelled by the user"),
            )
        return self.storage.job_dict(job_id)

    async def _stop_job(self, job_id: str, why: str) -> None:
        row = self.storage.find_job(job_id)
        if row is None or row.status in FINAL:
            return
        self._end(job_id, "cancelled" if row.status in ACTIVE else "refused", why)
        await asyncio.gather(self.runner.stop(job_id), self._tell_parties(job_id, why))

    # -- the other parties -----------------------------------------------------------------

    def _decide(
        self,
        job_id: str,
        party: str,
        accept: bool,
        reason: str | None = None,
        *,
        pending: bool = False,
    ) -> None:
        self.storage.decide(job_id, party, accept, "pending approval" if pending else reason)

    def _end(self, job_id: str, status: str, error: str, actor: str = "node") -> None:
        self.storage.update_job(job_id, status=status, error=error)
        self.storage.log(f"job_{status}", {"reason": error}, job_id, actor=actor)

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
        if kind == "catalogue":
            self.storage.log("catalogue_browsed", {}, actor=f"peer:{peer}")
            return {"ok": True, "datasets": self.catalogue()}
        if kind == "rotate_key":
            return self._on_rotate_key(peer, msg)
        if kind == "ping":  # liveness for the console's overview; nothing is logged
            return {"ok": True}
        if kind == "score":
            return self._on_score(peer, msg)
        if kind == "pir_query":
            return await self._on_pir_query(peer, msg)
        if kind == "pir_sync":
            return self._on_pir_sync(peer, msg)
        if kind == "pir_info":
            return self._on_pir_info(peer, msg)
        if isinstance(kind, str) and kind.startswith("mlq_"):
            return await self._on_mlq(peer, msg)
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
        if kind == "approved":
            if row.initiator != self.name or row.status != PENDING:
                return {"ok": False, "reason": f"job is {row.status}, not pending approval"}
            self._decide(job_id, peer, True)
            self.storage.log("job_approved_by_peer", {"peer": peer}, job_id, actor=f"peer:{peer}")
            self._spawn(self._on_party_decided(job_id))
            return {"ok": True}
        if kind == "job_report":
            return self._on_report(peer, row, msg.get("part"))
        if kind == "countersign":
            return self._on_countersign(peer, row, msg.get("record"))
        if kind == "job_record":
            return self._on_record(peer, row, msg.get("record"), msg.get("signatures"))
        return {"ok": False, "reason": f"unknown request {str(kind)[:40]!r}"}

    def _on_propose(self, peer: str, job_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        if self.storage.find_job(job_id) is not None:
            return {"accept": False, "reason": "job id already used"}
        spec = msg.get("spec")
        named = spec.get("parties") if isinstance(spec, dict) else None
        # the spec is not validated yet: its parties may be anything JSON holds
        names = {p for p in named if isinstance(p, str)} if isinstance(named, list) else set()
        if self.ic_names() & names:
            return {
                "accept": False,
                "reason": "a job with an interconnection peer runs only from that peer's own node",
            }
        try:
            job = parse_job(json.dumps(msg.get("spec")), source="proposal")
        except RainbridgeError as exc:
            self.storage.log(
                "proposal_refused", {"from": peer, "reason": str(exc)}, job_id, f"peer:{peer}"
            )
            return {"accept": False, "reason": str(exc)}
        reason: str | None = None
        check = GrantCheck()
        try:
            if job.digest() != msg.get("digest"):
                raise ConfigError("the job's digest does not match its content")
            check = self.check_job(job, peer)
        except RainbridgeError as exc:
            reason = str(exc)
        held = reason is None and bool(check.manual)
        status = "refused" if reason is not None else PENDING if held else "accepted"
        self.storage.put_job(
            JobRow(
                id=job_id,
                name=job.name,
                spec=job.to_dict(),
                digest=job.digest(),
                initiator=peer,
                status=status,
                progress={},
                error=reason,
                grants=check.grants,
                submitted_by=f"peer:{peer}",
            )
        )
        self._decide(job_id, self.name, reason is None and not held, reason, pending=held)
        body = {"from": peer, "name": job.name, "digest": job.digest(), "grants": check.grants}
        if reason is not None:
            self.storage.log("job_refused", {**body, "reason": reason}, job_id, f"peer:{peer}")
            log.info("refused job %s from %s: %s", job_id, peer, reason)
            return {"accept": False, "reason": reason}
        if held:
            self.storage.log(
                "job_pending_approval", {**body, "datasets": check.manual}, job_id, f"peer:{peer}"
            )
            why = f"awaiting approval by the owner of {', '.join(map(repr, check.manual))}"
            return {"accept": False, "pending": True, "reason": why}
        self.storage.log("job_accepted", body, job_id, f"peer:{peer}")
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
        self._end(
            row.id,
            "aborted",
            f"{peer}: {reason}" if reason else f"aborted by {peer}",
            actor=f"peer:{peer}",
        )
        self._spawn(self.runner.stop(row.id))

    # -- workers ---------------------------------------------------------------------------

    def _consume_grants(self, row: JobRow) -> None:
        """Count this call against every grant the job uses, re-checking each first."""
        job = JobSpec.model_validate(row.spec)
        datasets = self.storage.dataset_refs()
        now = dt.datetime.now(dt.UTC)
        # the component type each of this node's datasets is read by (what its grant allows)
        read_by = {
            c.inputs[self.name].dataset: c.type
            for c in job.components
            if self.name in c.inputs and c.inputs[self.name].dataset
        }
        with self.storage.session() as s:
            for dataset, per_peer in (row.grants or {}).items():
                rows = datasets[dataset].num_rows if dataset in datasets else 0
                for grant_id in set(per_peer.values()):
                    g = s.get(GrantRow, grant_id)
                    if g is None:
                        raise GrantError(f"grant {grant_id} no longer exists")
                    why = why_not(
                        g,
                        component_type=read_by.get(dataset, ""),
                        columns=[],
                        receivers=[],
                        rows=rows,
                        now=now,
                    )
                    if why is not None:
                        raise GrantError(f"cannot start: {why}")
                    g.calls_used += 1
                    g.rows_used += rows
        costs = [(d, c, e) for d, c, e in dp_costs(job, node=self.name) if e is not None]
        if costs:
            with self.storage.session() as s:
                for d, _cid, eps in costs:
                    ds_row = s.get(DatasetRow, d)
                    if ds_row is None:
                        continue
                    if (
                        ds_row.dp_budget is not None
                        and ds_row.dp_spent + eps > ds_row.dp_budget + 1e-12
                    ):
                        raise GrantError(
                            f"cannot start: the privacy budget of {d!r} is spent "
                            f"({ds_row.dp_spent:g} of {ds_row.dp_budget:g})"
                        )
                    ds_row.dp_spent += eps
            for d, cid, eps in costs:
                self.storage.log(
                    "privacy_budget_spent", {"dataset": d, "component": cid, "epsilon": eps}, row.id
                )
        for dataset, per_peer in (row.grants or {}).items():
            rows = datasets[dataset].num_rows if dataset in datasets else 0
            self.storage.log(
                "dataset_read",
                {"dataset": dataset, "rows": rows, "grants": per_peer},
                row.id,
            )

    async def _start_worker(self, job_id: str) -> None:
        row = self.storage.job(job_id)
        job = JobSpec.model_validate(row.spec)
        try:
            self._consume_grants(row)
        except RainbridgeError as exc:
            self._end(job_id, "failed", str(exc))
            self._spawn(self._tell_parties(job_id, str(exc)))
            raise
        peers = {p.name: p for p in self.storage.peers()}
        datasets = self.storage.dataset_refs()
        ic_names = self.ic_names()
        ic = {p: self.ic_peer_config(p) for p in job.parties if p in ic_names}
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
                if p != self.name and p not in ic
            },
            "ic_peers": ic,
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

    # -- keys ------------------------------------------------------------------------------

    async def rotate_keys(self, actor: str = "node") -> dict[str, Any]:
        """New TLS and ledger keys without a restart; peers are told and re-pin.

        Peers are told first, over connections made with the old certificate, with the
        hand-over signed by the old ledger key; then this node switches. Old certificates stay
        in the history so old entries and records still verify.
        """
        master = load_master_key(self.config.path, self.config.master_key_file)
        old = self.keys.fingerprint
        prepared, handover = self.keys.prepare_rotation(self.name, master)
        msg = {
            "type": "rotate_key",
            "cert_pem": prepared.cert_pem,
            "handover_sig": handover,
        }
        told: dict[str, Any] = {}
        for p in self.storage.peers():  # over connections still made with the old key
            r = await self._ask(p.name, msg)
            told[p.name] = r.get("ok") is True or r.get("reason")
        new_keys = self.keys.commit_rotation(prepared)
        self.ledger.rotate(new_keys, handover, actor)
        self.keys = new_keys
        self.runner.key_password = new_keys.identity.key_password
        self.dataplane.set_identity(new_keys.identity)
        for listener in self.identity_listeners:
            listener(new_keys.identity)
        return {"old": old, "new": new_keys.fingerprint, "peers_told": told}

    def _on_rotate_key(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            row = self.storage.peer(peer)
            pem = str(msg.get("cert_pem", ""))
            new_fp = fingerprint_pem(pem)
            alg, key = ledger_key_of(row.cert_pem)
            sig = bytes.fromhex(str(msg.get("handover_sig", "")))
        except (RainbridgeError, ValueError, TypeError):
            return {"ok": False, "reason": "malformed key rotation"}
        if not verify_signature(alg, key, sig, ROTATION_DOMAIN + bytes.fromhex(new_fp)):
            self.storage.log("peer_rotation_refused", {"peer": peer}, actor=f"peer:{peer}")
            return {"ok": False, "reason": "the hand-over is not signed by the pinned key"}
        self.storage.keep_certificate(peer, new_fp, pem)
        with self.storage.session() as s:
            p = s.get(PeerRow, peer)
            assert p is not None
            p.fingerprint, p.cert_pem = new_fp, pem
        self.dataplane.reload()
        self.storage.log(
            "peer_key_rotated",
            {"peer": peer, "old": row.fingerprint, "new": new_fp},
            actor=f"peer:{peer}",
        )
        return {"ok": True}
