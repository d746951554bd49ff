"""The end of a job at a node: metering, released outputs, and the record every party signs.

When a job's worker exits, this node meters what the job used, records the outputs it
released, and writes its part of the job record. A party other than the initiator sends
the part to the initiator; the initiator, once it has every part (or after a timeout),
assembles the record, has every party countersign it and distributes it, and every party
appends the same ``job_record`` to its ledger (:mod:`.records` holds the checks).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from rainbridge.jobs.spec import JobSpec
from rainbridge.node import records
from rainbridge.node.background import Background
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.ledger import Ledger
from rainbridge.node.metering import meter_job
from rainbridge.node.router import MessageRouter
from rainbridge.node.runner import FINAL
from rainbridge.node.storage import JobPartyRow, JobRow, Storage

log = logging.getLogger("rainbridge.node")

#: largest part of a job record a party may report
MAX_REPORT_BYTES = 64 << 10


class JobClosing:
    """Metering and the countersigned job record.

    Parameters
    ----------
    register_models : callable
        ``(job_id, spec, result)``: the models a succeeded job trained (see :mod:`.models`).
    ic_names : callable
        The interconnection peers (see :mod:`.interop`): they neither report nor countersign.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        ledger: Ledger,
        dataplane: DataPlane,
        background: Background,
        router: MessageRouter,
        *,
        register_models: Callable[[str, Any, Any], None],
        ic_names: Callable[[], set[str]],
    ) -> None:
        self.name, self.config, self.storage, self.ledger = config.name, config, storage, ledger
        self.dataplane, self.background = dataplane, background
        self._register_models = register_models
        self.ic_names = ic_names
        self._finalizing: set[str] = set()
        router.add_job("job_report", self._on_report, owner="closing")
        router.add_job("countersign", self._on_countersign, owner="closing")
        router.add_job("job_record", self._on_record, owner="closing")

    # -- the end of a job: metering, outputs, the countersigned record ---------------------

    async def on_job_ended(self, job_id: str) -> None:
        """The worker of ``job_id`` exited: meter, record outputs, report to the initiator."""
        row = self.storage.find_job(job_id)
        if row is None:
            return
        datasets = self.storage.dataset_refs()
        rows = {d: datasets[d].num_rows for d in (row.grants or {}) if d in datasets}
        job = JobSpec.model_validate(row.spec)
        for d in job.datasets_of(self.name):
            if d in datasets:
                rows.setdefault(d, datasets[d].num_rows)
        result = row.result if row.status == "succeeded" else None
        if result is not None:
            self._register_models(job_id, row.spec, result)
        meter_job(
            self.storage,
            job_id=job_id,
            node=self.name,
            spec=row.spec,
            status=row.status,
            grants=row.grants or {},
            rows=rows,
            result=result,
        )
        part = records.make_part(
            party=self.name, status=row.status, grants=row.grants or {}, rows=rows, result=result
        )
        for name, out in part["outputs"].items():
            self.storage.log("output_released", {"output": name, **out}, job_id)
        self._store_report(job_id, self.name, part)
        if row.initiator == self.name:
            await self._maybe_finalize(job_id)
            self.background.spawn(self._finalize_later(job_id))
        else:
            reply = await self.dataplane.ask(
                row.initiator, {"type": "job_report", "job_id": job_id, "part": part}
            )
            if reply.get("ok") is not True:
                log.info("job %s: the initiator did not take the report: %s", job_id, reply)

    def _store_report(self, job_id: str, party: str, part: dict[str, Any]) -> None:
        with self.storage.session() as s:
            row = s.get(JobPartyRow, (job_id, party))
            if row is None:
                row = JobPartyRow(job_id=job_id, party=party, accept=True)
                s.add(row)
            row.report = part

    def _reports(self, job_id: str) -> dict[str, dict[str, Any] | None]:
        with self.storage.session() as s:
            q = select(JobPartyRow).where(JobPartyRow.job_id == job_id)
            return {r.party: r.report for r in s.scalars(q)}

    def _on_report(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
        part = msg.get("part")
        if row.initiator != self.name:
            return {"ok": False, "reason": "reports go to the initiator"}
        if not isinstance(part, dict) or part.get("party") != peer:
            return {"ok": False, "reason": "malformed report"}
        if len(json.dumps(part)) > MAX_REPORT_BYTES:
            return {"ok": False, "reason": "report too large"}
        self._store_report(row.id, peer, part)
        self.background.spawn(self._maybe_finalize(row.id))
        return {"ok": True}

    async def _finalize_later(self, job_id: str) -> None:
        # a party that never reports (crashed, unreachable) must not keep the record open
        await asyncio.sleep(self.config.control_timeout)
        await self._maybe_finalize(job_id, force=True)

    async def _maybe_finalize(self, job_id: str, force: bool = False) -> None:
        """At the initiator: once every party reported, have the record countersigned."""
        row = self.storage.find_job(job_id)
        if row is None or row.status not in FINAL or job_id in self._finalizing:
            return
        if self.storage.ledger_rows(job_id=job_id, kind="job_record"):
            return
        reports = self._reports(job_id)
        ic = self.ic_names()  # another platform's party neither reports nor countersigns
        parts = {p: reports.get(p) for p in row.parties if p not in ic}
        if reports.get(self.name) is None or (not force and None in parts.values()):
            return
        self._finalizing.add(job_id)
        try:
            record = records.make_record(self.storage.job_dict(job_id), parts)
            if ic & set(row.parties):
                # the record's signers are this platform's parties; the others are named
                record["parties"] = [p for p in record["parties"] if p not in ic]
                record["interconnection_parties"] = sorted(ic & set(row.parties))
            sigs = {self.name: self.sign_record(record)}
            others = [p for p in row.parties if p != self.name and p not in ic]
            replies = await asyncio.gather(
                *(
                    self.dataplane.ask(
                        p, {"type": "countersign", "job_id": job_id, "record": record}
                    )
                    for p in others
                )
            )
            missing = {}
            for p, r in zip(others, replies, strict=True):
                if r.get("ok") is True:
                    sigs[p] = {"key": str(r.get("key")), "sig": str(r.get("sig"))}
                else:
                    missing[p] = str(r.get("reason"))[: records.MAX_PEER_REASON]
            problems = (
                records.signatures_problems(record, sigs, self.ledger.certificates())
                if not missing
                else []
            )
            if missing or problems:
                self.storage.log(
                    "job_record_incomplete",
                    {
                        "record": record,
                        "signatures": sigs,
                        "missing": missing,
                        "problems": problems[:5],
                    },
                    job_id,
                )
                return
            self.storage.log("job_record", {"record": record, "signatures": sigs}, job_id)
            msg = {"type": "job_record", "job_id": job_id, "record": record, "signatures": sigs}
            await asyncio.gather(*(self.dataplane.ask(p, msg) for p in others))
        finally:
            self._finalizing.discard(job_id)

    def sign_record(self, record: dict[str, Any]) -> dict[str, str]:
        keys = self.ledger.keys  # the current keys (a rotation switches the ledger's)
        sig = keys.ledger_key.sign(records.record_message(record))
        return {"key": keys.fingerprint, "sig": sig.hex()}

    def _on_countersign(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
        record: Any = msg.get("record")
        if row.initiator != peer:
            return {"ok": False, "reason": "only the initiator asks for countersignatures"}
        own = self._reports(row.id).get(self.name)
        why = records.countersign_problem(
            record, job=self.storage.job_dict(row.id), party=self.name, own_part=own
        )
        if why is not None:
            self.storage.log("countersign_refused", {"reason": why}, row.id, f"peer:{peer}")
            return {"ok": False, "reason": why}
        return {"ok": True, **self.sign_record(record)}

    def _on_record(self, peer: str, msg: dict[str, Any], row: JobRow) -> dict[str, Any]:
        record: Any = msg.get("record")
        sigs: Any = msg.get("signatures")
        if row.initiator != peer:
            return {"ok": False, "reason": "only the initiator distributes the record"}
        if self.storage.ledger_rows(job_id=row.id, kind="job_record"):
            return {"ok": True}  # already recorded: a repeat is harmless
        own = self._reports(row.id).get(self.name)
        why = records.countersign_problem(
            record, job=self.storage.job_dict(row.id), party=self.name, own_part=own
        )
        if why is None and isinstance(sigs, dict):
            problems = records.signatures_problems(record, sigs, self.ledger.certificates())
            why = "; ".join(problems) if problems else None
        elif why is None:
            why = "malformed signatures"
        if why is not None:
            self.storage.log("job_record_refused", {"reason": why}, row.id, f"peer:{peer}")
            return {"ok": False, "reason": why}
        self.storage.log("job_record", {"record": record, "signatures": sigs}, row.id)
        return {"ok": True}
