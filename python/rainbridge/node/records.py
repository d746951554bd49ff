"""Job records: what a job computed, on what, for whom, countersigned by every party.

When a job ends at a party (whatever the outcome), the party writes its **part**: its final
status, the datasets it read (rows, and the grant each peer used them under), the outputs
it received (rows and SHA-256 of each file) and what it used (bytes, CPU seconds). A party
other than the initiator sends its part to the initiator. Once the initiator has every part
(or after a timeout), it assembles the **record**::

    {"job_id", "name", "digest", "initiator", "parties", "status", "parts": {party: part}}

and asks every party to countersign it; a party signs only if the record names a job it
took part in, with the digest it accepted, and carries its own part exactly as it wrote it.
The initiator then sends the record with all signatures to every party, each checks every
signature against the certificates it pinned and appends the same ``job_record`` entry to
its ledger. Any party can later show a record that every other party signed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from rainbridge.audit.verify_ledger import RECORD_DOMAIN, canonical, check_record

RECORD_STATUSES = ("succeeded", "unsuccessful")
#: longest reason a peer may put into this node's records (refusals, aborts, missing parts)
MAX_PEER_REASON = 500


def file_sha256(path: str | Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def outputs_of(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{component.output: {rows, sha256}}`` of a job's result at one party."""
    out: dict[str, dict[str, Any]] = {}
    for cid, comp in (result or {}).get("components", {}).items():
        for name, o in comp.get("outputs", {}).items():
            out[f"{cid}.{name}"] = {"rows": o.get("rows"), "sha256": file_sha256(o["path"])}
    return out


def make_part(
    *,
    party: str,
    status: str,
    grants: dict[str, dict[str, str]],
    rows: dict[str, int],
    result: dict[str, Any] | None,
) -> dict[str, Any]:
    """One party's part of a job record."""
    comps = (result or {}).get("components", {})
    return {
        "party": party,
        "status": status,
        "datasets": {
            name: {"rows": rows.get(name, 0), "grants": grants.get(name, {})}
            for name in sorted(set(rows) | set(grants))
        },
        "outputs": outputs_of(result),
        "usage": {
            "bytes": int(sum(c.get("bytes", 0) for c in comps.values())),
            "cpu_seconds": round(sum(float(c.get("cpu_seconds", 0.0)) for c in comps.values()), 6),
        },
    }


def make_record(job: dict[str, Any], parts: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The record the initiator asks every party to countersign."""
    ok = all(p is not None and p.get("status") == "succeeded" for p in parts.values())
    return {
        "job_id": job["id"],
        "name": job["name"],
        "digest": job["digest"],
        "initiator": job["initiator"],
        "parties": list(job["parties"]),
        "status": "succeeded" if ok else "unsuccessful",
        "parts": parts,
    }


def record_message(record: dict[str, Any]) -> bytes:
    return RECORD_DOMAIN + canonical(record)


def countersign_problem(
    record: Any, *, job: dict[str, Any] | None, party: str, own_part: dict[str, Any] | None
) -> str | None:
    """Why ``party`` must not sign ``record`` (None: it may)."""
    if not isinstance(record, dict):
        return "malformed record"
    if job is None:
        return "no such job here"
    if record.get("digest") != job["digest"] or record.get("job_id") != job["id"]:
        return "the record is not of the job accepted here"
    if record.get("parties") != job["parties"] or record.get("initiator") != job["initiator"]:
        return "the record names other parties"
    if record.get("status") not in RECORD_STATUSES:
        return "unknown record status"
    parts = record.get("parts")
    if not isinstance(parts, dict) or set(parts) != set(job["parties"]):
        return "the record's parts do not match the parties"
    if own_part is None:
        return "this party has not finished the job yet"
    if canonical(parts.get(party)) != canonical(own_part):
        return "the record misstates this party's part"
    return None


def signatures_problems(
    record: dict[str, Any], signatures: dict[str, Any], certs: dict[str, str]
) -> list[str]:
    return check_record(record, signatures, certs)
