"""The job format: valid jobs load, malformed ones name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainbridge.errors import JobSpecError
from rainbridge.jobs.spec import load_job, parse_job

GOOD = """\
name: align
parties: [bank, telecom]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    params:
      curve: ristretto255
    outputs:
      intersection:
        receivers: [bank]
        columns: {bank: [age]}
"""


def test_good_job_loads_and_has_stable_digest() -> None:
    job = parse_job(GOOD)
    assert job.parties == ["bank", "telecom"]
    assert job.datasets_of("bank") == {"customers"}
    assert job.components[0].outputs["intersection"].format == "parquet"
    assert job.digest() == parse_job(GOOD).digest()
    assert parse_job(job.canonical_json()).digest() == job.digest()


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (GOOD.replace("curve: ristretto255", "curve: p256"), 10, "params.curve"),
        (GOOD.replace("type: psi", "type: nope"), 5, "type"),
        (GOOD.replace("      telecom: {dataset: subscribers, id: customer_id}\n", ""), 6, "inputs"),
        (GOOD.replace("receivers: [bank]", "receivers: [tax]"), 13, "receivers"),
        (GOOD.replace("parties: [bank, telecom]", "parties: [bank]"), 8, "telecom"),
        (GOOD.replace("  - id: psi", "  - id: psi\n    colour: red"), 5, "colour"),
        (GOOD.replace("{dataset: customers, id: customer_id}", "{id: customer_id}"), 7, "bank"),
        (GOOD.replace("name: align", "name: 'bad name!'"), 1, "name"),
        (GOOD.replace("params:\n      curve: ristretto255", "params:\n      curve: [oops"), 11, ""),
        (GOOD + "    params2: 1\n", 15, "params2"),
    ],
)
def test_malformed_job_names_line_and_field(text: str, line: int, field: str) -> None:
    with pytest.raises(JobSpecError) as exc:
        parse_job(text, source="job.yaml")
    msg = str(exc.value)
    assert msg.startswith(f"job.yaml:{line}:"), msg
    assert field in msg


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="mapping"):
        parse_job("- a\n- b\n")
    with pytest.raises(JobSpecError, match="does not exist"):
        load_job(tmp_path / "none.yaml")


def test_json_job(tmp_path: Path) -> None:
    job = parse_job(GOOD)
    p = tmp_path / "job.json"
    p.write_text(job.canonical_json())
    assert load_job(p) == job


def test_from_reference_must_be_an_earlier_output() -> None:
    text = (
        GOOD
        + """\
  - id: again
    type: psi
    inputs:
      bank: {from: psi.intersection, id: customer_id}
      telecom: {from: psi.intersection, id: customer_id}
"""
    )
    with pytest.raises(JobSpecError, match="does not receive"):
        parse_job(text)
    ok = text.replace("receivers: [bank]", "receivers: [bank, telecom]")
    assert parse_job(ok).components[1].inputs["bank"].from_ == "psi.intersection"
