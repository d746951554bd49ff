"""Real node processes over loopback mutual TLS, driven through the CLI like a user would."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from rainbridge.crypto.certs import create_identity
from rainbridge.demo.federation import Federation
from rainbridge.errors import AuthenticationError, PeerDisconnectedError
from rainbridge.net.frames import FLAG_FIRST, FLAG_LAST, encode_header, session_key
from rainbridge.net.tls import Peer, connect
from rainbridge.node.keys import NodeKeys

pytestmark = pytest.mark.slow

JOB = """\
name: {name}
parties: [{parties}]
components:
  - id: psi
    type: psi
    inputs:
{inputs}
    outputs:
      intersection:
        receivers: [{receivers}]
        columns: {{bank: [age]}}
"""
DATASETS = {"bank": "customers", "telecom": "subscribers", "tax": "taxpayers"}


def job_file(
    tmp: Path,
    name: str,
    parties: list[str],
    receivers: list[str],
    datasets: dict[str, str] | None = None,
) -> str:
    ds = {**DATASETS, **(datasets or {})}
    inputs = "\n".join(f"      {p}: {{dataset: {ds[p]}, id: customer_id}}" for p in parties)
    p = tmp / f"{name}.yaml"
    p.write_text(
        JOB.format(
            name=name, parties=", ".join(parties), inputs=inputs, receivers=", ".join(receivers)
        )
    )
    return str(p)


def write_data(base: Path, rows: dict[str, range]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for party, r in rows.items():
        vals = [f"c{i:07d}" for i in r]
        ids[party] = vals
        (base / "data").mkdir(parents=True, exist_ok=True)
        (base / "data" / f"{party}.csv").write_text(
            "customer_id,age\n" + "".join(f"{v},{i % 90}\n" for i, v in enumerate(vals))
        )
    return ids


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Federation, dict[str, list[str]]]]:
    base = tmp_path_factory.mktemp("fed")
    ids = write_data(
        base, {"bank": range(0, 6000), "telecom": range(3000, 9000), "tax": range(0, 10000, 2)}
    )
    f = Federation(base, ["bank", "telecom", "tax"], timeout=8)
    f.start()
    try:
        f.pin_all()
        for party, ds in DATASETS.items():
            f.add_dataset(party, ds, str(base / "data" / f"{party}.csv"))
        yield f, ids
    finally:
        f.stop()


def test_three_party_psi_job(fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path) -> None:
    f, ids = fed
    row = f.cli_json(
        "job",
        "submit",
        job_file(tmp_path, "three", ["bank", "telecom", "tax"], ["bank", "telecom"]),
        node="bank",
    )
    assert row["status"] == "succeeded", row
    common = sorted(set(ids["bank"]) & set(ids["telecom"]) & set(ids["tax"]))
    res = f.cli_json("job", "result", row["id"], node="bank")["result"]
    out = res["components"]["psi"]["outputs"]["intersection"]
    table = pq.read_table(out["path"])
    assert table.column("customer_id").to_pylist() == common
    assert table.column_names == ["customer_id", "age"]
    # the telecom received its file too; the tax bureau learned only the size
    deadline = time.monotonic() + 10
    while (st := f.cli_json("job", "status", row["id"], node="tax"))["status"] != "succeeded":
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    tax = f.cli_json("job", "result", row["id"], node="tax")["result"]["components"]["psi"]
    assert tax["intersection_size"] == len(common) and "outputs" not in tax
    tel = f.cli_json("job", "result", row["id"], node="telecom")["result"]["components"]["psi"]
    assert pq.read_table(tel["outputs"]["intersection"]["path"]).num_rows == len(common)
    assert not (f.nodes["tax"].dir / "outputs" / row["id"]).exists()
    assert res["bytes_sent"] > 0


def test_unregistered_dataset_refused_with_reason(
    fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path
) -> None:
    f, _ = fed
    job = job_file(tmp_path, "nodata", ["bank", "telecom"], ["bank"], {"telecom": "nosuch"})
    r = f.cli("job", "submit", job, node="bank", check=False)
    assert r.returncode == 4
    assert "telecom" in r.stderr and "'nosuch' is not registered at 'telecom'" in r.stderr


def test_dataset_without_id_column_refused(
    fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path
) -> None:
    f, _ = fed
    bad = tmp_path / "bad.csv"
    bad.write_text("cid,age\n1,2\n")
    r = f.cli(
        "dataset", "add", "bad", "--path", str(bad), "--id", "customer_id", node="bank", check=False
    )
    assert r.returncode == 3
    assert "bad.csv" in r.stderr and "'customer_id'" in r.stderr


def test_wrong_fingerprint_and_unknown_certificate_refused(
    fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path
) -> None:
    f, _ = fed
    tel = f.nodes["telecom"].info
    r = f.cli(
        "peer",
        "add",
        "telecom2",
        "--url",
        tel["data_plane"],
        "--fingerprint",
        "ab" * 32,
        node="bank",
        check=False,
    )
    assert r.returncode == 5 or r.returncode == 4, r.stderr
    assert "fingerprint" in r.stderr
    # a node that nobody pinned cannot open a session at the bank's data plane
    mallory = create_identity(tmp_path / "mallory", "telecom")
    bank = f.nodes["bank"].info
    host, port = bank["data_plane"].rsplit(":", 1)
    bank_peer = Peer("bank", bank["fingerprint"], (f.nodes["bank"].dir / "node.crt").read_text())
    with pytest.raises(AuthenticationError):
        asyncio.run(
            connect(host, int(port), mallory, bank_peer, session_id="control:x", local="telecom")
        )


def test_oversized_frame_refused(fed: tuple[Federation, dict[str, list[str]]]) -> None:
    f, _ = fed
    bank = f.nodes["bank"].info
    host, port = bank["data_plane"].rsplit(":", 1)
    bank_peer = Peer("bank", bank["fingerprint"], (f.nodes["bank"].dir / "node.crt").read_text())
    telecom = NodeKeys.load(f.nodes["telecom"].dir, "standard").identity

    async def attack() -> None:
        ch = await connect(
            host, int(port), telecom, bank_peer, session_id="control:big", local="telecom"
        )
        # announce a 1 TiB message: the bank must refuse it before allocating anything
        ch.writer.write(
            encode_header(
                FLAG_FIRST | FLAG_LAST, session_key("control:big"), 0, 1 << 40, b"control", 16
            )
        )
        ch.writer.write(b"\x00" * 16)
        await ch.writer.drain()
        with pytest.raises(PeerDisconnectedError):
            await ch.recv("reply", timeout=5)

    asyncio.run(attack())
    assert f.cli_json("node", "info", node="bank")["name"] == "bank"  # still serving


def test_unknown_peer_job_refused(tmp_path: Path) -> None:
    write_data(tmp_path, {"bank": range(10), "telecom": range(5, 15)})
    f = Federation(tmp_path, ["bank", "telecom"], timeout=5)
    f.start()
    try:
        tel = f.nodes["telecom"].info
        # the bank pins the telecom, but the telecom does not know the bank
        f.cli(
            "peer",
            "add",
            "telecom",
            "--url",
            tel["data_plane"],
            "--fingerprint",
            tel["fingerprint"],
            node="bank",
        )
        for party in ("bank", "telecom"):
            f.add_dataset(party, DATASETS[party], str(tmp_path / "data" / f"{party}.csv"))
        r = f.cli(
            "job",
            "submit",
            job_file(tmp_path, "unk", ["bank", "telecom"], ["bank"]),
            node="bank",
            check=False,
        )
        assert r.returncode == 4
        assert "telecom" in r.stderr and "refused the connection" in r.stderr
        (refused,) = f.cli_json("job", "list", node="bank")
        assert refused["status"] == "refused"
        assert refused["decisions"]["telecom"]["accept"] is False
        # once the telecom pins the bank, the same job is accepted and runs
        bank = f.nodes["bank"].info
        f.cli(
            "peer",
            "add",
            "bank",
            "--url",
            bank["data_plane"],
            "--fingerprint",
            bank["fingerprint"],
            node="telecom",
        )
        row = f.cli_json(
            "job", "submit", job_file(tmp_path, "unk", ["bank", "telecom"], ["bank"]), node="bank"
        )
        assert row["status"] == "succeeded", row
    finally:
        f.stop()


def test_killing_a_party_mid_psi_fails_cleanly(tmp_path: Path) -> None:
    ids = write_data(tmp_path, {"bank": range(0, 400_000), "telecom": range(200_000, 600_000)})
    f = Federation(tmp_path, ["bank", "telecom"], timeout=8)
    f.start()
    try:
        f.pin_all()
        for party in ("bank", "telecom"):
            f.add_dataset(party, DATASETS[party], str(tmp_path / "data" / f"{party}.csv"))
        job = job_file(tmp_path, "kill", ["bank", "telecom"], ["bank", "telecom"])
        row = f.cli_json("job", "submit", job, "--no-wait", node="bank")
        deadline = time.monotonic() + 30
        while True:
            st = f.cli_json("job", "status", row["id"], node="bank")
            if st["status"] == "running" and st["progress"].get("psi", 0) > 0.05:
                break
            assert st["status"] in ("starting", "running"), st
            assert time.monotonic() < deadline
            time.sleep(0.1)
        killed_at = time.monotonic()
        f.kill("telecom")
        while (st := f.cli_json("job", "status", row["id"], node="bank"))["status"] == "running":
            assert time.monotonic() - killed_at < 20, "bank did not notice within the timeout"
            time.sleep(0.2)
        assert st["status"] == "failed"
        assert "telecom" in st["error"]
        out = f.nodes["bank"].dir / "outputs" / row["id"]
        assert not out.exists() or not any(out.iterdir()), "partial output left behind"
        assert len(ids["bank"]) == 400_000
    finally:
        f.stop()


def test_cancel_stops_every_party(tmp_path: Path) -> None:
    write_data(tmp_path, {"bank": range(0, 300_000), "telecom": range(150_000, 450_000)})
    f = Federation(tmp_path, ["bank", "telecom"], timeout=8)
    f.start()
    try:
        f.pin_all()
        for party in ("bank", "telecom"):
            f.add_dataset(party, DATASETS[party], str(tmp_path / "data" / f"{party}.csv"))
        job = job_file(tmp_path, "cancel", ["bank", "telecom"], ["bank", "telecom"])
        row = f.cli_json("job", "submit", job, "--no-wait", node="bank")
        deadline = time.monotonic() + 30
        while f.cli_json("job", "status", row["id"], node="telecom")["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert f.cli_json("job", "cancel", row["id"], node="bank")["status"] == "cancelled"
        while (st := f.cli_json("job", "status", row["id"], node="telecom"))["status"] == "running":
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["status"] in ("aborted", "failed"), st
        for party in ("bank", "telecom"):
            out = f.nodes[party].dir / "outputs" / row["id"]
            assert not out.exists() or not any(out.iterdir())
        listed = f.cli_json("job", "list", node="bank")
        assert [j["status"] for j in listed if j["id"] == row["id"]] == ["cancelled"]
    finally:
        f.stop()


def _pids_of_workers(f: Federation, node: str, job_id: str) -> list[int]:
    n = f.nodes[node]
    token = (n.dir / "api.token").read_text().strip()
    r = httpx.get(
        n.api + "/v1/events",
        params={"job_id": job_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    return [e["detail"]["pid"] for e in r.json() if e["kind"] == "job_started"]


def test_sigterm_stops_the_node_gracefully(tmp_path: Path) -> None:
    write_data(tmp_path, {"bank": range(0, 300_000), "telecom": range(150_000, 450_000)})
    f = Federation(tmp_path, ["bank", "telecom"], timeout=8)
    f.start()
    try:
        f.pin_all()
        for party in ("bank", "telecom"):
            f.add_dataset(party, DATASETS[party], str(tmp_path / "data" / f"{party}.csv"))
        job = job_file(tmp_path, "term", ["bank", "telecom"], ["bank", "telecom"])
        row = f.cli_json("job", "submit", job, "--no-wait", node="bank")
        deadline = time.monotonic() + 30
        while f.cli_json("job", "status", row["id"], node="telecom")["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        workers = _pids_of_workers(f, "bank", row["id"])
        assert workers
        bank = f.nodes["bank"].proc
        assert bank is not None
        bank.send_signal(signal.SIGTERM)  # the node alone, not its process group
        assert bank.wait(timeout=15) == 0
        log = (f.nodes["bank"].dir / "node.log").read_text()
        assert "stopped" in log and "Traceback" not in log
        for pid in workers:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        while (st := f.cli_json("job", "status", row["id"], node="telecom"))["status"] in (
            "starting",
            "running",
        ):
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["status"] in ("aborted", "failed"), st
        assert "bank" in st["error"] and "stopped" in st["error"], st
        for party in ("bank", "telecom"):
            out = f.nodes[party].dir / "outputs" / row["id"]
            assert not out.exists() or not any(out.iterdir())
    finally:
        f.stop()


def test_a_party_failing_stops_the_others_without_leaking_its_details(
    fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path
) -> None:
    f, _ = fed
    # a file whose columns are all there (so every party accepts and starts) but whose data
    # is not: an ID longer than 256 bytes, which the telecom's worker refuses on reading it
    doomed = tmp_path / "doomed.csv"
    doomed.write_text(f"customer_id,age\nc0000001,3\n{'x' * 300},4\n")
    f.add_dataset("telecom", "doomed", doomed)
    job = job_file(tmp_path, "doomed", ["bank", "telecom", "tax"], ["bank"], {"telecom": "doomed"})
    r = f.cli("job", "submit", job, node="bank", check=False)
    assert r.returncode == 6, r.stderr
    job_id = r.stdout.split()[1].rstrip(":")
    deadline = time.monotonic() + 20
    status = {}
    for party in ("bank", "telecom", "tax"):
        while (st := f.cli_json("job", "status", job_id, node=party))["status"] in (
            "starting",
            "running",
        ):
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        status[party] = st
        assert st["status"] in ("failed", "aborted"), st
        out = f.nodes[party].dir / "outputs" / job_id
        assert not out.exists() or not any(out.iterdir())
    # The telecom's own record has the details, unless another party's abort reached its
    # node before its worker's result did (a known race: the abort then stands as the reason).
    own = status["telecom"]["error"]
    assert "'doomed'" in own or "aborted" in own, own
    for party in ("bank", "tax"):
        err = status[party]["error"]
        assert "telecom" in err and "data error" in err, err
        assert "doomed" not in err, err  # another institution's details never cross


STATS_JOB = """name: joint-age
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
        columns: {bank: [age], telecom: [age]}
  - id: stats
    type: stats
    inputs:
      bank: {from: psi.intersection}
      telecom: {from: psi.intersection}
      tax: {role: dealer}
    params:
      columns: {bank: [age]}
      statistics: [count, mean, std]
      group_by: {party: telecom, column: age}
      min_group_size: 20
      decimals: 0
    outputs:
      result: {receivers: [bank], format: csv}
"""


def test_stats_job_between_nodes_with_a_dealer(
    fed: tuple[Federation, dict[str, list[str]]], tmp_path: Path
) -> None:
    f, ids = fed
    # the psi-only grants of the fixture do not cover a stats step: refused with the reason
    job = tmp_path / "stats.yaml"
    job.write_text(STATS_JOB)
    r = f.cli("job", "submit", str(job), node="bank", check=False)
    assert r.returncode == 4 and "does not allow component 'stats'" in r.stderr, r.stderr
    for owner, ds, peer in (("bank", "customers", "telecom"), ("telecom", "subscribers", "bank")):
        f.cli(
            "grant", "add", ds, "--peer", peer, "--columns", "customer_id,age",
            "--components", "psi,stats", "--receivers", "bank,telecom", node=owner,
        )  # fmt: skip
    row = f.cli_json("job", "submit", str(job), node="bank")
    assert row["status"] == "succeeded", row
    res = f.cli_json("job", "result", row["id"], node="bank")["result"]["components"]["stats"]
    got = {(x["statistic"], x["column"], x["group"]): x["value"] for x in res["result"]}
    # plaintext reference: ages are the row index mod 90 in each party's own file
    bank_age = {v: i % 90 for i, v in enumerate(ids["bank"])}
    tel_age = {v: i % 90 for i, v in enumerate(ids["telecom"])}
    common = sorted(set(bank_age) & set(tel_age))
    ages = np.array([bank_age[c] for c in common], dtype=float)
    assert got[("count", "age", "")] == len(common)
    assert got[("mean", "age", "")] == pytest.approx(ages.mean())
    assert got[("std", "age", "")] == pytest.approx(ages.std(ddof=1))
    groups = np.array([tel_age[c] for c in common])
    for g in {int(x) for x in groups}:  # group keys keep their type
        sel = groups == g
        if sel.sum() >= 20:
            assert got[("mean", "age", g)] == pytest.approx(ages[sel].mean())
        else:
            assert ("count", "", g) not in got  # small groups withheld
    tel = f.cli_json("job", "result", row["id"], node="telecom")["result"]["components"]["stats"]
    assert "result" not in tel and "outputs" not in tel


def test_sql_query_between_nodes(fed: tuple[Federation, dict[str, list[str]]]) -> None:
    f, ids = fed
    for owner, ds, peer in (("bank", "customers", "telecom"), ("telecom", "subscribers", "bank")):
        f.cli(
            "grant", "add", ds, "--peer", peer, "--columns", "customer_id,age",
            "--components", "psi,stats", "--receivers", "bank,telecom", node=owner,
        )  # fmt: skip
    query = (
        "SELECT t.age AS tel_age, COUNT(*) AS n, AVG(b.age) AS bank_age "
        "FROM bank.customers b JOIN telecom.subscribers t ON b.customer_id = t.customer_id "
        "WHERE b.age < 45 GROUP BY t.age"
    )
    out = f.cli_json("sql", query, "--dealer", "tax", "--min-group-size", "3", node="bank")
    assert out["columns"] == ["tel_age", "n", "bank_age"]
    bank_age = {v: i % 90 for i, v in enumerate(ids["bank"])}
    tel_age = {v: i % 90 for i, v in enumerate(ids["telecom"])}
    want: dict[str, list[int]] = {}
    for c in set(bank_age) & set(tel_age):
        if bank_age[c] < 45:
            want.setdefault(tel_age[c], []).append(bank_age[c])  # typed group keys
    shown = {k: v for k, v in want.items() if len(v) >= 3}
    assert {r[0] for r in out["rows"]} == set(shown)
    for g, n, avg in out["rows"]:
        assert n == len(shown[g]) and avg == pytest.approx(np.mean(shown[g]))
    # without a dealer: the two parties make their randomness by OT extension; same answer
    free = f.cli_json("sql", query, "--min-group-size", "3", node="bank")
    assert sorted(free["rows"]) == sorted(out["rows"])
    # the telecom's column policy: age only inside aggregates, so not as a GROUP BY key
    f.cli(
        "dataset", "policy", "subscribers", "--column", "customer_id=join",
        "--column", "age=aggregate", node="telecom",
    )  # fmt: skip
    refused = f.cli(
        "sql", query, "--dealer", "tax", "--min-group-size", "3", node="bank", check=False
    )
    assert refused.returncode != 0
    assert "column 'age' of dataset 'subscribers' at 'telecom'" in refused.stderr
    assert "GROUP BY key" in refused.stderr
    f.cli("dataset", "policy", "subscribers", "--clear-columns", node="telecom")
    median = (
        "SELECT MODE(b.age) FROM bank.customers b "
        "JOIN telecom.subscribers t ON b.customer_id = t.customer_id"
    )
    bad = f.cli("sql", median, "--dealer", "tax", node="bank", check=False)
    assert bad.returncode == 2 and "unsupported" in bad.stderr


def test_killing_the_dealer_mid_statistics_fails_the_job_on_every_side(tmp_path: Path) -> None:
    write_data(tmp_path, {"bank": range(0, 120_000), "telecom": range(0, 120_000)})
    (tmp_path / "data" / "tax.csv").write_text("customer_id,age\nc0000000,1\n")
    f = Federation(tmp_path, ["bank", "telecom", "tax"], timeout=8)
    f.start()
    try:
        f.pin_all()
        for party in ("bank", "telecom", "tax"):
            f.add_dataset(party, DATASETS[party], str(tmp_path / "data" / f"{party}.csv"))
        for owner, ds, peer in (
            ("bank", "customers", "telecom"),
            ("telecom", "subscribers", "bank"),
        ):
            f.cli(
                "grant", "add", ds, "--peer", peer, "--columns", "customer_id,age",
                "--components", "psi,stats", "--receivers", "bank,telecom", node=owner,
            )  # fmt: skip
        job = tmp_path / "minmax.yaml"
        # per-group MIN/MAX over 90 groups: tens of millions of secure comparisons, long
        # enough to pull the dealer out from under it
        job.write_text(
            STATS_JOB.replace("statistics: [count, mean, std]", "statistics: [count, min, max]")
        )
        row = f.cli_json("job", "submit", str(job), "--no-wait", node="bank")
        deadline = time.monotonic() + 120
        while True:
            st = f.cli_json("job", "status", row["id"], node="bank")
            if st["status"] == "running" and st["progress"].get("psi", 0) >= 1.0:
                break
            assert st["status"] in ("starting", "running"), st
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        time.sleep(3)  # into the statistics, which take half a minute here
        assert f.cli_json("job", "status", row["id"], node="bank")["status"] == "running"
        f.kill("tax")
        for node in ("bank", "telecom"):
            killed_at = time.monotonic()
            while (st := f.cli_json("job", "status", row["id"], node=node))["status"] in (
                "starting",
                "running",
            ):
                assert time.monotonic() - killed_at < 30, f"{node} did not notice"
                time.sleep(0.2)
            # the party that noticed fails; a party told by another aborts
            assert st["status"] in ("failed", "aborted"), (node, st)
            assert st["error"], st
            out = f.nodes[node].dir / "outputs" / row["id"]
            assert not out.exists() or not any(out.iterdir()), "partial output left behind"
    finally:
        f.stop()
