"""The catalogue: owners publish metadata; peers see that and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from rainbridge.errors import ConfigError, NotFoundError
from rainbridge.node.service import NodeService

Factory = Callable[[str], NodeService]


def test_peers_see_only_published_metadata(node_factory: Factory, tmp_path: Path) -> None:
    tax = node_factory("tax")
    csv = tmp_path / "taxpayers.csv"
    csv.write_text("customer_id,tax_paid,address\nc1,10.5,secret street\n")
    tax.owners.add_dataset(
        "taxpayers",
        str(csv),
        "customer_id",
        sensitivity="confidential",
        description="registered taxpayers",
        actor="user:olivia",
    )
    hidden = tmp_path / "hidden.csv"
    hidden.write_text("customer_id\nc1\n")
    tax.owners.add_dataset("hidden", str(hidden), "customer_id")
    assert asyncio.run(tax.router.dispatch("bank", {"type": "catalogue"}))["datasets"] == []
    tax.owners.publish_dataset("taxpayers", ["customer_id", "tax_paid"], actor="user:olivia")
    reply = asyncio.run(tax.router.dispatch("bank", {"type": "catalogue"}))
    assert reply == {
        "ok": True,
        "datasets": [
            {
                "name": "taxpayers",
                "description": "registered taxpayers",
                "sensitivity": "confidential",
                "owner": "olivia",
                "id_column": "customer_id",
                "columns": {"customer_id": "string", "tax_paid": "double"},
            }
        ],
    }
    text = str(reply)
    assert "address" not in text and str(csv) not in text and "num_rows" not in text
    tax.owners.publish_dataset("taxpayers", ["tax_paid"], publish_rows=True)
    (entry,) = tax.owners.catalogue()
    assert entry["num_rows"] == 1 and entry["id_column"] is None
    kinds = [(e["kind"], e["actor"]) for e in tax.storage.events()]
    assert ("dataset_published", "user:olivia") in kinds
    assert ("catalogue_browsed", "peer:bank") in kinds


def test_publishing_errors_are_clear(node_factory: Factory, csv_file: Path) -> None:
    node = node_factory("tax")
    node.owners.add_dataset("customers", str(csv_file), "customer_id")
    with pytest.raises(ConfigError, match="no column 'nope'"):
        node.owners.publish_dataset("customers", ["nope"])
    with pytest.raises(NotFoundError):
        node.owners.publish_dataset("missing", [])
    with pytest.raises(ConfigError, match="sensitivity 'top'"):
        node.owners.add_dataset("x", str(csv_file), "customer_id", sensitivity="top")
