"""Governance overhead: signed ledger appends, grant checks per job step, verification.

Each suite (``standard``: SHA-256 + Ed25519; ``gm``: SM3 + SM2) runs on a fresh node
directory on local disk with the default SQLite database. The baseline is the same database
append without hash chain or signature (what the node's event log was before the ledger),
so the ratio is the cost of 存证 itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rainbridge.bench.common import machine, median


def _node(base: Path, name: str, suite: str) -> Any:
    from rainbridge.node.config import NodeConfig, write_token
    from rainbridge.node.keys import init_node_keys
    from rainbridge.node.service import NodeService

    d = base / name
    d.mkdir(parents=True)
    init_node_keys(d, name, suite)
    write_token(d)
    cfg = NodeConfig(name=name, dir=str(d), crypto_suite=suite)
    cfg.save()
    return NodeService(cfg)


def _setup_grants(node: Any, base: Path, grants: int) -> Any:
    from rainbridge.crypto.certs import create_identity
    from rainbridge.jobs.spec import JobSpec
    from rainbridge.node.storage import PeerRow

    csv = base / "customers.csv"
    csv.write_text("customer_id,age\n" + "".join(f"c{i},{i % 90}\n" for i in range(1000)))
    node.owners.add_dataset("customers", str(csv), "customer_id")
    for peer in ("telecom", "tax"):
        ident = create_identity(base / f"{peer}-id", peer)
        node.storage.put_peer(
            PeerRow(
                name=peer,
                host="127.0.0.1",
                port=1,
                fingerprint=ident.fingerprint,
                cert_pem=ident.cert_pem,
            )
        )
    # unrelated grants first, so the check scans a realistic table
    for i in range(grants - 2):
        node.owners.add_grant(
            dataset="customers",
            peer=f"other{i}",
            columns=["*"],
            components=["psi"],
            receivers=["*"],
        )
    for peer in ("telecom", "tax"):
        node.owners.add_grant(
            dataset="customers",
            peer=peer,
            columns=["customer_id"],
            components=["psi"],
            receivers=["bank", "telecom"],
            max_calls=1_000_000,
        )
    spec = {
        "name": "bench",
        "parties": ["bank", "telecom", "tax"],
        "components": [
            {
                "id": "psi",
                "type": "psi",
                "inputs": {
                    "bank": {"dataset": "customers", "id": "customer_id"},
                    "telecom": {"dataset": "subscribers", "id": "customer_id"},
                    "tax": {"dataset": "taxpayers", "id": "customer_id"},
                },
                "outputs": {"intersection": {"receivers": ["bank", "telecom"]}},
            }
        ],
    }
    return JobSpec.model_validate(spec)


def _baseline_appends(node: Any, n: int) -> float:
    """Unsigned, unchained inserts into the same database (the old event log)."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert

    md = MetaData()
    t = Table(
        "bench_events",
        md,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(32)),
        Column("detail", Text),
    )
    md.create_all(node.storage.engine)
    body = json.dumps({"dataset": "customers", "rows": 1000, "grants": {"telecom": "g-1"}})
    t0 = time.perf_counter()
    for _ in range(n):
        with node.storage.engine.begin() as conn:
            conn.execute(insert(t).values(kind="dataset_read", detail=body))
    return n / (time.perf_counter() - t0)


def bench_suite(suite: str, n: int, repeat: int, grants: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rb-gov-") as tmp:
        base = Path(tmp)
        node = _node(base, "bank", suite)
        job = _setup_grants(node, base, grants)
        body = {"dataset": "customers", "rows": 1000, "grants": {"telecom": "g-1"}}
        rates, checks, steps, baselines = [], [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for i in range(n):
                node.storage.log("dataset_read", body, f"job{i % 50}", actor="node")
            rates.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for _ in range(n // 5):
                node.jobs.check_job(job, "telecom")
            checks.append((time.perf_counter() - t0) / (n // 5) * 1e3)
            # one job step as a proposal is handled: grant check, then its ledger entry
            t0 = time.perf_counter()
            for i in range(n // 5):
                check = node.jobs.check_job(job, "telecom")
                node.storage.log("job_accepted", {"grants": check.grants}, f"s{i}", "peer:telecom")
            steps.append((time.perf_counter() - t0) / (n // 5) * 1e3)
            baselines.append(_baseline_appends(node, n))
        t0 = time.perf_counter()
        rep = node.ledger.verify()
        verify_s = time.perf_counter() - t0
        assert rep.ok, rep.problems
        return {
            "suite": suite,
            "signature": node.keys.ledger_key.alg,
            "appends": n,
            "signed_appends_per_s": round(median(rates)),
            "baseline_unsigned_appends_per_s": round(median(baselines)),
            "grant_check_ms": round(median(checks), 3),
            "job_step_ms": round(median(steps), 3),
            "grants_in_table": grants,
            "verify_entries": rep.entries,
            "verify_entries_per_s": round(rep.entries / verify_s),
            "runs": repeat,
        }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    return {
        "benchmark": "governance",
        "machine": machine(),
        "results": [bench_suite(s, args.n, args.repeat, args.grants) for s in suites],
    }
