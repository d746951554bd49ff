"""The model walk-through (examples/models) between real nodes: a hospital and a lab train a
SecureBoost model and score a new batch in one job, then score the same batch again with the
registered model in a job of its own; versions, retirement and their refusals."""

from __future__ import annotations

import csv
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "models"
NAME = "tumour-risk/sgb"


def prepare_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("models_exampleprepare", EXAMPLE / "prepare.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _job(tmp: Path, name: str) -> Path:
    """An example job made quick for a test: a 1024-bit key (tests only) and 3 trees."""
    text = (EXAMPLE / name).read_text()
    assert "key_bits: 2048" in text and "trees: 10" in text
    out = tmp / name
    out.write_text(
        text.replace("key_bits: 2048", "key_bits: 1024").replace("trees: 10", "trees: 3")
    )
    return out


def _scores(path: Path) -> dict[str, float]:
    """The scores of a predictions file, by patient_id."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "patient_id" in rows[0] and "score" in rows[0], rows[:1]
    return {r["patient_id"]: float(r["score"]) for r in rows}


def _ledger(f: Federation, node: str, job_id: str, kind: str) -> list[dict[str, Any]]:
    out = f.cli_json("ledger", "show", "--job", job_id, "--limit", "500", node=node)
    return [st["entry"]["body"] for st in out["entries"] if st["entry"]["kind"] == kind]


def _assert_no_output(f: Federation, job_id: str) -> None:
    """Nothing of ``job_id`` was written at either node."""
    for n in ("hospital", "lab"):
        out = f.nodes[n].dir / "outputs" / job_id
        assert not out.exists() or not any(out.iterdir()), (n, sorted(out.iterdir()))


@pytest.fixture()
def federation(tmp_path: Path) -> Iterator[tuple[Federation, ModuleType]]:
    """The hospital and the lab with the example's four datasets, each granting the other
    psi, train_sgb and predict on them."""
    prep = prepare_module()
    paths = prep.prepare(tmp_path / "data")
    f = Federation(tmp_path, ["hospital", "lab"], timeout=20)
    f.start()
    try:
        f.pin_all()
        datasets = (("hospital", "patients", "hospital_patients"),
                    ("hospital", "new_patients", "hospital_new_patients"),
                    ("lab", "results", "lab_results"),
                    ("lab", "new_results", "lab_new_results"))  # fmt: skip
        columns = {
            "hospital": ",".join(["patient_id", *prep.hospital_features(), "malignant"]),
            "lab": ",".join(["patient_id", *prep.lab_features()]),
        }
        for owner, ds, file in datasets:
            f.cli("dataset", "add", ds, "--path", str(paths[file]), "--id", "patient_id",
                  node=owner)  # fmt: skip
            peer = "lab" if owner == "hospital" else "hospital"
            f.cli("grant", "add", ds, "--peer", peer, "--columns", columns[owner],
                  "--components", "psi,train_sgb,predict", "--receivers", "hospital,lab",
                  node=owner)  # fmt: skip
        yield f, prep
    finally:
        f.stop()


def test_registered_model_scores_the_new_batch_as_its_training_job_did(
    federation: tuple[Federation, ModuleType], tmp_path: Path
) -> None:
    f, prep = federation
    # job A: train, align the new batch, score it with the model just trained
    a = f.cli_json("job", "submit", str(_job(tmp_path, "train_and_score.yaml")), node="hospital")
    assert a["status"] == "succeeded", a
    in_job = tmp_path / "in_job.csv"
    f.cli("job", "output", a["id"], "score", "predictions", "--out", str(in_job), node="hospital")
    expected = _scores(in_job)
    assert len(expected) > 90  # the new batch less the patients one party lacks
    for node in ("hospital", "lab"):
        (m,) = f.cli_json("model", "list", node=node)
        assert (m["id"], m["name"], m["version"]) == (f"{a['id']}.sgb", NAME, 1), m

    # job B: the registered version scores the same batch, in a job of its own
    out = tmp_path / "scores.csv"
    b = f.cli_json("model", "score", f"{NAME}@1", "--dataset", "hospital=new_patients",
                   "--dataset", "lab=new_results", "--label", "malignant", "--out", str(out),
                   node="hospital")  # fmt: skip
    assert (b["model"], b["version"], b["rows"]) == (f"{a['id']}.sgb", 1, len(expected)), b
    assert _scores(out) == expected  # exact: the same parts on the same rows
    in_job_result = f.cli_json("job", "result", a["id"], node="hospital")["result"]
    assert b["result"]["auc"] == in_job_result["components"]["score"]["result"]["auc"]
    assert 0.9 < b["result"]["auc"] <= 1.0
    # the hospital evaluates the saved scores alone, in one process
    ev = f.cli_json("run", str(EXAMPLE / "evaluate.yaml"), "--local", "--dataset",
                    f"hospital.scores={out}", "--out", str(tmp_path / "evaluation"))  # fmt: skip
    evaluated = ev["hospital"]["components"]["evaluate"]["result"]
    assert (evaluated["auc"], evaluated["ks"]) == (b["result"]["auc"], b["result"]["ks"])
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    reference = roc_auc_score([int(r["label"]) for r in rows], [float(r["score"]) for r in rows])
    assert b["result"]["auc"] == pytest.approx(reference, abs=1e-12)
    for node in ("hospital", "lab"):
        (used,) = _ledger(f, node, b["job"], "model_used")
        assert (used["model"], used["name"], used["version"]) == (f"{a['id']}.sgb", NAME, 1)

    # without --key: the features each party gives
    need = f.cli_json("model", "predict", NAME, node="hospital")
    assert need["features"] == {
        "hospital": prep.hospital_features(),
        "lab": prep.lab_features(),
    }
    text = f.cli("model", "predict", NAME, node="lab").stdout
    assert "at hospital: mean_radius" in text and "at lab: compactness_error" in text


def test_versions_and_retirement_are_refused_by_the_party_that_retired(
    federation: tuple[Federation, ModuleType], tmp_path: Path
) -> None:
    f, _ = federation
    train = _job(tmp_path, "train.yaml")
    v1 = f.cli_json("job", "submit", str(train), node="hospital")
    v2 = f.cli_json("job", "submit", str(train), node="hospital")
    assert v1["status"] == v2["status"] == "succeeded", (v1, v2)
    for node in ("hospital", "lab"):
        rows = f.cli_json("model", "list", NAME, node=node)
        assert [(r["id"], r["version"]) for r in rows] == [
            (f"{v1['id']}.sgb", 1),
            (f"{v2['id']}.sgb", 2),
        ]
        # the name alone is its latest version in use
        assert f.cli_json("model", "show", NAME, node=node)["version"] == 2
    score = ["--dataset", "hospital=new_patients", "--dataset", "lab=new_results"]

    # v1 still scores while both hold it in use
    out = f.cli_json("model", "score", f"{NAME}@1", *score, node="hospital")
    assert out["version"] == 1 and out["rows"] > 90

    # the lab retires v2: the hospital naming v2 is refused by the lab, before anything runs
    f.cli("model", "retire", f"{NAME}@2", node="lab")
    r = f.cli("model", "score", f"{NAME}@2", *score, "--json", node="hospital", check=False)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert f"{NAME} v2" in r.stderr and "retired" in r.stderr, r.stderr
    # at the lab the name alone is now v1, at the hospital v2: a job naming the model by its
    # name alone would score with parts of two versions; the parties' check refuses it
    assert f.cli_json("model", "show", NAME, node="lab")["version"] == 1
    ids = ["--id", "hospital=patient_id", "--id", "lab=patient_id"]
    spec = json.loads(f.cli("model", "score", f"{NAME}@1", *score, *ids, "--print-job",
                            "--json", node="hospital").stdout)  # fmt: skip
    spec["components"][1]["params"]["model"] = NAME
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(spec))
    r = f.cli("job", "submit", str(mixed), "--json", node="hospital", check=False)
    row = json.loads(r.stdout)
    # both parties refuse with the same reason. A party whose refusal was overtaken by the
    # other's abort may keep only the other's public summary (its details stay at the
    # other's node), but the party that refused first keeps its own reason once its worker's
    # result is in: wait for that, then check both records
    assert r.returncode == 6 and row["status"] in ("failed", "aborted"), (r.returncode, row)
    deadline = time.monotonic() + 30
    while True:
        rows = {n: f.cli_json("job", "status", row["id"], node=n) for n in ("hospital", "lab")}
        errors = {n: str(x.get("error") or "") for n, x in rows.items()}
        full = [e for e in errors.values() if "parts of different models" in e]
        settled = all(x["status"] in ("failed", "aborted") for x in rows.values())
        if (settled and full) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert full, errors
    for n, e in errors.items():
        other = "lab" if n == "hospital" else "hospital"
        assert e in full or e.startswith(f"{other}: failed (data error"), (n, e)
    for e in full:
        assert f"{v2['id']}.sgb" in e and f"{v1['id']}.sgb" in e, e
    _assert_no_output(f, row["id"])

    # the lab retires v1 too: refused, no output anywhere; retiring again is a clear error
    f.cli("model", "retire", f"{NAME}@1", node="lab")
    before = {j["id"] for j in f.cli_json("job", "list", node="hospital")}
    scores = tmp_path / "refused.csv"
    r = f.cli("model", "score", f"{NAME}@1", *score, "--out", str(scores), node="hospital",
              check=False)  # fmt: skip
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert f"{NAME} v1" in r.stderr and "retired" in r.stderr, r.stderr
    assert not scores.exists()
    (job,) = [j for j in f.cli_json("job", "list", node="hospital") if j["id"] not in before]
    assert job["status"] == "refused" and "retired at 'lab'" in job["error"], job
    _assert_no_output(f, job["id"])
    r = f.cli("model", "retire", f"{NAME}@1", node="lab", check=False)
    assert r.returncode == 2 and "retired already" in r.stderr, (r.returncode, r.stderr)
