"""Trainers' parameters refused at the checks, before any message: a negative seed, the label
named as a feature, a feature named twice; a new row far out of the training range is scored
the way training saw its rows (standardised, clipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.protocols.fl.vertical_lr import MAX_ABS_FEATURE, standardise

ROOT = Path(__file__).resolve().parents[2]
SGB = (ROOT / "examples" / "jobs" / "sgb-2party.yaml").read_text()
FEDAVG = (ROOT / "examples" / "jobs" / "fedavg-3banks.yaml").read_text()


@pytest.mark.parametrize(
    ("job", "change", "why"),
    [
        (SGB, ("subsample: 0.8", "subsample: 0.8\n      seed: -1"), "seed"),
        (SGB, ("bank: [age, monthly_income,", "bank: [default_12m, age, monthly_income,"),
         "label column 'default_12m' is not a feature too"),
        (SGB, ("[tenure_months, monthly_spend,", "[tenure_months, tenure_months,"),
         "feature 'tenure_months' of 'telecom' is named twice"),
    ],
)  # fmt: skip
def test_bad_trainer_params_are_refused(job: str, change: tuple[str, str], why: str) -> None:
    assert change[0] in job
    with pytest.raises(JobSpecError, match=why):
        parse_job(job.replace(*change))


def test_a_negative_fedavg_seed_is_refused() -> None:
    assert "rounds:" in FEDAVG
    with pytest.raises(JobSpecError, match="seed"):
        parse_job(FEDAVG.replace("rounds:", "seed: -5\n      rounds:", 1))


def test_scoring_standardises_and_clips_as_training() -> None:
    x = np.array([[0.0, 1.0], [1e9, -1e9]])
    got = standardise(x, [0.0, 1.0], [2.0, 1.0])
    assert got[0].tolist() == [0.0, 0.0]
    assert got[1].tolist() == [MAX_ABS_FEATURE, -MAX_ABS_FEATURE]
