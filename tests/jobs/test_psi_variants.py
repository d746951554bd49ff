"""The psi component's variants, run as local jobs: cardinality only (ECDH) and a payload
delivered to the one receiver (RR22); and the validation of both."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rainbridge.errors import ConfigError, DataError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import datasets_from_args, run_local

PAYLOAD = """\
name: t
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cid}
      telecom: {dataset: subs, id: cid}
    params:
      protocol: rr22
      payload: {telecom: [fee, plan]}
    outputs:
      intersection:
        receivers: [bank]
        columns: {bank: [age]}
"""

CARDINALITY = """\
name: t
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cid}
      telecom: {dataset: subs, id: cid}
      tax: {dataset: payers, id: cid}
    params: {cardinality_only: true}
"""


def data(tmp: Path, job: str) -> dict:
    (tmp / "b.csv").write_text("cid,age\n" + "".join(f"c{i},{20 + i}\n" for i in range(0, 60)))
    (tmp / "t.csv").write_text(
        "cid,fee,plan\n" + "".join(f"c{i},{i * 1.5},p{i % 3}\n" for i in range(30, 90))
    )
    (tmp / "x.csv").write_text("cid\n" + "".join(f"c{i}\n" for i in range(0, 100, 2)))
    args = [f"bank.customers={tmp / 'b.csv'}", f"telecom.subs={tmp / 't.csv'}"]
    if "tax" in job:
        args.append(f"tax.payers={tmp / 'x.csv'}")
    return datasets_from_args(parse_job(job), args)


def test_payload_reaches_the_receiver_aligned(tmp_path: Path) -> None:
    res = run_local(parse_job(PAYLOAD), data(tmp_path, PAYLOAD), tmp_path / "out")
    out = res["bank"]["components"]["psi"]["outputs"]["intersection"]["path"]
    t = pq.read_table(out)
    assert t.column_names == ["cid", "age", "fee", "plan"]
    rows = t.to_pylist()
    assert sorted(r["cid"] for r in rows) == sorted(f"c{i}" for i in range(30, 60))
    for r in rows:  # passed through exactly as written
        i = int(r["cid"][1:])
        assert (r["age"], r["fee"], r["plan"]) == (str(20 + i), str(i * 1.5), f"p{i % 3}")
    assert "outputs" not in res["telecom"]["components"]["psi"]
    assert res["telecom"]["components"]["psi"]["intersection_size"] == 30


def test_cardinality_only_tells_everyone_the_size_alone(tmp_path: Path) -> None:
    res = run_local(parse_job(CARDINALITY), data(tmp_path, CARDINALITY), tmp_path / "out")
    common = set(range(30, 60)) & set(range(0, 100, 2))
    for party in ("bank", "telecom", "tax"):
        summary = res[party]["components"]["psi"]
        assert summary["intersection_size"] == len(common)
        assert "outputs" not in summary
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("job", "edit", "message"),
    [
        (
            CARDINALITY.replace("      tax: {dataset: payers, id: cid}\n", ""),
            ("cardinality_only: true", "cardinality_only: true, protocol: rr22"),
            "runs on protocol: ecdh",
        ),
        (PAYLOAD, ("protocol: rr22", "protocol: ecdh"), "rr22"),
        (PAYLOAD, ("receivers: [bank]", "receivers: [bank, telecom]"), "one other party"),
        (PAYLOAD, ("[fee, plan]", "[fee, age]"), "differ from the receiver"),
        (PAYLOAD, ("{telecom: [fee, plan]}", "{tax: [fee]}"), "takes no part"),
    ],
)
def test_variants_are_validated(job: str, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_job(job.replace(*edit))


def test_cardinality_only_has_no_output() -> None:
    text = CARDINALITY + "    outputs:\n      intersection: {receivers: [bank]}\n"
    with pytest.raises(ConfigError, match="reveals no members"):
        parse_job(text)


STREAMED = """\
name: t
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: cid}
      telecom: {dataset: subs, id: cid}
    params: {protocol: PROTOCOL}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [age], telecom: [plan]}
"""


def test_rr22_streams_parquet_and_csv_to_the_same_output_as_ecdh(tmp_path: Path) -> None:
    import pyarrow as pa

    n = 3000
    bank = pa.table({"cid": [f"c{i}" for i in range(0, 2 * n, 2)], "age": list(range(n))})
    pq.write_table(bank, tmp_path / "b.parquet", row_group_size=700)
    (tmp_path / "t.csv").write_text(
        "cid,plan\n" + "".join(f"c{i},p{i % 4}\n" for i in range(n)) + "c2,dup\n"
    )
    args = [f"bank.customers={tmp_path / 'b.parquet'}", f"telecom.subs={tmp_path / 't.csv'}"]
    outs = {}
    for protocol in ("ecdh", "rr22"):
        job = parse_job(STREAMED.replace("PROTOCOL", protocol))
        res = run_local(job, datasets_from_args(job, args), tmp_path / protocol)
        outs[protocol] = {
            p: pq.read_table(res[p]["components"]["psi"]["outputs"]["intersection"]["path"])
            for p in ("bank", "telecom")
        }
    for p in ("bank", "telecom"):
        assert outs["rr22"][p].equals(outs["ecdh"][p])
    assert outs["rr22"]["bank"].num_rows == n // 2
    assert outs["rr22"]["telecom"].num_rows == n // 2 + 1  # c2 twice at telecom


def test_rr22_streamed_ids_refuse_a_missing_id(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"cid": ["c1", None], "age": [1, 2]}), tmp_path / "b.parquet")
    (tmp_path / "t.csv").write_text("cid,plan\nc1,p\n")
    job = parse_job(STREAMED.replace("PROTOCOL", "rr22"))
    args = [f"bank.customers={tmp_path / 'b.parquet'}", f"telecom.subs={tmp_path / 't.csv'}"]
    with pytest.raises(DataError, match="empty IDs"):
        run_local(job, datasets_from_args(job, args), tmp_path / "out")
