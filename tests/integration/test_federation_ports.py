"""The demo federation starts a node whose port another process took between ``node init``
and its start on new free ports, instead of failing (a race the tests' machines meet)."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rainbridge.demo.federation import Federation

pytestmark = pytest.mark.slow


def test_a_port_taken_after_init_is_moved(tmp_path: Path) -> None:
    f = Federation(tmp_path, ["bank", "telecom"], timeout=10)
    f.init()
    port = urlsplit(f.nodes["bank"].api).port
    assert port is not None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        try:
            f.start()
            assert urlsplit(f.nodes["bank"].api).port != port
            f.pin_all()
            assert {p["name"] for p in f.cli_json("peer", "list", node="bank")} == {"telecom"}
        finally:
            f.stop()
