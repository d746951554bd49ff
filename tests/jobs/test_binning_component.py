"""The ``binning`` component: WOE/IV of both parties' features against the bank's label,
against the same binning on the joined plaintext."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rainbridge.components.binning import bin_index, chimerge, quantile_edges, woe_iv
from rainbridge.data import inspect_dataset, read_columns
from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.errors import JobSpecError
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import run_local

JOB = """
name: iv
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {dataset: customers, id: customer_id}
      telecom: {dataset: subscribers, id: customer_id}
    outputs:
      intersection:
        receivers: [bank, telecom]
        columns:
          bank: [max_overdue_days, default_12m]
          telecom: [tenure_months, late_payments_12m]
  - id: bins
    type: binning
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
      tax: {role: dealer}
    params:
      label: {party: bank, column: default_12m}
      features: {bank: [max_overdue_days], telecom: [tenure_months, late_payments_12m]}
      bins: 5
      min_iv: 0.02
    outputs:
      result: {receivers: [RECEIVER], format: csv}
"""


def _joined(tmp: Path) -> tuple[dict, dict[str, np.ndarray]]:
    paths = write_demo_data(tmp / "data", DemoSizes(population=6000, bank=3000, telecom=3000,
                                                    tax=1000))  # fmt: skip
    ds = {
        "bank": {"customers": inspect_dataset("customers", paths["bank"], "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", paths["telecom"], "customer_id")},
    }
    b = read_columns(ds["bank"]["customers"], ["customer_id", "max_overdue_days", "default_12m"])
    t = read_columns(ds["telecom"]["subscribers"],
                     ["customer_id", "tenure_months", "late_payments_12m"])  # fmt: skip
    ids = [x.column("customer_id").to_numpy(zero_copy_only=False) for x in (b, t)]
    common = pa.array(np.intersect1d(*ids))
    b = b.filter(pc.is_in(b.column("customer_id"), value_set=common)).sort_by("customer_id")
    t = t.filter(pc.is_in(t.column("customer_id"), value_set=common)).sort_by("customer_id")
    cols = {c: b.column(c).to_numpy().astype(float) for c in ("max_overdue_days", "default_12m")}
    cols |= {
        c: t.column(c).to_numpy().astype(float) for c in ("tenure_months", "late_payments_12m")
    }
    return ds, cols


@pytest.mark.parametrize("receiver", ["bank", "telecom"])
def test_iv_matches_the_plaintext_binning(tmp_path: Path, receiver: str) -> None:
    ds, cols = _joined(tmp_path)
    res = run_local(parse_job(JOB.replace("RECEIVER", receiver)), ds, tmp_path / "out")
    out = res[receiver]["components"]["bins"]
    other = "telecom" if receiver == "bank" else "bank"
    assert "result" not in res[other]["components"]["bins"]
    y = cols["default_12m"]
    for feat, owner in (("max_overdue_days", "bank"), ("tenure_months", "telecom"),
                        ("late_payments_12m", "telecom")):  # fmt: skip
        edges = quantile_edges(cols[feat], 5)
        keys = bin_index(cols[feat], edges)
        pos = np.bincount(keys[y == 1], minlength=len(edges) - 1)
        neg = np.bincount(keys[y == 0], minlength=len(edges) - 1)
        _, iv_bins = woe_iv(pos, neg)
        assert out["iv"][f"{owner}.{feat}"] == pytest.approx(iv_bins.sum())
        mine = [r for r in out["result"] if r["feature"] == feat]
        assert [r["positives"] for r in mine] == pos.tolist()
        # bin edges only where the receiver owns the feature
        assert all(("[" in r["bin"]) == (owner == receiver) for r in mine)
    assert set(out["selected"]) == {k for k, v in out["iv"].items() if v >= 0.02}


def test_chimerge_merges_the_most_similar_neighbours() -> None:
    pos = np.array([10, 11, 50, 52, 5])
    neg = np.array([90, 89, 50, 48, 95])
    assert chimerge(pos, neg, 3) == [[0, 1], [2, 3], [4]]


def test_chimerge_in_a_job(tmp_path: Path) -> None:
    ds, cols = _joined(tmp_path)
    job = JOB.replace("RECEIVER", "bank").replace(
        "bins: 5", "bins: 3\n      method: chimerge\n      init_bins: 10"
    )
    out = run_local(parse_job(job), ds, tmp_path / "out")["bank"]["components"]["bins"]
    for feat in ("tenure_months",):
        rows = [r for r in out["result"] if r["feature"] == feat]
        assert len(rows) <= 3 and sum(r["count"] for r in rows) == len(cols[feat])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("label: {party: bank", "label: {party: tax"), "label.party"),
        (("receivers: [RECEIVER]", "receivers: [tax]"), "one receiver, a data party"),
        (("bins: 5", "bins: 5\n      method: chimerge\n      init_bins: 3"), "init_bins"),
    ],
)
def test_bad_binning_specs_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        parse_job(JOB.replace(*change).replace("RECEIVER", "bank"))
