"""Write the model walk-through's data: a public dataset split between a hospital and a lab.

scikit-learn's breast cancer data (569 patients, 30 measurements of a tumour's cell nuclei,
malignant or benign) is split by columns and by rows:

* the hospital holds the label ``malignant`` (1 = malignant) and the 10 "mean" measurements
  and the first 5 "error" ones; the lab holds the other 15;
* about four patients in five form the training set (``hospital_patients.csv``,
  ``lab_results.csv``), the others a new batch to score later (``hospital_new_patients.csv``,
  ``lab_new_results.csv``); the hospital's new batch keeps the label, so the scores can be
  evaluated;
* each party misses a few patients the other has, as real institutions do: the PSI finds
  the common ones.

Every file has the ID column ``patient_id``. The split is fixed by a seed: every run writes
the same files. Usage: ``python prepare.py [OUT_DIR]`` (default ``data``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

SEED = 7
#: share of the patients in the training set; the rest are the new batch
TRAIN_SHARE = 0.8
#: share of the patients one party lacks (drawn apart at each party)
MISSING_SHARE = 0.03


def column_name(feature: str) -> str:
    """``mean radius`` -> ``mean_radius``: a column name the job files can use bare."""
    return feature.replace(" ", "_")


def hospital_features() -> list[str]:
    names = [column_name(f) for f in load_breast_cancer().feature_names]
    return names[:15]


def lab_features() -> list[str]:
    names = [column_name(f) for f in load_breast_cancer().feature_names]
    return names[15:]


def _write(path: Path, header: list[str], ids: list[str], cols: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for key, row in zip(ids, cols.tolist(), strict=True):
            # repr keeps every float exactly; the label is written as an integer
            w.writerow([key, *(v if isinstance(v, int) else repr(v) for v in row)])


def prepare(out: Path) -> dict[str, Path]:
    """Write the four CSV files under ``out``; returns their paths by dataset name."""
    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=np.float64)
    # scikit-learn's target is 1 for benign; the hospital's label is 1 for malignant
    malignant = (1 - np.asarray(data.target)).astype(np.int64)
    n = x.shape[0]
    ids = [f"P{i:05d}" for i in range(1, n + 1)]
    rng = np.random.default_rng(SEED)
    order = rng.permutation(n)
    cut = round(TRAIN_SHARE * n)
    batches = {"train": np.sort(order[:cut]), "new": np.sort(order[cut:])}
    lacks = {
        party: set(rng.choice(n, size=int(MISSING_SHARE * n), replace=False).tolist())
        for party in ("hospital", "lab")
    }
    hosp, lab = hospital_features(), lab_features()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        ("hospital", "train"): "hospital_patients.csv",
        ("lab", "train"): "lab_results.csv",
        ("hospital", "new"): "hospital_new_patients.csv",
        ("lab", "new"): "lab_new_results.csv",
    }
    paths: dict[str, Path] = {}
    for (party, batch), file in files.items():
        rows = [int(i) for i in batches[batch] if int(i) not in lacks[party]]
        keys = [ids[i] for i in rows]
        if party == "hospital":
            header = ["patient_id", *hosp, "malignant"]
            table = np.concatenate([x[rows, :15], malignant[rows, None]], axis=1).astype(object)
            table[:, -1] = malignant[rows].tolist()
        else:
            header = ["patient_id", *lab]
            table = x[rows, 15:].astype(object)
        _write(out / file, header, keys, table)
        paths[file.removesuffix(".csv")] = out / file
    return paths


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path("data")
    for name, path in prepare(out).items():
        with path.open() as fh:
            rows = sum(1 for _ in fh) - 1
        print(f"{name:24} {rows:4} rows  {path}")


if __name__ == "__main__":
    main(sys.argv)
