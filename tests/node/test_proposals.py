"""What a node accepts: only its own registered datasets, only known peers, with reasons."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from node_helpers import spec

from rainbridge.data import DatasetRef
from rainbridge.errors import AuthorizationError, DataError
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.proposals import check_job

CUSTOMERS = DatasetRef(
    "customers", "/d/c.csv", "csv", "customer_id", {"customer_id": "string", "age": "int64"}, 3
)


@pytest.fixture(autouse=True)
def customers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registered file, present (a node checks that it still is)."""
    path = tmp_path / "c.csv"
    path.write_text("customer_id,age\na,1\nb,2\nc,3\n")
    monkeypatch.setattr(sys.modules[__name__], "CUSTOMERS", replace(CUSTOMERS, path=str(path)))
    return path


def job(parties: dict[str, str], receivers: list[str] | None = None) -> JobSpec:
    return JobSpec.model_validate(spec(parties, receivers))


def check(j: JobSpec, initiator: str = "telecom", peers: tuple[str, ...] = ("telecom",)) -> None:
    check_job(j, node="bank", initiator=initiator, peers=peers, datasets={"customers": CUSTOMERS})


def test_accepts_a_job_on_registered_data_from_a_known_peer() -> None:
    check(job({"bank": "customers", "telecom": "subs"}))
    check(job({"bank": "customers", "telecom": "subs"}), initiator="bank")


def test_refuses_an_unknown_initiator() -> None:
    with pytest.raises(AuthorizationError, match="'mallory' is not a known peer of 'bank'"):
        check(job({"bank": "customers", "mallory": "x"}), initiator="mallory")


def test_refuses_an_unknown_party() -> None:
    j = job({"bank": "customers", "telecom": "subs", "tax": "t"})
    with pytest.raises(AuthorizationError, match="'tax' is not a known peer of 'bank'"):
        check(j)


def test_refuses_a_job_it_is_not_part_of() -> None:
    with pytest.raises(AuthorizationError, match="'bank' is not a party"):
        check(job({"telecom": "subs", "tax": "t"}), peers=("telecom", "tax"))


def test_refuses_an_initiator_outside_the_job() -> None:
    with pytest.raises(AuthorizationError, match="initiator 'tax' is not a party"):
        check(job({"bank": "customers", "telecom": "subs"}), "tax", ("telecom", "tax"))


def test_refuses_an_unregistered_dataset_naming_it() -> None:
    with pytest.raises(AuthorizationError, match="dataset 'accounts' is not registered at 'bank'"):
        check(job({"bank": "accounts", "telecom": "subs"}))


def test_refuses_a_missing_column_without_revealing_the_path() -> None:
    j = JobSpec.model_validate(
        {
            **spec({"bank": "customers", "telecom": "subs"}),
            "components": [
                {
                    "id": "psi",
                    "type": "psi",
                    "inputs": {
                        "bank": {"dataset": "customers", "id": "phone"},
                        "telecom": {"dataset": "subs", "id": "phone"},
                    },
                }
            ],
        }
    )
    with pytest.raises(DataError, match="'customers' at 'bank' has no column 'phone'") as info:
        check(j)
    assert "c.csv" not in str(info.value)  # a refusal goes back to the peer


def test_refuses_a_missing_output_column() -> None:
    j = JobSpec.model_validate(
        {
            **spec({"bank": "customers", "telecom": "subs"}),
            "components": [
                {
                    **spec({"bank": "customers", "telecom": "subs"})["components"][0],
                    "outputs": {
                        "intersection": {"receivers": ["bank"], "columns": {"bank": ["income"]}}
                    },
                }
            ],
        }
    )
    with pytest.raises(DataError, match="no column 'income'"):
        check(j)
