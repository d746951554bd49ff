"""A slow database delays only the requests that need it: the event loop, the data plane and
other peers' sessions keep going (storage runs in the node's thread pool, never on the loop).

Three real nodes in one event loop, over real loopback mutual TLS; every statement the
telecom's database runs is made to take ``DELAY`` seconds while peers ask it for its
catalogue (a request that reads and writes storage) and, at the same time, ping it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from node_helpers import make_config, pin
from sqlalchemy import event

from rainbridge.node.service import NodeService

DELAY = 1.0


def _node(base: Path, name: str) -> NodeService:
    cfg = make_config(base / name, name)
    cfg.data_port = 0  # any free port
    return NodeService(cfg)


def _slow_down(node: NodeService, on: threading.Event) -> None:
    def before(*_: Any) -> None:
        if on.is_set():
            time.sleep(DELAY)  # the database answers late, in whichever thread asked

    event.listen(node.storage.engine, "before_cursor_execute", before)


def test_a_slow_database_does_not_stall_the_data_plane(tmp_path: Path) -> None:
    bank, telecom, tax = (_node(tmp_path, n) for n in ("bank", "telecom", "tax"))
    slow = threading.Event()
    _slow_down(telecom, slow)

    async def timed(node: NodeService, msg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        reply = await node.dataplane.request("telecom", msg)
        return time.perf_counter() - t0, reply

    async def go() -> None:
        for n in (bank, telecom, tax):
            await n.start()
        for a in (bank, tax):
            pin(a, "telecom", telecom.identity, telecom.dataplane.port)
            pin(telecom, a.name, a.identity, a.dataplane.port)
            a.dataplane.reload()
        telecom.dataplane.reload()
        await timed(bank, {"type": "ping"})  # connections warm, nothing slow yet
        try:
            slow.set()
            catalogue = asyncio.create_task(timed(bank, {"type": "catalogue"}))
            await asyncio.sleep(0.2)  # the catalogue request now waits on the database
            pings = [await timed(p, {"type": "ping"}) for p in (bank, tax, tax, bank)]
            ticks_before = time.perf_counter()
            await asyncio.sleep(0.05)
            loop_lag = time.perf_counter() - ticks_before - 0.05
            took, reply = await catalogue
        finally:
            slow.clear()
            for n in (bank, telecom, tax):
                await n.stop()
        assert reply["ok"] is True and reply["datasets"] == []
        assert took >= DELAY  # the catalogue did wait for the database
        for seconds, pong in pings:  # while other peers' sessions went on
            assert pong == {"ok": True}
            assert seconds < DELAY / 2, f"a ping took {seconds:.2f} s behind a slow database"
        assert loop_lag < DELAY / 4

    asyncio.run(go())
