"""Revoking a peer takes it out of the data plane's pins at once: its next handshake is
refused, and this node no longer sends it requests (real nodes over loopback mutual TLS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from node_helpers import make_config, pin

from rainbridge.errors import ChannelError, NotFoundError
from rainbridge.node.service import NodeService


def _node(base: Path, name: str) -> NodeService:
    cfg = make_config(base / name, name)
    cfg.data_port = 0  # any free port
    return NodeService(cfg)


def test_a_revoked_peer_is_refused_by_the_data_plane(tmp_path: Path) -> None:
    bank, telecom = _node(tmp_path, "bank"), _node(tmp_path, "telecom")

    async def go() -> None:
        for n in (bank, telecom):
            await n.start()
        try:
            pin(bank, "telecom", telecom.identity, telecom.dataplane.port)
            pin(telecom, "bank", bank.identity, bank.dataplane.port)
            for n in (bank, telecom):
                n.dataplane.reload()
            assert await bank.dataplane.request("telecom", {"type": "ping"}) == {"ok": True}
            await telecom.peers.revoke_peer("bank", actor="user:olivia")
            assert "bank" not in telecom.dataplane.pinned()
            with pytest.raises(ChannelError):
                await bank.dataplane.request("telecom", {"type": "ping"})
            with pytest.raises(NotFoundError):
                await telecom.dataplane.request("bank", {"type": "ping"})
        finally:
            for n in (bank, telecom):
                await n.stop()

    asyncio.run(go())
