"""What the CLI prints of a job's result and of a component's parameters: the headline
table on a real job's summaries (PSI then SecureBoost, run locally), ``run --local`` through
click, ``components NAME`` and an unknown name; the formatter never fails on odd input and
never rounds beyond its printed digits."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from rainbridge.cli import main
from rainbridge.cli.catalogue import default_text, describe_component, parameter_rows, wrap_cell
from rainbridge.cli.summaries import component_types, describe_result, format_value
from rainbridge.components import get_component
from rainbridge.jobs import parse_job
from rainbridge.jobs.local import datasets_from_args, run_local
from rainbridge.node.api import create_app
from rainbridge.node.config import NodeConfig
from rainbridge.node.service import NodeService
from rainbridge.node.storage import JobRow

JOB = """\
name: headlines
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
        columns:
          bank: [x1, x2, y]
          telecom: [z1]
  - id: sgb
    type: train_sgb
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
    params:
      label: {party: bank, column: y}
      features: {bank: [x1, x2], telecom: [z1]}
      trees: 2
      max_depth: 2
      max_bin: 8
      key_bits: 1024
      seed: 3
    outputs:
      model: {receivers: [bank, telecom]}
      report: {receivers: [bank], format: csv}
"""


def _write_data(tmp: Path) -> list[str]:
    rng = np.random.default_rng(7)
    n = 240
    x = rng.normal(size=(n, 3))
    y = (x @ [1.0, -0.5, 0.8] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    ids = [f"c{i}" for i in range(n)]
    bank = tmp / "bank.csv"
    tel = tmp / "telecom.csv"
    bank.write_text(
        "customer_id,x1,x2,y\n"
        + "".join(f"{ids[i]},{x[i, 0]},{x[i, 1]},{y[i]}\n" for i in range(n - 20))
    )
    tel.write_text("customer_id,z1\n" + "".join(f"{ids[i]},{x[i, 2]}\n" for i in range(20, n)))
    return [f"bank.customers={bank}", f"telecom.subscribers={tel}"]


@pytest.fixture(scope="module")
def job_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("headlines")
    spec = parse_job(JOB)
    results = run_local(spec, datasets_from_args(spec, _write_data(tmp)), tmp / "out")
    return spec, results


def _cells(lines: list[str], component: str) -> dict[str, str]:
    """The table's cells of ``component``'s row, by column title."""
    header = lines[0].split()
    row = next(line.split() for line in lines[1:] if line.split()[:1] == [component])
    return dict(zip(header, row, strict=True))


def test_headlines_of_a_real_job(job_run: tuple[Any, dict[str, Any]]) -> None:
    spec, results = job_run
    bank = results["bank"]["components"]
    metrics = bank["sgb"]["result"]
    lines = describe_result(results["bank"], component_types(spec))
    psi, sgb = _cells(lines, "psi"), _cells(lines, "sgb")
    assert psi["type"] == "psi" and sgb["type"] == "train_sgb"
    assert psi["intersection"] == str(bank["psi"]["intersection_size"]) == "200"
    assert sgb["AUC"] == f"{metrics['auc']:.4f}" and sgb["KS"] == f"{metrics['ks']:.4f}"
    assert abs(float(sgb["AUC"]) - metrics["auc"]) <= 0.5e-4
    assert sgb["rows"] == "200" and sgb["trees"] == "2" and sgb["rounds"] == "2"
    assert sgb["seconds"] == f"{bank['sgb']['seconds']:.3f}"
    assert psi["AUC"] == "-"
    # each output on its own line under its component: name, rows, where
    for cid, summary in bank.items():
        for name, out in summary["outputs"].items():
            assert any(
                line.split() == [name, f"{out['rows']:,}", "rows", "->", out["path"]]
                for line in lines
            ), (cid, name)
    assert lines[-1].startswith(f"sent {results['bank']['bytes_sent']:,} B, received ")

    # the telecom holds no label: no metric column, only its rows, trees' rounds and time
    tel = describe_result(results["telecom"], component_types(spec))
    assert "AUC" not in tel[0].split()
    assert _cells(tel, "sgb")["rounds"] == "2"


def test_types_come_from_the_spec_dict_too(job_run: tuple[Any, dict[str, Any]]) -> None:
    spec, results = job_run
    assert (
        component_types(spec.to_dict())
        == component_types(spec)
        == {
            "psi": "psi",
            "sgb": "train_sgb",
        }
    )
    # without a spec the type is shown as unknown, the metrics all the same
    assert _cells(describe_result(results["bank"]), "sgb")["type"] == "-"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
summaries = st.dictionaries(
    st.sampled_from(["rows", "auc", "seconds", "outputs", "result", "intersection_size", "x"]),
    json_values | st.dictionaries(st.sampled_from(["auc", "ks", "rows", "path"]), json_values),
)


@given(
    st.dictionaries(
        st.sampled_from(["components", "bytes_sent", "bytes_received", "seconds"]),
        json_values | st.dictionaries(st.text(max_size=4), summaries),
    )
    | json_values
)
def test_odd_results_never_fail(result: Any) -> None:
    lines = describe_result(result, {"a": "psi"})
    assert all(isinstance(line, str) for line in lines)
    assert lines[-1].startswith("sent ")


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_metrics_are_rounded_to_their_printed_digits_only(value: float) -> None:
    assert abs(float(format_value(value, "metric")) - value) <= 0.5e-4 + 1e-9 * abs(value)
    assert abs(float(format_value(value, "seconds")) - value) <= 0.5e-3 + 1e-9 * abs(value)


@given(st.integers(min_value=-(10**15), max_value=10**15) | st.floats(allow_nan=False))
def test_counts_are_printed_exactly(value: float) -> None:
    text = format_value(value, "count")
    if math.isinf(value):
        assert text == str(value)
    else:
        assert float(text.replace(",", "")) == value
        if isinstance(value, int) or value.is_integer():
            assert int(text.replace(",", "")) == int(value)


def test_run_local_prints_the_headline_table(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    args = ["run", str(tmp_path / "job.yaml"), "--local", "--out", str(tmp_path / "out")]
    for pair in _write_data(tmp_path):
        args += ["--dataset", pair]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    bank = lines[lines.index("bank:") + 1 : lines.index("telecom:")]
    table = [line.removeprefix("  ") for line in bank]
    sgb = _cells(table, "sgb")
    # the report the bank received holds the summary's metrics as they are
    report = pacsv.read_csv(tmp_path / "out" / "bank" / "sgb.report.csv").to_pydict()
    metrics = dict(zip(report["metric"], report["value"], strict=True))
    assert sgb["AUC"] == f"{metrics['auc']:.4f}" and sgb["KS"] == f"{metrics['ks']:.4f}"
    assert sgb["type"] == "train_sgb" and sgb["trees"] == "2"
    assert any(line.split()[:3] == ["report", f"{len(metrics)}", "rows"] for line in table)


def test_components_lists_every_parameter_with_its_default() -> None:
    r = CliRunner().invoke(main, ["components", "train_lr"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("train_lr: ")
    params = get_component("train_lr").Params
    for name, field in params.model_fields.items():
        row = next(line for line in lines if line.split()[:1] == [name])
        assert default_text(field) in row, name
    assert "outputs: model, report" in lines
    epochs = next(line for line in lines if line.startswith("epochs "))
    assert epochs.split()[:6] == ["epochs", "int", "10", "≥", "1,", "≤"]


def test_parameter_rows_read_the_schema() -> None:
    rows = {r.name: r for r in parameter_rows(get_component("train_sgb").Params)}
    assert rows["objective"].type == "one of binary|regression|multiclass"
    assert rows["features"].type == "{party: list[str]}" and rows["features"].default == "required"
    assert rows["label"].type == "{party: str, column: str}"
    assert rows["seed"].type == "int" and rows["seed"].default == "none"
    assert rows["learning_rate"].constraints == "> 0, ≤ 1"
    stats = {r.name: r for r in parameter_rows(get_component("stats").Params)}
    assert stats["statistics"].default == '["count", "mean", "std"]'
    assert stats["quantiles"].constraints == "≥ 1 items, ≤ 99 items"
    assert stats["bins"].type == "{column: list[float]}" and stats["bins"].default == "{}"


def test_long_cells_wrap_in_their_column() -> None:
    lines = describe_component(get_component("stats"))
    assert all(len(line) < 200 for line in lines)
    text = "list[count|sum|mean|var|std|cov|corr|min|max|median|quantile|histogram]"
    wrapped = wrap_cell(text, 20)
    assert "".join(wrapped) == text and all(len(w) <= 20 for w in wrapped)


def test_components_json_gives_the_schema() -> None:
    r = CliRunner().invoke(main, ["components", "train_sgb", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == get_component("train_sgb").describe()


def test_an_unknown_component_is_refused_with_the_known_ones() -> None:
    r = CliRunner().invoke(main, ["components", "nope"])
    assert r.exit_code == 2
    assert "unknown component type 'nope'" in r.output
    assert "train_lr" in r.output and "psi" in r.output


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeService:
    """A node's API served in process; the CLI's HTTP calls are routed to it."""
    d = tmp_path / "bank"
    r = CliRunner().invoke(main, ["node", "init", "--name", "bank", "--dir", str(d)])
    assert r.exit_code == 0, r.output
    service = NodeService(NodeConfig.load(d))
    client = TestClient(create_app(service, service.config.token()))
    base = service.config.api_url

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        if not url.startswith(base):
            raise httpx.ConnectError("nothing listens there")
        kw.pop("timeout", None)
        kw.pop("verify", None)
        return client.request(method, url[len(base) :], **kw)

    monkeypatch.setattr(httpx, "request", request)
    return service


def _put_job(node: NodeService, spec: Any, job_id: str, status: str, result: Any) -> None:
    node.storage.put_job(
        JobRow(
            id=job_id,
            name=spec.name,
            spec=spec.to_dict(),
            digest=spec.digest(),
            initiator="bank",
            status=status,
            progress={},
            error="telecom: failed (data error)" if status == "failed" else None,
            result=result,
        )
    )


def test_job_result_and_status_wait_print_the_table(
    node: NodeService, job_run: tuple[Any, dict[str, Any]]
) -> None:
    spec, results = job_run
    _put_job(node, spec, "j-ok", "succeeded", results["bank"])
    where = ["--dir", str(node.config.path)]
    expected = describe_result(results["bank"], component_types(spec))
    r = CliRunner().invoke(main, ["job", "result", "j-ok", *where])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == expected
    assert _cells(expected, "sgb")["type"] == "train_sgb"
    # once a followed job succeeded, the same table follows its status
    r = CliRunner().invoke(main, ["job", "status", "j-ok", "--wait", *where])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-len(expected) :] == expected
    # --json stays the whole result, every metric
    r = CliRunner().invoke(main, ["job", "result", "j-ok", "--json", *where])
    assert json.loads(r.output)["result"] == json.loads(json.dumps(results["bank"]))
    r = CliRunner().invoke(main, ["job", "status", "j-ok", "--wait", "--json", *where])
    assert json.loads(r.output)["status"] == "succeeded"


def test_a_failed_job_shows_no_table(
    node: NodeService, job_run: tuple[Any, dict[str, Any]]
) -> None:
    spec, _ = job_run
    _put_job(node, spec, "j-bad", "failed", None)
    where = ["--dir", str(node.config.path)]
    r = CliRunner().invoke(main, ["job", "result", "j-bad", *where])
    assert r.exit_code == 6 and "telecom: failed" in r.output and "component" not in r.output
    r = CliRunner().invoke(main, ["job", "status", "j-bad", "--wait", *where])
    assert r.exit_code == 6 and "AUC" not in r.output
