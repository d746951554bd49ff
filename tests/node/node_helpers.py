"""Helpers for node tests: a node directory, pinning without network, a PSI job spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rainbridge.crypto.certs import TlsIdentity
from rainbridge.node.config import NodeConfig, write_token
from rainbridge.node.keys import init_node_keys
from rainbridge.node.service import NodeService
from rainbridge.node.storage import PeerRow


def make_config(directory: Path, name: str, suite: str = "standard") -> NodeConfig:
    directory.mkdir(parents=True, exist_ok=True)
    init_node_keys(directory, name, suite)
    write_token(directory)
    cfg = NodeConfig(name=name, dir=str(directory), timeout=5, crypto_suite=suite)
    cfg.save()
    return cfg


def pin(service: NodeService, name: str, identity: TlsIdentity, port: int = 1) -> None:
    """Pin a peer straight in storage (no network): what `peer add` records."""
    service.storage.put_peer(
        PeerRow(
            name=name,
            host="127.0.0.1",
            port=port,
            fingerprint=identity.fingerprint,
            cert_pem=identity.cert_pem,
        )
    )


def spec(parties: dict[str, str], receivers: list[str] | None = None) -> dict[str, Any]:
    """A PSI job over ``{party: dataset}`` on column customer_id."""
    out: dict[str, Any] = {
        "name": "j",
        "parties": list(parties),
        "components": [
            {
                "id": "psi",
                "type": "psi",
                "inputs": {p: {"dataset": d, "id": "customer_id"} for p, d in parties.items()},
            }
        ],
    }
    if receivers:
        out["components"][0]["outputs"] = {"intersection": {"receivers": receivers}}
    return out
