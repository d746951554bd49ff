"""Metering (计量): what each job used at this node, and billing reports per period.

When a job ends, this node writes one row per (component, counterparty): the grant the
counterparty used this node's dataset under, one call, the dataset's rows read, this
party's bytes on the wire in that component and its worker's CPU seconds there. Traffic
and CPU are the party's own: they are split evenly over the component's counterparties.
A report sums the rows of a period by peer, grant and component type; it is served as JSON
or CSV by the API (``GET /v1/metering``) and the CLI (``rainbridge metering report``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from sqlalchemy import select

from rainbridge.errors import ConfigError
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.grants import source_dataset
from rainbridge.node.storage import MeterRow, Storage

REPORT_COLUMNS = (
    "peer",
    "grant_id",
    "component_type",
    "calls",
    "rows",
    "bytes",
    "cpu_seconds",
    "jobs_succeeded",
    "jobs_unsuccessful",
)


def meter_job(
    storage: Storage,
    *,
    job_id: str,
    node: str,
    spec: dict[str, Any],
    status: str,
    grants: dict[str, dict[str, str]],
    rows: dict[str, int],
    result: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Write the metering rows of a job that ended at this node; returns them."""
    job = JobSpec.model_validate(spec)
    comps = (result or {}).get("components", {})
    made: list[MeterRow] = []
    for c in job.components:
        if node not in c.inputs:
            continue
        dataset = source_dataset(job, c.id, node)
        receivers = {r for o in c.outputs.values() for r in o.receivers}
        users = {p for p, r in c.inputs.items() if r.role is None}
        others = sorted((users | receivers) - {node})
        summary = comps.get(c.id, {})
        share = max(1, len(others))
        for peer in others:
            made.append(
                MeterRow(
                    job_id=job_id,
                    peer=peer,
                    grant_id=grants.get(dataset or "", {}).get(peer),
                    component=c.id,
                    component_type=c.type,
                    status=status,
                    calls=1,
                    rows=rows.get(dataset or "", 0),
                    bytes=int(summary.get("bytes", 0)) // share,
                    cpu_seconds=float(summary.get("cpu_seconds", 0.0)) / share,
                )
            )
    with storage.session() as s:
        s.add_all(made)
    return [m.to_dict() for m in made]


def parse_day(text: str | None, what: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected a date (YYYY-MM-DD) or ISO time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def report(
    storage: Storage, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> dict[str, Any]:
    """Usage in ``[since, until)`` summed by peer, grant and component type."""
    with storage.session() as s:
        q = select(MeterRow).order_by(MeterRow.at)
        if since is not None:
            q = q.where(MeterRow.at >= since)
        if until is not None:
            q = q.where(MeterRow.at < until)
        rows = list(s.scalars(q))
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r.peer, r.grant_id or "", r.component_type)
        line = lines.setdefault(
            key,
            {
                "peer": r.peer,
                "grant_id": r.grant_id,
                "component_type": r.component_type,
                "calls": 0,
                "rows": 0,
                "bytes": 0,
                "cpu_seconds": 0.0,
                "jobs_succeeded": 0,
                "jobs_unsuccessful": 0,
            },
        )
        line["calls"] += r.calls
        line["rows"] += r.rows
        line["bytes"] += r.bytes
        line["cpu_seconds"] = round(line["cpu_seconds"] + r.cpu_seconds, 6)
        line["jobs_succeeded" if r.status == "succeeded" else "jobs_unsuccessful"] += 1
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "lines": [lines[k] for k in sorted(lines)],
    }


def report_csv(rep: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for line in rep["lines"]:
        w.writerow({k: ("" if line[k] is None else line[k]) for k in REPORT_COLUMNS})
    return buf.getvalue()
