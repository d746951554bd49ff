"""Silent OT against a peer whose requests ask for batches other than the agreed size: each
round would serve it a handful of OTs for a whole batch's work (a peer asking for one OT a
round makes the other party compute a batch per OT wanted), so such a request is refused."""

from __future__ import annotations

import asyncio

import pytest

from rainbridge.errors import ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc.ot import OtExtension
from rainbridge.protocols.mpc.ot_silent import SILENT_BATCH


@pytest.mark.parametrize("m", [1, SILENT_BATCH - 1, SILENT_BATCH + 1])
def test_a_silent_request_of_another_batch_size_is_refused(m: int) -> None:
    async def run() -> None:
        mesh = LocalChannel.mesh("ot-review", ["p0", "p1"], timeout=5)
        ext0 = OtExtension(mesh["p0"]["p1"], source="silent")
        ext1 = OtExtension(mesh["p1"]["p0"], source="silent")
        await asyncio.gather(ext0.setup(), ext1.setup())
        assert ext0._silent is not None and ext1._silent is not None
        r = ext1._silent._r
        assert r is not None

        async def greedy() -> None:  # asks party 0 for a batch of m OTs
            await mesh["p1"]["p0"].send("ot/cot/0/q", r.request(m))
            await mesh["p1"]["p0"].recv("ot/cot/0/t")

        await asyncio.gather(ext0._silent.ensure(0, 2 * SILENT_BATCH), greedy())

    with pytest.raises(ProtocolViolationError, match="batch of"):
        asyncio.run(run())
