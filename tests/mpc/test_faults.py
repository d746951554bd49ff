"""Faults: a party that goes away, a dealer that misbehaves, oversized or malformed requests."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rainbridge.errors import PeerDisconnectedError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import DealerClient, Mpc, SeedProvider, run_dealer
from rainbridge.protocols.mpc.correlated import MAX_DEALER_ELEMENTS


def test_a_party_leaving_mid_computation_fails_the_other_cleanly() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("faults", ["p0", "p1"], timeout=5)
        m0 = Mpc(0, mesh["p0"]["p1"], SeedProvider(bytes(16)))
        m1 = Mpc(1, mesh["p1"]["p0"], SeedProvider(bytes(16)))  # (a test provider)
        x = np.arange(10.0)

        async def quitter() -> None:
            await m1.input(None, 0, x.shape)
            await mesh["p1"]["p0"].abort("disk full")

        async def stayer() -> None:
            a = await m0.input(x, 0)
            await m0.reveal(await m0.mul(a, a))

        with pytest.raises(PeerDisconnectedError, match="disk full"):
            await asyncio.gather(stayer(), quitter())

    asyncio.run(main())


def test_the_dealer_refuses_malformed_and_oversized_requests() -> None:
    async def main(req: object) -> None:
        mesh = LocalChannel.mesh("dealer", ["p0", "p1", "dealer"], timeout=5)
        task = asyncio.create_task(run_dealer(mesh["dealer"]["p0"], mesh["dealer"]["p1"]))
        await mesh["p0"]["dealer"].recv("mpc/seed")
        await mesh["p1"]["dealer"].recv("mpc/seed")
        await mesh["p1"]["dealer"].send_json("mpc/req", req)
        await task

    for req in (
        {"kind": "mul", "a": [MAX_DEALER_ELEMENTS + 1], "b": [1]},
        {"kind": "matmul", "a": [2, 3], "b": [4, 5]},
        {"kind": "fft", "a": [1], "b": [1]},
        {"kind": "mul", "a": ["x"], "b": [1]},
        [1, 2],
    ):
        with pytest.raises(ProtocolViolationError):
            asyncio.run(main(req))


def test_a_short_correction_from_the_dealer_is_refused() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("short", ["p1", "dealer"], timeout=5)
        client = DealerClient(bytes(16), mesh["p1"]["dealer"])

        async def bad_dealer() -> None:
            await mesh["dealer"]["p1"].recv_json("mpc/req")
            await mesh["dealer"]["p1"].send("mpc/corr", bytes(8))  # one word for four

        with pytest.raises(ProtocolViolationError, match="correlated randomness"):
            await asyncio.gather(client.triple("mul", (4,), (4,)), bad_dealer())

    asyncio.run(main())
