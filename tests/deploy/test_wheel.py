"""The wheel as a user installs it: a fresh venv, no Rust, no Node.js, two real nodes, a PSI.

The wheel is ``make dist``'s (rebuilt here by make when a source is newer than it). It is
installed with its dependencies from the package index into a venv of its own and every
command runs from that venv with a PATH holding nothing else, from a directory outside the
repository, so nothing imports the source tree and nothing can compile the core or the console.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: what an installed node must do without (the core is compiled in, the console built in)
BUILD_TOOLS = ("cargo", "rustc", "node", "npm")

JOB = """\
name: wheel-psi
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
        columns: {bank: [age]}
"""


@dataclass
class Installed:
    """A venv holding the installed wheel, and how to run its commands."""

    venv: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [*args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.run("rainbridge", *args, "--json").stdout)


def wheel() -> Path:
    """``$RAINBRIDGE_WHEEL`` when set (a wheel built elsewhere, e.g. once for a whole CI run);
    else make dist's, rebuilt by make when a source is newer (the venv and the console are
    taken as they are: this test runs inside the venv, and may not reinstall it)."""
    given = os.environ.get("RAINBRIDGE_WHEEL")
    if given:
        assert Path(given).is_file(), f"RAINBRIDGE_WHEEL={given} is not a file"
        return Path(given)
    if not (REPO / "web" / "dist" / "index.html").is_file():
        pytest.skip("the console is not built (web/dist): run make setup")
    if shutil.which("make") is None:
        if not list((REPO / "dist").glob("rainbridge-*.whl")):
            pytest.skip("no wheel in dist/ and no make to build it: run make dist")
    else:
        # (make dist installs maturin into the venv where it is missing)
        r = subprocess.run(
            ["make", "-s", "-o", ".venv/.installed", "-o", "web/dist/index.html", "dist"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = sorted((REPO / "dist").glob("rainbridge-*.whl"), key=lambda p: p.stat().st_mtime)
    assert wheels, "make dist wrote no wheel"
    return wheels[-1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    whl = wheel()
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("RAINBRIDGE_")
    }
    # the venv's scripts and nothing else: no compiler, no Node.js, no source tree
    env["PATH"] = str(venv / "bin")
    env["VIRTUAL_ENV"] = str(venv)
    work = base / "work"
    work.mkdir()
    inst = Installed(venv, work, env)
    inst.run("python", "-m", "pip", "install", "-q", "--disable-pip-version-check", str(whl))
    return inst


def test_no_build_tools_on_the_path(installed: Installed) -> None:
    for tool in BUILD_TOOLS:
        assert shutil.which(tool, path=installed.env["PATH"]) is None, tool
    assert REPO not in installed.cwd.parents


def test_imports_the_installed_package(installed: Installed) -> None:
    r = installed.run(
        "python",
        "-c",
        "import rainbridge, rainbridge._core as c, sys; print(rainbridge.__file__); "
        "print(c.__file__); print(sys.prefix)",
    )
    pkg, core, prefix = r.stdout.split()
    site = installed.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert Path(pkg).is_relative_to(site) and Path(core).is_relative_to(site), r.stdout
    assert Path(prefix) == installed.venv
    assert (Path(pkg).parent / "console" / "index.html").is_file()


def test_version(installed: Installed) -> None:
    from importlib.metadata import version

    r = installed.run("rainbridge", "--version")
    assert r.stdout.strip().endswith(version("rainbridge")), r.stdout


def test_extras_metadata(installed: Installed) -> None:
    """``pip install 'rainbridge[postgres]'`` and kin resolve: the extras are declared with
    their requirements (ray is not installed here: several hundred MiB)."""
    r = installed.run(
        "python",
        "-c",
        "import json, importlib.metadata as m; d = m.distribution('rainbridge'); "
        "print(json.dumps({'extras': d.metadata.get_all('Provides-Extra'), "
        "'requires': d.requires}))",
    )
    meta = json.loads(r.stdout)
    assert {"postgres", "mysql", "ray"} <= set(meta["extras"])
    # a requirement's marker, quotes normalised: `psycopg[binary]>=3.1 ; extra == 'postgres'`
    requires = [q.replace('"', "'") for q in meta["requires"]]
    for extra, package in (("postgres", "psycopg"), ("mysql", "pymysql"), ("ray", "ray")):
        assert any(q.startswith(package) and f"extra == '{extra}'" in q for q in requires), (
            extra,
            requires,
        )
    # the extras are optional: the plain install has none of them
    assert installed.run("python", "-c", "import psycopg", check=False).returncode != 0


def test_not_a_node_directory_refused(installed: Installed) -> None:
    r = installed.run(
        "rainbridge", "node", "start", "--dir", str(installed.cwd / "nowhere"), check=False
    )
    assert r.returncode == 2 and "is not a node directory" in r.stderr, r.stderr


@dataclass
class Node:
    name: str
    dir: Path
    info: dict[str, Any]
    proc: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return (self.dir / "api.token").read_text().strip()


@pytest.fixture(scope="module")
def nodes(installed: Installed) -> Iterator[dict[str, Node]]:
    started: dict[str, Node] = {}
    try:
        for name in ("bank", "telecom"):
            d = installed.cwd / name
            info = installed.cli_json(
                "node", "init", "--name", name, "--dir", str(d), "--timeout", "30"
            )
            with open(installed.cwd / f"{name}.log", "ab") as log:
                proc = subprocess.Popen(
                    ["rainbridge", "node", "start", "--dir", str(d)],
                    cwd=installed.cwd,
                    env=installed.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started[name] = Node(name, d, info, proc)
        for node in started.values():
            wait_ready(node, installed.cwd / f"{node.name}.log")
        yield started
    finally:
        for node in started.values():
            if node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in started.values():
            try:
                node.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait()


def wait_ready(node: Node, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise AssertionError(f"node {node.name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(node.info["api"] + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"node {node.name} not ready: {log.read_text()[-2000:]}")


def test_psi_between_installed_nodes(installed: Installed, nodes: dict[str, Node]) -> None:
    bank, telecom = nodes["bank"], nodes["telecom"]
    for a, b in ((bank, telecom), (telecom, bank)):
        installed.run(
            "rainbridge",
            "peer",
            "add",
            b.name,
            "--url",
            b.info["data_plane"],
            "--fingerprint",
            b.info["fingerprint"],
            "--dir",
            str(a.dir),
        )
    ids = {"bank": range(0, 600), "telecom": range(300, 1000, 3)}
    for node, dataset in ((bank, "customers"), (telecom, "subscribers")):
        csv = installed.cwd / f"{node.name}.csv"
        csv.write_text(
            "customer_id,age\n" + "".join(f"c{i:05d},{i % 90}\n" for i in ids[node.name])
        )
        installed.run(
            "rainbridge", "dataset", "add", dataset, "--path", str(csv), "--id", "customer_id",
            "--dir", str(node.dir),
        )  # fmt: skip
        other = telecom if node is bank else bank
        installed.run(
            "rainbridge", "grant", "add", dataset, "--peer", other.name, "--columns", "*",
            "--components", "psi", "--receivers", "*", "--dir", str(node.dir),
        )  # fmt: skip
    job = installed.cwd / "psi.yaml"
    job.write_text(JOB)
    row = installed.cli_json("job", "submit", str(job), "--dir", str(bank.dir))
    assert row["status"] == "succeeded", row
    res = installed.cli_json("job", "result", row["id"], "--dir", str(bank.dir))["result"]
    out = res["components"]["psi"]["outputs"]["intersection"]["path"]
    # read with the installed venv's own pyarrow: the output is the node's, not the test's
    r = installed.run(
        "python",
        "-c",
        "import json, sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); "
        "print(json.dumps({'ids': t.column('customer_id').to_pylist(), 'cols': t.column_names}))",
        out,
    )
    got = json.loads(r.stdout)
    common = sorted(f"c{i:05d}" for i in set(ids["bank"]) & set(ids["telecom"]))
    assert got["ids"] == common and len(common) == 100
    assert got["cols"] == ["customer_id", "age"]


def test_console_served_by_installed_node(nodes: dict[str, Node]) -> None:
    bank = nodes["bank"]
    r = httpx.get(bank.info["api"] + "/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "<title>Rainbridge</title>" in r.text and '<div id="root">' in r.text, r.text[:500]
    # the page's script is served too, from the package (no web/dist involved)
    script = r.text.split('src="', 1)[1].split('"', 1)[0]
    js = httpx.get(bank.info["api"] + script, timeout=10)
    assert js.status_code == 200 and len(js.content) > 1000
    assert httpx.get(bank.info["api"] + "/healthz", timeout=10).status_code == 200


def test_unauthorised_request_refused(nodes: dict[str, Node]) -> None:
    bank = nodes["bank"]
    r = httpx.get(bank.info["api"] + "/v1/node", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"]
    ok = httpx.get(bank.info["api"] + "/v1/node", headers={"Authorization": f"Bearer {bank.token}"})
    assert ok.status_code == 200 and ok.json()["name"] == "bank"
