"""What a node tells its operator: live metrics after real work (a PSI job between two nodes
with real workers over loopback mutual TLS, PIR queries, refusals), REST latency by route
template, the token-less metrics app, JSON and text logs with rotation, and no ID of the
data in any log line."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from inprocess_plane import Plane
from node_helpers import make_config, pin, spec
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rainbridge.errors import ConfigError, JobRefusedError
from rainbridge.node.api import create_app
from rainbridge.node.health_api import check_metrics_host, metrics_app, metrics_registry
from rainbridge.node.logs import setup_logging
from rainbridge.node.service import NodeService

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def samples(service: NodeService) -> Samples:
    return parse(generate_latest(metrics_registry(service)).decode())


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    """The node's JSON log to a file, as ``node start`` sets it up; the root logger's
    handlers and level are put back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    path = tmp_path / "node.log"
    setup_logging("json", "info", str(path))
    yield path
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def _people(n: int) -> list[str]:
    # IDs that cannot appear in a log line by chance
    return [f"P{secrets.token_hex(8)}" for _ in range(n)]


def _write(path: Path, ids: list[str]) -> None:
    path.write_text("customer_id,age\n" + "".join(f"{x},{i % 80}\n" for i, x in enumerate(ids)))


def _grant(node: NodeService, dataset: str, peer: str, **kw: object) -> None:
    node.owners.add_grant(
        dataset=dataset,
        peer=peer,
        columns=kw.get("columns", ["customer_id"]),  # type: ignore[arg-type]
        components=kw.get("components", ["psi"]),  # type: ignore[arg-type]
        receivers=["bank", "telecom"],
    )


# -- a real job between two nodes -----------------------------------------------------------


def test_a_job_between_two_nodes_is_counted_timed_and_logged(
    tmp_path: Path, json_log: Path
) -> None:
    nodes = {}
    for name in ("bank", "telecom"):
        cfg = make_config(tmp_path / name, name)
        cfg.data_port = 0
        nodes[name] = NodeService(cfg)
    bank, telecom = nodes["bank"], nodes["telecom"]
    people = _people(400)
    _write(tmp_path / "bank.csv", people[:300])
    _write(tmp_path / "telecom.csv", people[100:])
    bank.owners.add_dataset("customers", str(tmp_path / "bank.csv"), "customer_id")
    telecom.owners.add_dataset("subscribers", str(tmp_path / "telecom.csv"), "customer_id")
    _grant(bank, "customers", "telecom")
    _grant(telecom, "subscribers", "bank")
    token = (bank.config.path / "api.token").read_text().strip()

    async def go() -> tuple[str, str, str, str]:
        for n in nodes.values():
            await n.start()
        try:
            pin(bank, "telecom", telecom.identity, telecom.dataplane.port)
            pin(telecom, "bank", bank.identity, bank.dataplane.port)
            for n in nodes.values():
                n.dataplane.reload()
            job = await bank.jobs.submit(
                spec({"bank": "customers", "telecom": "subscribers"}, ["bank", "telecom"])
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = [n.storage.find_job(job["id"]) for n in nodes.values()]
                if all(r is not None and r.status == "succeeded" for r in rows) and not any(
                    n.runner.procs for n in nodes.values()
                ):
                    break
                await asyncio.sleep(0.1)
            for n in nodes.values():
                row = n.storage.find_job(job["id"])
                assert row is not None and row.status == "succeeded", (n.name, row and row.error)
            api = httpx.ASGITransport(app=create_app(bank))
            async with httpx.AsyncClient(transport=api, base_url="http://127.0.0.1") as c:
                unauthorised = await c.get("/metrics")
                assert unauthorised.status_code == 401
                for missing in ("j-nothing-1", "j-nothing-2"):
                    assert (await c.get(f"/v1/jobs/{missing}", headers=auth(token))).status_code
                r = await c.get("/metrics", headers=auth(token))
                assert r.status_code == 200
                api_text = r.text
            scrape = httpx.ASGITransport(app=metrics_app(bank))
            async with httpx.AsyncClient(transport=scrape, base_url="http://10.0.0.1") as c:
                r = await c.get("/metrics")  # no token: the private scrape listener
                assert r.status_code == 200
                assert (await c.get("/v1/jobs")).status_code == 404  # nothing else there
                plain_text = r.text
            return (
                job["id"],
                api_text,
                plain_text,
                generate_latest(metrics_registry(telecom)).decode(),
            )
        finally:
            for n in nodes.values():
                await n.stop()

    job_id, api_text, plain_text, telecom_text = asyncio.run(go())
    for text in (api_text, plain_text):
        got = parse(text)
        psi_ok = {"component_type": "psi", "status": "succeeded"}
        assert value(got, "rainbridge_jobs_finished_total", **psi_ok) == 1
        assert value(got, "rainbridge_job_run_seconds_count", **psi_ok) == 1
        took = value(got, "rainbridge_job_run_seconds_sum", **psi_ok)
        assert 0 < took < 60
        # the job's frames with telecom, both ways (its worker dialled: bank < telecom)
        assert value(got, "rainbridge_dataplane_sent_bytes_total", peer="telecom", kind="job") > 0
        assert (
            value(got, "rainbridge_dataplane_received_bytes_total", peer="telecom", kind="job") > 0
        )
        # the proposal and the start went as control exchanges
        assert (
            value(got, "rainbridge_dataplane_sent_bytes_total", peer="telecom", kind="control") > 0
        )
        assert value(got, "rainbridge_ledger_appends_total", kind="job_started") == 1
        assert value(got, "rainbridge_ledger_appends_total", kind="job_succeeded") == 1
        # the storage gauges are served beside the live metrics
        assert value(got, "rainbridge_jobs", status="succeeded", component_type="psi") == 1
    # REST latency by route template: two job IDs, one label; the refusal before routing
    got = parse(api_text)
    route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
    assert value(got, "rainbridge_http_request_seconds_count", **route) == 2
    assert (
        value(
            got,
            "rainbridge_http_request_seconds_count",
            method="GET",
            route="/metrics",
            status="401",
        )
        == 1
    )
    assert not [k for k in got if job_id in str(k) or "j-nothing" in str(k)]
    tgot = parse(telecom_text)
    assert value(tgot, "rainbridge_jobs_finished_total", component_type="psi", status="succeeded")
    assert value(tgot, "rainbridge_dataplane_received_bytes_total", peer="bank", kind="job") > 0

    # the JSON log: one object per line, the job's start and end at both nodes
    lines = [json.loads(line) for line in json_log.read_text().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert all(x["time"].endswith("Z") for x in lines)
    started = [x for x in lines if x.get("job_id") == job_id and x.get("status") == "running"]
    ended = [x for x in lines if x.get("job_id") == job_id and "duration_s" in x]
    assert len(started) == 2 and len(ended) == 2
    assert all(x["component"] == ["psi"] and x["level"] == "info" for x in started + ended)
    assert all(x["status"] == "succeeded" and 0 < x["duration_s"] < 60 for x in ended)
    assert all(x["parties"] == ["bank", "telecom"] for x in ended)
    # no ID of either party's data, in any line
    text = json_log.read_text()
    assert not [p for p in people if p in text]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- refusals ---------------------------------------------------------------------------------


def test_refusals_are_counted_by_class_and_logged_without_their_text(
    tmp_path: Path, json_log: Path
) -> None:
    plane = Plane()
    bank, telecom = plane.node(tmp_path, "bank"), plane.node(tmp_path, "telecom")
    for a, b in ((bank, telecom), (telecom, bank)):
        pin(a, b.name, b.identity)
    ids = _people(20)
    _write(tmp_path / "b.csv", ids)
    _write(tmp_path / "t.csv", ids)
    bank.owners.add_dataset("customers", str(tmp_path / "b.csv"), "customer_id")
    telecom.owners.add_dataset("subscribers", str(tmp_path / "t.csv"), "customer_id")
    _grant(bank, "customers", "telecom")
    job = spec({"bank": "customers", "telecom": "subscribers"}, ["bank", "telecom"])
    # telecom has no grant at all
    with pytest.raises(JobRefusedError):
        asyncio.run(bank.jobs.submit(job))
    # then one for another purpose
    _grant(telecom, "subscribers", "bank", components=["stats"])
    with pytest.raises(JobRefusedError):
        asyncio.run(bank.jobs.submit(job))
    got = samples(telecom)
    assert value(got, "rainbridge_grant_refusals_total", reason="no_grant") == 1
    assert value(got, "rainbridge_grant_refusals_total", reason="component") == 1
    assert value(got, "rainbridge_jobs_finished_total", component_type="psi", status="refused") == 2
    assert (
        value(got, "rainbridge_job_run_seconds_count", component_type="psi", status="refused") == 0
    )
    # the initiator counts its refused jobs too (no worker ever ran them)
    bgot = samples(bank)
    assert (
        value(bgot, "rainbridge_jobs_finished_total", component_type="psi", status="refused") == 2
    )
    assert not [k for k in bgot if k[0] == "rainbridge_grant_refusals_total"]
    # bank's own check refuses a job over a dataset it never registered
    with pytest.raises(Exception):  # noqa: B017 (the class is the API's business)
        asyncio.run(bank.jobs.submit(spec({"bank": "nothing", "telecom": "subscribers"})))
    assert value(samples(bank), "rainbridge_grant_refusals_total", reason="not_allowed") == 1

    lines = [json.loads(line) for line in json_log.read_text().splitlines()]
    refused = [x for x in lines if x.get("outcome") == "refused"]
    assert {x["reason"] for x in refused} >= {"no_grant", "component", "not_allowed"}
    assert not [p for p in ids if p in json_log.read_text()]
    # a peer's refused proposal: one line, with the peer and the class, not the text (it
    # names the dataset, its grants and columns: kept in the ledger and the decision)
    at_telecom = [x for x in lines if x["message"].startswith("refused job ")]
    assert len(at_telecom) == 2 and {x["reason"] for x in at_telecom} == {"no_grant", "component"}
    assert all(x["peer"] == "bank" and x["outcome"] == "refused" for x in at_telecom)
    assert not [x for x in lines if "does not allow" in x["message"]]


# -- PIR --------------------------------------------------------------------------------------


def test_pir_queries_are_counted_and_timed(tmp_path: Path) -> None:
    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    ids = _people(50)
    (tmp_path / "bl.csv").write_text(
        "customer_id,reason\n" + "".join(f"{x},r{i % 3}\n" for i, x in enumerate(ids))
    )
    bureau.owners.add_dataset("bl", str(tmp_path / "bl.csv"), "customer_id")
    bureau.pir.publish_pir(name="bl", dataset="bl", labels=["reason"])
    # no grant yet: refused (at the first request, for the table's description), counted
    with pytest.raises(Exception):  # noqa: B017
        asyncio.run(bank.pir.pir_query("bureau", "bl", ids[:2], "private"))
    assert value(samples(bureau), "rainbridge_grant_refusals_total", reason="no_grant") == 1
    # a query itself refused: asked straight, as a client that skipped the description would
    reply = asyncio.run(
        bureau.router.dispatch("bank", {"type": "pir_query", "service": "bl", "mode": "private"})
    )
    assert reply["ok"] is False
    got = samples(bureau)
    assert value(got, "rainbridge_grant_refusals_total", reason="no_grant") == 1 + (
        reply.get("code") == "unauthorized"
    )
    assert value(got, "rainbridge_pir_queries_total", request="query", outcome="refused") == 1
    assert value(got, "rainbridge_pir_query_seconds_count", request="query", outcome="refused") == 1
    bureau.owners.add_grant(
        dataset="bl", peer="bank", columns=["*"], components=["pir"], receivers=["bank"]
    )
    out = asyncio.run(bank.pir.pir_query("bureau", "bl", [ids[0], "nobody"], "private"))
    assert [r["id"] for r in out["results"]] == [ids[0], "nobody"]
    got = samples(bureau)
    answered = {"request": "query", "outcome": "answered"}
    assert value(got, "rainbridge_pir_queries_total", **answered) >= 1
    assert value(got, "rainbridge_pir_query_seconds_count", **answered) == value(
        got, "rainbridge_pir_queries_total", **answered
    )
    assert value(got, "rainbridge_pir_query_seconds_sum", **answered) > 0
    assert value(got, "rainbridge_ledger_appends_total", kind="pir_answered") >= 1
    # the asking node served nothing
    assert not [k for k in samples(bank) if k[0] == "rainbridge_pir_queries_total"]


# -- the multi-lender count --------------------------------------------------------------------


def test_multi_lender_requests_are_counted_and_timed(tmp_path: Path) -> None:
    plane = Plane()
    lenders = ["bank", "consumer", "fintech"]
    for name in [*lenders, "operator"]:
        plane.node(tmp_path, name)
    end = "2026-12-01"
    for i, lender in enumerate(lenders):
        path = tmp_path / f"{lender}.csv"
        path.write_text(f"customer_id,applied_on\nB-1,2026-11-2{i}\nW-{i},2026-11-20\n")
        node = plane.nodes[lender]
        node.owners.add_dataset("apps", str(path), "customer_id")
        node.mlq.mlq_join(
            name="m", lenders=lenders, merger="operator", dataset="apps",
            date_column="applied_on", window_days=30, rate_per_s=1000.0,
        )  # fmt: skip
    plane.nodes["operator"].mlq.mlq_join(name="m", lenders=lenders, merger="operator")
    asyncio.run(plane.nodes["operator"].mlq.mlq_build("m", end))
    out = asyncio.run(plane.nodes["bank"].mlq.mlq_count("m", "B-1"))
    assert out["count"] == 2
    with pytest.raises(Exception):  # noqa: B017 (an ID over 256 bytes)
        asyncio.run(plane.nodes["bank"].mlq.mlq_count("m", "x" * 300))
    got = samples(plane.nodes["bank"])
    for outcome in ("answered", "refused"):
        assert value(got, "rainbridge_mlq_requests_total", kind="count", outcome=outcome) == 1
        assert (
            value(got, "rainbridge_mlq_request_seconds_count", kind="count", outcome=outcome) == 1
        )
    # the others served the bank's count, and the operator the build's messages
    for name in ("consumer", "fintech", "operator"):
        served = {
            k: v
            for k, v in samples(plane.nodes[name]).items()
            if k[0] == "rainbridge_mlq_requests_total"
        }
        assert served and all(dict(k[1])["outcome"] == "answered" for k in served), name
        assert all(dict(k[1])["kind"].startswith("mlq_") for k in served)


# -- the metrics listener's address -----------------------------------------------------------


def test_the_metrics_host_must_be_private() -> None:
    for ok in ("127.0.0.1", "::1", "localhost", "10.1.2.3", "192.168.0.9", "fd00::1"):
        assert check_metrics_host(ok) is None
    for wide in ("0.0.0.0", "::", "metrics.internal"):
        warning = check_metrics_host(wide)
        assert warning is not None and "without a token" in warning
    for public in ("8.8.8.8", "2001:4860:4860::8888"):
        with pytest.raises(ConfigError, match="public address"):
            check_metrics_host(public)


# -- logs -------------------------------------------------------------------------------------


def test_json_logs_rotate_and_keep_their_fields(tmp_path: Path) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    log = logging.getLogger("rainbridge.node.test")
    (tmp_path / "logs").mkdir()
    try:
        handler = setup_logging(
            "json", "warning", "logs/node.log", directory=tmp_path, max_bytes=2000, backups=2
        )
        with pytest.raises(ConfigError, match="cannot append"):
            setup_logging("json", "info", str(tmp_path / "no" / "such" / "dir" / "x.log"))
        assert handler in root.handlers  # a failed setup leaves the working one
        log.info("below the level", extra={"job_id": "j-1"})
        for i in range(100):
            log.warning("job %s ended", f"j-{i}", extra={"job_id": f"j-{i}", "duration_s": i / 4})
        files = sorted(p.name for p in (tmp_path / "logs").iterdir())
        assert files == ["node.log", "node.log.1", "node.log.2"]
        for name in files:
            text = (tmp_path / "logs" / name).read_text()
            assert len(text.encode()) <= 2000
            for line in text.splitlines():
                x = json.loads(line)
                assert x["level"] == "warning" and x["logger"] == "rainbridge.node.test"
                assert x["message"] == f"job {x['job_id']} ended"
                assert x["duration_s"] == int(x["job_id"][2:]) / 4
        newest = (tmp_path / "logs" / "node.log").read_text().splitlines()[-1]
        assert json.loads(newest)["job_id"] == "j-99"
        assert "below the level" not in "".join((tmp_path / "logs" / n).read_text() for n in files)
        # an exception keeps its traceback in one line's field
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        last = json.loads((tmp_path / "logs" / "node.log").read_text().splitlines()[-1])
        assert last["level"] == "error" and "ValueError: boom" in last["exception"]

        # text, replacing the JSON handler (never two of ours at once)
        setup_logging("text", "info", str(tmp_path / "text.log"))
        assert handler not in root.handlers
        log.info("plain %s", "line", extra={"job_id": "j-x"})
        (line,) = (tmp_path / "text.log").read_text().splitlines()
        assert line.endswith("rainbridge.node.test plain line")
        for bad in ({"log_format": "xml"}, {"log_level": "loud"}):
            with pytest.raises(ConfigError):
                setup_logging(**bad)  # type: ignore[arg-type]
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)


def test_json_log_lines_stay_valid_for_undecodable_names_and_odd_numbers(
    tmp_path: Path,
) -> None:
    """A file name whose bytes are not UTF-8 (held as lone surrogates) and a non-finite
    duration still give one valid JSON line each; the text format writes the line too."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    log = logging.getLogger("rainbridge.node.test")
    odd = "data-\udcff.csv"  # os.fsdecode(b"data-\xff.csv")
    try:
        setup_logging("json", "info", str(tmp_path / "node.log"))
        log.info("reading %s", odd, extra={"peer": odd, "duration_s": float("nan")})
        log.info("took", extra={"duration_s": float("inf")})
        lines = (tmp_path / "node.log").read_bytes().decode("utf-8").splitlines()
        first, second = (json.loads(line) for line in lines)
        assert first["message"] == f"reading {odd}" and first["peer"] == odd
        assert first["duration_s"] == "nan" and second["duration_s"] == "inf"

        setup_logging("text", "info", str(tmp_path / "text.log"))
        log.info("reading %s", odd)
        (line,) = (tmp_path / "text.log").read_bytes().decode("utf-8").splitlines()
        assert line.endswith("reading data-\\udcff.csv")
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)


def test_a_log_file_without_backups_is_emptied_at_its_size(tmp_path: Path) -> None:
    """``log.backups = 0``: no old file is kept and the log stays within ``max_bytes``
    (the standard handler would let it grow without bound)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    log = logging.getLogger("rainbridge.node.test")
    try:
        setup_logging("text", "info", "node.log", directory=tmp_path, max_bytes=1000, backups=0)
        for i in range(200):
            log.info("line %d", i)
        assert [p.name for p in tmp_path.iterdir()] == ["node.log"]
        text = (tmp_path / "node.log").read_text()
        assert len(text.encode()) <= 1000
        assert text.splitlines()[-1].endswith("line 199")
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
