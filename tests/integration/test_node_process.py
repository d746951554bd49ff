"""One real node process: it refuses a busy port clearly, and stops cleanly on SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rainbridge.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_busy_api_port_is_a_clear_error_and_sigint_stops_cleanly(tmp_path: Path) -> None:
    d = tmp_path / "bank"
    info = json.loads(_cli("node", "init", "--name", "bank", "--dir", str(d), "--json").stdout)
    port = int(info["api"].rsplit(":", 1)[1])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        r = _cli("node", "start", "--dir", str(d))
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "already running" in r.stderr
    assert "Traceback" not in r.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "rainbridge.cli", "node", "start", "--dir", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        token = (d / "api.token").read_text().strip()
        for _ in range(300):
            try:
                r2 = httpx.get(
                    info["api"] + "/v1/node", headers={"Authorization": f"Bearer {token}"}
                )
                if r2.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr and proc.stderr.read()
            time.sleep(0.1)
        assert r2.json()["name"] == "bank"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
