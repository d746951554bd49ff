"""Local simulation of whole jobs: same components and outputs as a federation."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rainbridge.errors import ConfigError, DataError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import datasets_from_args, run_local

JOB = """\
name: t
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cid}
      telecom: {dataset: subs, id: cid}
      tax: {dataset: payers, id: cid}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [age]}
  - id: again
    type: psi
    inputs:
      bank: {from: psi.intersection, id: cid}
      telecom: {dataset: subs, id: cid}
    params: {curve: ristretto255}
    outputs:
      intersection: {receivers: [telecom], format: csv}
"""


def write(tmp: Path, name: str, ids: list[str]) -> str:
    p = tmp / f"{name}.csv"
    rows = "\n".join(f"{x},{i}" for i, x in enumerate(ids))
    p.write_text(f"cid,age\n{rows}\n")
    return str(p)


def test_three_party_job_with_a_chained_component(tmp_path: Path) -> None:
    bank = [f"c{i}" for i in range(0, 60)]
    tel = [f"c{i}" for i in range(30, 90)] + ["c31"]
    tax = [f"c{i}" for i in range(0, 100, 2)]
    job = parse_job(JOB)
    data = datasets_from_args(
        job,
        [
            f"bank.customers={write(tmp_path, 'b', bank)}",
            f"telecom.subs={write(tmp_path, 't', tel)}",
            f"tax.payers={write(tmp_path, 'x', tax)}",
        ],
    )
    res = run_local(job, data, tmp_path / "out")
    common = sorted(set(bank) & set(tel) & set(tax))
    assert res["tax"]["components"]["psi"]["intersection_size"] == len(common)
    assert "outputs" not in res["tax"]["components"]["psi"]
    b = pq.read_table(res["bank"]["components"]["psi"]["outputs"]["intersection"]["path"])
    assert b.column_names == ["cid", "age"]
    assert b.column("cid").to_pylist() == common
    t = pq.read_table(res["telecom"]["components"]["psi"]["outputs"]["intersection"]["path"])
    assert sorted(set(t.column("cid").to_pylist())) == common  # c31 twice: both rows kept
    again = res["telecom"]["components"]["again"]["outputs"]["intersection"]
    assert sorted(pacsv.read_csv(again["path"]).column("cid").to_pylist()) == sorted(
        [x for x in tel if x in common]
    )
    assert not (tmp_path / "out" / "tax").exists()


def test_missing_id_column_names_file_and_column(tmp_path: Path) -> None:
    job = parse_job(JOB)
    bad = tmp_path / "bad.csv"
    bad.write_text("other\n1\n")
    with pytest.raises(DataError) as exc:
        datasets_from_args(
            job, [f"bank.customers={bad}", f"telecom.subs={bad}", f"tax.payers={bad}"]
        )
    assert "bad.csv" in str(exc.value) and "'cid'" in str(exc.value)


def test_dataset_arguments_checked(tmp_path: Path) -> None:
    job = parse_job(JOB)
    with pytest.raises(ConfigError, match=r"bank\.customers"):
        datasets_from_args(job, [])
    with pytest.raises(ConfigError, match=r"PARTY\.DATASET=PATH"):
        datasets_from_args(job, ["nonsense"])
