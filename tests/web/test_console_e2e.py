"""The web console end to end in Debian's headless Chromium against a real federation:
log in (a wrong token first), register a dataset, grant a peer, build PSI → SecureBoost →
predict → evaluate on the canvas, submit, watch it finish, open the ROC curve, verify the
ledger. Screenshots go to
docs/console/ when RAINBRIDGE_CONSOLE_SHOTS is set (else to a temporary folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.demo.federation import Federation
from rainbridge.node.config import NodeConfig

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    if not (WEB / "dist" / "index.html").exists():
        return "the console is not built (make console)"
    if not (WEB / "node_modules" / "playwright-core").exists() or not shutil.which("node"):
        return "node and web/node_modules (npm ci in web/) are needed"
    return None


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_console_end_to_end(tmp_path: Path) -> None:
    paths = write_demo_data(
        tmp_path / "data", DemoSizes(population=4000, bank=2000, telecom=2000, tax=100)
    )
    f = Federation(tmp_path, ["bank", "telecom"], timeout=60)
    f.start()
    try:
        f.pin_all()
        f.cli(
            "dataset",
            "add",
            "subscribers",
            "--path",
            str(paths["telecom"]),
            "--id",
            "customer_id",
            node="telecom",
        )
        f.cli(
            "grant",
            "add",
            "subscribers",
            "--peer",
            "bank",
            "--columns",
            "*",
            "--components",
            "psi,train_sgb,predict",
            "--receivers",
            "bank,telecom",
            node="telecom",
        )
        cfg = NodeConfig.load(str(f.nodes["bank"].dir))
        shots = Path(os.environ.get("RAINBRIDGE_CONSOLE_SHOTS") or tmp_path / "shots")
        env = {
            **os.environ,
            "RB_URL": cfg.api_url,
            "RB_TOKEN": cfg.token(),
            "RB_DATA": str(paths["bank"]),
            "RB_SHOTS": str(shots),
        }
        r = subprocess.run(
            ["node", "e2e/console.e2e.mjs"],
            cwd=WEB,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        assert r.returncode == 0 and lines and lines[-1].get("ok"), (
            r.stdout[-3000:],
            r.stderr[-2000:],
        )
        first = next(x for x in lines if x.get("step") == "first-render")
        assert first["ms"] < 1000  # first render on loopback under a second
    finally:
        f.stop()
