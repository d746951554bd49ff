"""The psi component by bucket pairs, run as local jobs: the same outputs and summaries as the
one-pass protocols, with filters, IDs to drop, Unicode normalisation and Parquet inputs; and
its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import datasets_from_args, run_local

JOB = """\
name: t
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {{dataset: customers, id: cid}}
      telecom: {{dataset: subs, id: cid}}
    params: {params}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {{bank: [age]}}
"""


def _data(tmp: Path, parquet: bool) -> list[str]:
    bank = {
        "cid": [f"c{i}" if i % 11 else ("" if i % 2 else None) for i in range(3000)]
        + ["Cafe\u0301", "x1"],
        "age": [str(20 + i % 60) for i in range(3000)] + ["33", "44"],
    }
    tel = {"cid": [f"c{i}" for i in range(1500, 5000)] + ["Caf\u00e9"]}
    if parquet:
        pq.write_table(pa.table(bank), tmp / "b.parquet", row_group_size=700)
        pq.write_table(pa.table(tel), tmp / "t.parquet", row_group_size=700)
        return [f"bank.customers={tmp / 'b.parquet'}", f"telecom.subs={tmp / 't.parquet'}"]
    lines = [f"{c or ''},{a}" for c, a in zip(bank["cid"], bank["age"], strict=True)]
    (tmp / "b.csv").write_text("cid,age\n" + "\n".join(lines) + "\n")
    (tmp / "t.csv").write_text("cid\n" + "\n".join(tel["cid"]) + "\n")
    return [f"bank.customers={tmp / 'b.csv'}", f"telecom.subs={tmp / 't.csv'}"]


def _run(tmp: Path, params: str, parquet: bool, name: str) -> dict[str, Any]:
    job = parse_job(JOB.format(params=params))
    (tmp / name).mkdir()
    args = _data(tmp / name, parquet)
    return run_local(job, datasets_from_args(job, args), tmp / name / "out")


def _outputs(res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for party in ("bank", "telecom"):
        o = res[party]["components"]["psi"]["outputs"]["intersection"]
        out[party] = pq.read_table(o["path"]).to_pylist()
    return out


@pytest.mark.parametrize("parquet", [False, True])
@pytest.mark.parametrize("protocol", ["rr22", "ecdh"])
@pytest.mark.parametrize(
    "extra",
    [
        "missing_ids: drop",
        "missing_ids: drop, normalize: nfc",
        "missing_ids: drop, filters: {bank: [{column: age, op: '>=', value: '30'}]}",
    ],
)
def test_bucket_pairs_equal_the_one_pass_psi(
    tmp_path: Path, parquet: bool, protocol: str, extra: str
) -> None:
    base = f"protocol: {protocol}, {extra}"
    one = _run(tmp_path, f"{{{base}, bucket_pairs: 'off'}}", parquet, "one")
    by = _run(tmp_path, f"{{{base}, bucket_pairs: 'on', bucket_items: 1024}}", parquet, "by")
    assert _outputs(by) == _outputs(one)
    for party in ("bank", "telecom"):
        a, b = one[party]["components"]["psi"], by[party]["components"]["psi"]
        assert b["stats"]["buckets"] == 4  # 3501 IDs at the telecom
        for key in ("intersection_size", "missing_ids_dropped", "rows_after_filter"):
            assert a.get(key) == b.get(key), (party, key)
    assert one["bank"]["components"]["psi"]["missing_ids_dropped"] == 273


def test_bucket_pairs_refuse_a_payload(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="bucket_pairs runs a two-party PSI without payload"):
        parse_job(
            JOB.format(params="{protocol: rr22, bucket_pairs: 'on', payload: {telecom: [cid]}}")
        )
