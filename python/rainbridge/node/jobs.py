"""The life of a job at a node: proposal, acceptance, approval, start, cancel and abort.

A job's life at the node that submits it (the initiator)::

    proposed ──(a party refuses or is unreachable)──▶ refused
        │ every party accepts
        ▼
    starting ─▶ running ─▶ succeeded | failed | cancelled | aborted

and at every other party: ``accepted`` (or ``refused``) on the proposal, then ``starting``
when the initiator says start, and the same ends. A party that fails tells the others why,
in its worker's abort frames and in a control ``abort``, so they stop at once and record the
reason.

Every proposal is checked against this node's grants (:mod:`.grants`); a ``manual`` grant
holds the job as ``pending_approval`` until the dataset's owner decides, and the initiator
starts the job once every party accepted. Quotas are consumed when a job starts. Every event
goes to the signed ledger; the end of a job is :mod:`.closing`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rainbridge.errors import (
    AuthenticationError,
    ChannelError,
    ConfigError,
    JobRefusedError,
    RainbridgeError,
)
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.spec import JobSpec, parse_job
from rainbridge.node.background import Background
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.grants import (
    GrantCheck,
    check_column_policies,
    check_grants,
    check_group_thresholds,
    check_privacy_budgets,
    consume_grants,
    refusal_class,
)
from rainbridge.node.metrics import NodeMetrics, component_labels
from rainbridge.node.proposals import check_job
from rainbridge.node.records import MAX_PEER_REASON as _MAX_REASON
from rainbridge.node.router import MessageRouter
from rainbridge.node.runner import ACTIVE, FINAL, Runner
from rainbridge.node.sessions import new_job_id, valid_job_id
from rainbridge.node.storage import JobRow, Storage
from rainbridge.node.worker import public_reason

if TYPE_CHECKING:
    from rainbridge.node.interop import Interop
    from rainbridge.node.models import Models
    from rainbridge.node.owners import DataOwners

log = logging.getLogger("rainbridge.node")

#: statuses of a job waiting for a data owner's decision
PENDING = "pending_approval"


def unreachable_reason(exc: BaseException) -> str:
    """A failure to reach a peer, as a decision's reason."""
    if isinstance(exc, AuthenticationError):
        return str(exc)  # already says which side refused which certificate
    return f"unreachable: {exc if isinstance(exc, RainbridgeError) else type(exc).__name__}"


class Jobs:
    """Jobs proposed by and to this node, until their workers end.

    Parameters
    ----------
    owners : DataOwners
        This node's datasets and grants (what a job is checked against).
    interop : Interop
        The interconnection peers (parties without a proposal step).
    metrics : NodeMetrics, optional
        Where refusals, and jobs that end without a worker, are counted.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        dataplane: DataPlane,
        runner: Runner,
        background: Background,
        router: MessageRouter,
        owners: DataOwners,
        interop: Interop,
        *,
        metrics: NodeMetrics | None = None,
        models: Models | None = None,
    ) -> None:
        self.name, self.config, self.storage = config.name, config, storage
        self.models = models
        self.metrics = metrics or NodeMetrics()
        self.dataplane, self.runner, self.background = dataplane, runner, background
        self.owners, self.interop = owners, interop
        router.add("propose", self._on_propose, owner="jobs")
        router.add_job("start", self._on_start, owner="jobs")
        router.add_job("abort", self._on_abort, owner="jobs")
        router.add_job("approved", self._on_approved, owner="jobs")

    # -- jobs: this node's checks ----------------------------------------------------------

    def check_job(self, job: JobSpec, initiator: str) -> GrantCheck:
        """Refuse a job this node must not run, saying why (see :mod:`.proposals` and
        :mod:`.grants`); returns the grants that cover it."""
        rows = self.storage.datasets()
        datasets = {r.name: r.ref() for r in rows}
        # this node's view: inherited ID columns, a registered model's features here
        job = complete_job(job, self.name, datasets, self._models_of(job))
        check_job(
            job,
            node=self.name,
            initiator=initiator,
            peers={p.name for p in self.storage.peers()} | self.interop.ic_names(),
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
        return check_grants(job, node=self.name, datasets=datasets, grants=self.owners.grants())

    def _models_of(self, job: JobSpec) -> dict[str, dict[str, Any]]:
        """The registered models ``job`` scores with at this node (refused if retired)."""
        return self.models.resolve_job(job) if self.models is not None else {}

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
            self.interop.check_interop_job(job)
            check = self.check_job(job, self.name)
        except RainbridgeError as exc:
            self.storage.log(
                "job_refused_locally", {"name": job.name, "reason": str(exc)}, actor=actor
            )
            self._refused(refusal_class(exc), job.to_dict())
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
        self.decide(job_id, self.name, not own_pending, pending=own_pending)
        self.storage.log(
            "job_proposed",
            {"name": job.name, "digest": digest, "parties": job.parties, "grants": check.grants},
            job_id,
            actor=actor,
        )
        ic = self.interop.ic_names()
        for p in job.parties:
            if p in ic:  # the standard has no proposal step: its operator starts its side
                self.decide(job_id, p, True)
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
                accept, said, held = False, unreachable_reason(r), False
                if not isinstance(r, AuthenticationError):
                    unreachable.add(p)
            else:
                accept = r.get("accept") is True
                held = r.get("pending") is True and not accept
                said = "" if accept else str(r.get("reason") or "no reason given")[:_MAX_REASON]
            self.decide(job_id, p, accept, said or None, pending=held)
            if held:
                pending.append(p)
            elif not accept:
                refused[p] = said
        if refused:
            why = "; ".join(f"{p}: {r}" for p, r in refused.items())
            self.end(job_id, "refused", why)
            accepted = [p for p in others if p not in refused]
            self.background.spawn(
                self.tell_parties(job_id, f"refused by {', '.join(refused)}", accepted)
            )
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
        ic = self.interop.ic_names()
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
                f"{p}: {unreachable_reason(r) if isinstance(r, BaseException) else r.get('reason')}"
                for p, r in failed.items()
            )
            self.end(job_id, "failed", why)
            self.background.spawn(self.tell_parties(job_id, "the job could not start everywhere"))
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
        self.decide(job_id, self.name, True)
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
        self.decide(job_id, self.name, False, why[:_MAX_REASON])
        self._refused("declined", row.spec, job_id)
        self.end(job_id, "refused", why[:_MAX_REASON], actor=actor)
        await self.tell_parties(job_id, why)
        return self.storage.job_dict(job_id)

    async def cancel(self, job_id: str, actor: str = "node") -> dict[str, Any]:
        """Stop a job here and tell the other parties (a finished job is left as it is)."""
        row = self.storage.job(job_id)
        if row.status not in FINAL:
            self.end(job_id, "cancelled", "cancelled by the user", actor=actor)
            await asyncio.gather(
                self.runner.stop(job_id),
                self.tell_parties(job_id, "cancelled by the user"),
            )
        return self.storage.job_dict(job_id)

    async def stop_job(self, job_id: str, why: str) -> None:
        """End a job that is not over yet (cancelled if it runs, refused if not) and tell
        the other parties why (a revoked grant or peer)."""
        row = self.storage.find_job(job_id)
        if row is None or row.status in FINAL:
            return
        self.end(job_id, "cancelled" if row.status in ACTIVE else "refused", why)
        await asyncio.gather(self.runner.stop(job_id), self.tell_parties(job_id, why))

    # -- the other parties -----------------------------------------------------------------

    def decide(
        self,
        job_id: str,
        party: str,
        accept: bool,
        reason: str | None = None,
        *,
        pending: bool = False,
    ) -> None:
        self.storage.decide(job_id, party, accept, "pending approval" if pending else reason)

    def end(self, job_id: str, status: str, error: str, actor: str = "node") -> None:
        self.storage.update_job(job_id, status=status, error=error)
        self.storage.log(f"job_{status}", {"reason": error}, job_id, actor=actor)
        if job_id not in self.runner.procs:  # else its worker's watcher counts and logs it
            row = self.storage.find_job(job_id)
            self._ended_here(job_id, row.spec if row is not None else None, status)

    def _ended_here(self, job_id: str, spec: Any, status: str) -> None:
        """Count and log the end of a job that had no worker here."""
        if self.metrics.job_finished(job_id, spec, status):
            types = component_labels(spec)
            log.info(
                "job %s ended: %s before it ran here (%s)",
                job_id,
                status,
                ", ".join(types),
                extra={"job_id": job_id, "component": types, "status": status},
            )

    def _refused(
        self, reason: str, spec: Any, job_id: str | None = None, peer: str | None = None
    ) -> None:
        """Count and log (one line) a refusal by this node's own checks, of a job ``peer``
        proposed or of one submitted here, by its class only (the text names datasets,
        columns and grants: it stays in the ledger and the decision)."""
        self.metrics.refused(reason)
        extra = {
            "job_id": job_id,
            "component": component_labels(spec),
            "reason": reason,
            "outcome": "refused",
        }
        if peer is None:
            log.info("job %s refused here: %s", job_id or "(not recorded)", reason, extra=extra)
        else:
            log.info(
                "refused job %s from %s: %s", job_id, peer, reason, extra={**extra, "peer": peer}
            )

    async def tell_parties(
        self, job_id: str, reason: str, parties: Iterable[str] | None = None
    ) -> None:
        """Abort ``job_id`` at the other parties; each records "<this node>: <reason>"."""
        row = self.storage.find_job(job_id)
        if row is None:
            return
        targets = [p for p in (row.parties if parties is None else parties) if p != self.name]
        msg = {"type": "abort", "job_id": job_id, "reason": reason[:_MAX_REASON]}
        await asyncio.gather(*(self.dataplane.tell(p, msg) for p in targets))

    async def on_worker_failure(self, job_id: str, code: str, message: str) -> None:
        await self.tell_parties(job_id, public_reason(code, message))

    # -- requests from peers ---------------------------------------------------------------

    async def _on_approved(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
        if row.initiator != self.name or row.status != PENDING:
            return {"ok": False, "reason": f"job is {row.status}, not pending approval"}
        await self.background.db(self.decide, row.id, peer, True)
        self.storage.log("job_approved_by_peer", {"peer": peer}, row.id, actor=f"peer:{peer}")
        self.background.spawn(self._on_party_decided(row.id))
        return {"ok": True}

    def _on_propose(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        job_id = str(msg.get("job_id", ""))
        if not valid_job_id(job_id):
            return {"ok": False, "accept": False, "reason": "invalid job id"}
        if self.storage.find_job(job_id) is not None:
            return {"accept": False, "reason": "job id already used"}
        spec = msg.get("spec")
        named = spec.get("parties") if isinstance(spec, dict) else None
        # the spec is not validated yet: its parties may be anything JSON holds
        names = {p for p in named if isinstance(p, str)} if isinstance(named, list) else set()
        if self.interop.ic_names() & names:
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
            self._refused(refusal_class(exc), None, job_id)
            return {"accept": False, "reason": str(exc)}
        reason: str | None = None
        reason_class = ""
        check = GrantCheck()
        try:
            if job.digest() != msg.get("digest"):
                raise ConfigError("the job's digest does not match its content")
            check = self.check_job(job, peer)
        except RainbridgeError as exc:
            reason = str(exc)
            reason_class = refusal_class(exc)
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
        self.decide(job_id, self.name, reason is None and not held, reason, pending=held)
        body = {"from": peer, "name": job.name, "digest": job.digest(), "grants": check.grants}
        if reason is not None:
            self.storage.log("job_refused", {**body, "reason": reason}, job_id, f"peer:{peer}")
            self._refused(reason_class, job.to_dict(), job_id, peer)
            self._ended_here(job_id, job.to_dict(), "refused")
            return {"accept": False, "reason": reason}
        if held:
            self.storage.log(
                "job_pending_approval", {**body, "datasets": check.manual}, job_id, f"peer:{peer}"
            )
            why = f"awaiting approval by the owner of {', '.join(map(repr, check.manual))}"
            return {"accept": False, "pending": True, "reason": why}
        self.storage.log("job_accepted", body, job_id, f"peer:{peer}")
        return {"accept": True}

    async def _on_start(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
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

    async def _on_abort(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
        reason = str(msg.get("reason", ""))[:_MAX_REASON]
        if row.status in FINAL:
            return {"ok": True}
        self.end(
            row.id,
            "aborted",
            f"{peer}: {reason}" if reason else f"aborted by {peer}",
            actor=f"peer:{peer}",
        )
        self.background.spawn(self.runner.stop(row.id))
        return {"ok": True}

    # -- workers ---------------------------------------------------------------------------

    async def _start_worker(self, job_id: str) -> None:
        row = self.storage.job(job_id)
        job = JobSpec.model_validate(row.spec)
        # a model retired since the job was accepted is not used; refused before the
        # grants' quotas and privacy budgets are spent on a job that never runs
        try:
            models = self._models_of(job)
        except RainbridgeError as exc:
            self.end(job_id, "failed", str(exc))
            self.background.spawn(self.tell_parties(job_id, str(exc)))
            raise
        try:
            consume_grants(self.storage, row, self.name)
        except RainbridgeError as exc:
            self._refused(refusal_class(exc), row.spec, job_id)
            self.end(job_id, "failed", str(exc))
            self.background.spawn(self.tell_parties(job_id, str(exc)))
            raise
        for ref, m in models.items():  # which version scored: the ledger says so
            self.storage.log(
                "model_used",
                {"model": m["id"], "name": m["name"], "version": m["version"], "as": ref},
                job_id,
            )
        peers = {p.name: p for p in self.storage.peers()}
        datasets = self.storage.dataset_refs()
        ic_names = self.interop.ic_names()
        ic = {p: self.interop.ic_peer_config(p) for p in job.parties if p in ic_names}
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
            "models": models,
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
            self.end(job_id, "failed", why)
            self.background.spawn(self.tell_parties(job_id, why))
            raise RainbridgeError(why) from None
