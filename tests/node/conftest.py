"""Fixtures: NodeServices in process, each on its own directory, and a small CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from node_helpers import make_config

from rainbridge.node.service import NodeService


@pytest.fixture
def node_factory(tmp_path: Path) -> Callable[[str], NodeService]:
    def make(name: str) -> NodeService:
        return NodeService(make_config(tmp_path / name, name))

    return make


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "customers.csv"
    p.write_text("customer_id,age\na,1\nb,2\nc,3\n")
    return p
