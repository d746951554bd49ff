"""A job's worker checks its inputs again before it opens any channel, and the runner leaves
no staged or released output of a job that did not succeed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from node_helpers import make_config, spec

from rainbridge.data import inspect_dataset
from rainbridge.errors import DataError
from rainbridge.jobs.spec import JobSpec
from rainbridge.node import worker
from rainbridge.node.runner import Runner
from rainbridge.node.storage import JobRow, Storage


def test_the_worker_refuses_a_changed_file_before_any_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("customer_id,age\na,1\nb,2\n")
    ds = inspect_dataset("customers", csv, "customer_id")  # registered with 'age'
    csv.write_text("customer_id,income\na,1\nb,2\n")  # then the file lost it
    job = spec({"bank": "customers", "telecom": "subscribers"})
    job["components"][0]["outputs"] = {
        "intersection": {"receivers": ["bank"], "columns": {"bank": ["age"]}}
    }

    async def no_channels(ctx: dict[str, Any]) -> Any:
        raise AssertionError("a channel was opened")

    monkeypatch.setattr(worker, "open_channels", no_channels)
    ctx = {
        "party": "bank",
        "job_id": "j1",
        "spec": JobSpec.model_validate(job).to_dict(),
        "datasets": {"customers": ds.to_dict()},
        "peers": {"telecom": {}},
        "out_dir": str(tmp_path / "out"),
        "staging_dir": str(tmp_path / "staging"),
    }
    with pytest.raises(DataError, match="'customers' at 'bank' has no column 'age'"):
        asyncio.run(worker.run(ctx))
    assert not (tmp_path / "out").exists() and not (tmp_path / "staging").exists()


def test_stopping_a_job_that_did_not_succeed_removes_its_staging_and_outputs(
    tmp_path: Path,
) -> None:
    cfg = make_config(tmp_path / "bank", "bank")
    storage = Storage(cfg.database_url)

    async def failed(*a: Any) -> None:
        return None

    runner = Runner(cfg, storage, failed)
    job = JobSpec.model_validate(spec({"bank": "customers", "telecom": "subscribers"}))
    for job_id, status in (("j1", "aborted"), ("j2", "succeeded")):
        storage.put_job(
            JobRow(
                id=job_id,
                name=job.name,
                spec=job.to_dict(),
                digest=job.digest(),
                initiator="bank",
                status=status,
                progress={},
            )
        )
        for d in (runner.staging_dir(job_id), runner.out_dir(job_id)):
            d.mkdir(parents=True)
            (d / "psi.intersection.parquet").write_bytes(b"x")
    asyncio.run(runner.stop("j1"))
    asyncio.run(runner.stop("j2"))
    assert not runner.staging_dir("j1").exists() and not runner.out_dir("j1").exists()
    assert (runner.out_dir("j2") / "psi.intersection.parquet").exists()
