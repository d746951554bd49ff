"""Every party checks its inputs before the first message, and a job that fails anywhere
leaves no output anywhere (local simulation; tests/integration has the same between nodes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict

from rainbridge.components import _REGISTRY as REGISTRY
from rainbridge.components import Component, ComponentContext, list_components, register
from rainbridge.data import DatasetRef, inspect_dataset
from rainbridge.errors import DataError
from rainbridge.jobs import parse_job
from rainbridge.jobs.execute import check_inputs
from rainbridge.jobs.local import run_local
from rainbridge.net.local import LocalChannel

PSI3 = """\
name: align
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
      tax: {dataset: taxpayers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [BANK_COLS]}
"""


def write(tmp: Path, party: str, ids: range, extra: str = "age", value: str = "{i}") -> Path:
    p = tmp / f"{party}.csv"
    p.write_text(f"customer_id,{extra}\n" + "".join(f"c{i},{value.format(i=i)}\n" for i in ids))
    return p


def three(tmp: Path) -> dict[str, dict[str, DatasetRef]]:
    names = {"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"}
    ranges = {"bank": range(0, 60), "telecom": range(30, 90), "tax": range(0, 100, 2)}
    return {
        p: {names[p]: inspect_dataset(names[p], write(tmp, p, ranges[p]), "customer_id")}
        for p in names
    }


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


@pytest.fixture
def no_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any channel is made: the refusal must come before any message."""

    def mesh(*a: Any, **k: Any) -> Any:
        raise AssertionError("a channel was opened")

    monkeypatch.setattr(LocalChannel, "mesh", mesh)


def test_a_missing_output_column_is_refused_before_any_message(
    tmp_path: Path, no_channels: None
) -> None:
    job = parse_job(PSI3.replace("BANK_COLS", "missing_col"))
    with pytest.raises(DataError) as exc:
        run_local(job, three(tmp_path), tmp_path / "out")
    msg = str(exc.value)
    for part in ("'customers'", "'bank'", "'missing_col'", "component 'psi'", "'intersection'"):
        assert part in msg, msg
    assert not (tmp_path / "out").exists()


def test_a_column_an_earlier_output_will_not_carry_is_refused(
    tmp_path: Path, no_channels: None
) -> None:
    job = parse_job(
        PSI3.replace("BANK_COLS", "age")
        + """\
  - id: eval
    type: evaluate
    inputs:
      bank: {from: psi.intersection}
    params: {score: age, label: default_12m}
    outputs:
      report: {receivers: [bank]}
"""
    )
    with pytest.raises(DataError) as exc:
        run_local(job, three(tmp_path), tmp_path / "out")
    msg = str(exc.value)
    assert "'psi.intersection' at 'bank' has no column 'default_12m'" in msg, msg
    assert "component 'eval'" in msg
    assert not (tmp_path / "out").exists()


def test_a_file_changed_or_gone_since_registration_is_refused(tmp_path: Path) -> None:
    job = parse_job(PSI3.replace("BANK_COLS", "age"))
    data = three(tmp_path)
    check_inputs(job, "bank", data["bank"])
    write(tmp_path, "bank", range(10), extra="income")  # age is gone from the file
    with pytest.raises(DataError, match="'customers' at 'bank' has no column 'age'"):
        check_inputs(job, "bank", data["bank"])
    (tmp_path / "bank.csv").unlink()
    with pytest.raises(DataError, match="'customers' at 'bank' cannot be read") as exc:
        check_inputs(job, "bank", data["bank"])
    assert "bank.csv" not in str(exc.value)  # at a node, the refusal goes to the peer
    with pytest.raises(DataError, match="'customers' is not registered at 'bank'"):
        check_inputs(job, "bank", {})


def test_the_columns_each_component_reads_are_checked(tmp_path: Path) -> None:
    """Filter, payload, feature and group-by columns, not only IDs and outputs."""
    bank = inspect_dataset("customers", write(tmp_path, "bank", range(5)), "customer_id")
    tel = inspect_dataset("subs", write(tmp_path, "telecom", range(5), "fee"), "customer_id")
    filtered = parse_job(
        """\
name: f
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subs, id: customer_id}
    params: {filters: {bank: [{column: income, op: ">", value: 3}]}}
"""
    )
    with pytest.raises(DataError, match="no column 'income': component 'psi' uses it in a filter"):
        check_inputs(filtered, "bank", {"customers": bank})
    check_inputs(filtered, "telecom", {"subs": tel})
    # the payload reaches the receiver's output: a later step may read it there
    payload = parse_job(
        """\
name: p
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subs, id: customer_id}
    params: {protocol: rr22, payload: {telecom: [fee]}}
    outputs:
      intersection: {receivers: [bank], columns: {bank: [age]}}
  - id: eval
    type: evaluate
    inputs:
      bank: {from: psi.intersection}
    params: {score: fee, label: age}
    outputs:
      report: {receivers: [bank]}
"""
    )
    check_inputs(payload, "bank", {"customers": bank})
    check_inputs(payload, "telecom", {"subs": tel})
    with pytest.raises(DataError, match="'subs' at 'telecom' has no column 'fee'"):
        plain = inspect_dataset("subs", write(tmp_path, "t2", range(5), "plan"), "customer_id")
        check_inputs(payload, "telecom", {"subs": plain})
    stats = parse_job(
        """\
name: s
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subs, id: customer_id}
    outputs:
      intersection: {receivers: [bank, telecom], columns: {bank: [age], telecom: [fee]}}
  - id: stats
    type: stats
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
    params:
      columns: {bank: [age]}
      group_by: {party: telecom, column: plan}
    outputs:
      result: {receivers: [bank]}
"""
    )
    check_inputs(stats, "bank", {"customers": bank})
    with pytest.raises(DataError, match="no column 'plan': component 'stats' uses it as a group"):
        check_inputs(stats, "telecom", {"subs": tel})


EVAL_AFTER_PSI = """\
name: scored
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns: {bank: [score, label]}
  - id: eval
    type: evaluate
    inputs:
      bank: {from: psi.intersection}
    outputs:
      report: {receivers: [bank]}
"""


def test_a_failure_after_an_earlier_component_leaves_no_output_anywhere(tmp_path: Path) -> None:
    bank = tmp_path / "bank.csv"
    # label 2 is not binary: the evaluation at the bank fails after the PSI succeeded
    bank.write_text("customer_id,score,label\n" + "".join(f"c{i},0.{i},2\n" for i in range(50)))
    tel = write(tmp_path, "telecom", range(20, 80))
    data = {
        "bank": {"customers": inspect_dataset("customers", bank, "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", tel, "customer_id")},
    }
    out = tmp_path / "out"
    with pytest.raises(DataError, match="must hold 0 and 1 only"):
        run_local(parse_job(EVAL_AFTER_PSI), data, out)
    assert files_under(out) == []  # neither party kept its PSI output
    assert not out.exists()
    # the same job with binary labels succeeds, and both keep everything
    bank.write_text(
        "customer_id,score,label\n" + "".join(f"c{i},0.{i},{i % 2}\n" for i in range(50))
    )
    data["bank"]["customers"] = inspect_dataset("customers", bank, "customer_id")
    res = run_local(parse_job(EVAL_AFTER_PSI), data, out)
    got = [Path(o["path"]) for r in res.values() for c in r["components"].values()
           for o in c.get("outputs", {}).values()]  # fmt: skip
    assert sorted(got) == files_under(out)
    assert {p.relative_to(out).as_posix() for p in got} == {
        "bank/psi.intersection.parquet", "bank/eval.report.parquet",
        "telecom/psi.intersection.parquet",
    }  # fmt: skip
    assert pq.read_table(out / "telecom" / "psi.intersection.parquet").num_rows == 30


# -- components of the tests: a long step between two parties, a failure at one ----------------


class NapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0
    fail_at: str | None = None


class Nap(Component):
    """Both parties exchange a word, rest (or one fails), exchange again; each writes a mark."""

    type_name = "test_nap"
    summary = "test"
    Params = NapParams
    outputs: ClassVar[tuple[str, ...]] = ("mark",)

    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        params = ctx.params
        assert isinstance(params, NapParams)
        (ch,) = ctx.channels.values()
        await ch.send("hi", b"1")
        await ch.recv("hi")
        if params.fail_at == ctx.party:
            raise DataError(f"{ctx.party} gave up")
        await asyncio.sleep(params.seconds)
        await ch.send("bye", b"1")
        await ch.recv("bye", timeout=params.seconds + 5)
        import pyarrow as pa

        written = ctx.write_output("mark", pa.table({"party": [ctx.party]}))
        return {"outputs": {"mark": written}}


@pytest.fixture
def nap() -> Iterator[None]:
    list_components()  # the built-in ones first
    register(Nap)
    try:
        yield
    finally:
        REGISTRY.pop(Nap.type_name, None)


NAP_JOB = (
    PSI3.replace("BANK_COLS", "age")
    + """\
  - id: nap
    type: test_nap
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
    params: PARAMS
    outputs:
      mark: {receivers: [bank, telecom]}
"""
)


def test_a_party_waits_for_a_long_step_elsewhere_then_all_keep_their_outputs(
    tmp_path: Path, nap: None
) -> None:
    # the tax bureau is done after the PSI; the others rest far longer than its patience
    # for a silent peer (10 receive timeouts): their heartbeats keep it waiting
    job = parse_job(NAP_JOB.replace("PARAMS", "{seconds: 3.5}"))
    res = run_local(job, three(tmp_path), tmp_path / "out", timeout=0.3)
    assert res["tax"]["components"]["psi"]["intersection_size"] > 0
    marks = [o["path"] for p in ("bank", "telecom")
             for o in res[p]["components"]["nap"]["outputs"].values()]  # fmt: skip
    assert sorted(Path(m) for m in marks) == [
        tmp_path / "out" / "bank" / "nap.mark.parquet",
        tmp_path / "out" / "telecom" / "nap.mark.parquet",
    ]
    assert len(files_under(tmp_path / "out")) == 4  # and the two PSI outputs
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_a_party_failing_in_a_later_step_removes_every_partys_outputs(
    tmp_path: Path, nap: None
) -> None:
    job = parse_job(NAP_JOB.replace("PARAMS", "{fail_at: telecom}"))
    with pytest.raises(DataError, match="telecom gave up"):
        run_local(job, three(tmp_path), tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def test_an_existing_out_folder_keeps_what_it_held(tmp_path: Path, nap: None) -> None:
    out = tmp_path / "out"
    (out / "bank").mkdir(parents=True)
    (out / "bank" / "notes.txt").write_text("mine")
    job = parse_job(NAP_JOB.replace("PARAMS", "{fail_at: bank}"))
    with pytest.raises(DataError):
        run_local(job, three(tmp_path), out)
    assert files_under(out) == [out / "bank" / "notes.txt"]
