"""Run a two-party program over in-process channels: with a dealer (three roles), or
dealer-free with OT extension (two)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import (
    DealerClient,
    Mpc,
    Provider,
    SeedProvider,
    receive_seed,
    run_dealer,
)
from rainbridge.protocols.mpc.ot import OtProvider

Program = Callable[[Mpc], Awaitable[Any]]


async def _run(program: Program, frac_bits: int, setup: str) -> tuple[Any, Any, Mpc]:
    mesh = LocalChannel.mesh("mpc-test", ["p0", "p1", "dealer"])

    async def party(i: int) -> tuple[Any, Mpc]:
        me = f"p{i}"
        provider: Provider
        if setup == "ot":
            provider = OtProvider(i, mesh[me][f"p{1 - i}"])
            await provider.setup()
        else:
            seed = await receive_seed(mesh[me]["dealer"])
            provider = SeedProvider(seed) if i == 0 else DealerClient(seed, mesh[me]["dealer"])
        mpc = Mpc(i, mesh[me][f"p{1 - i}"], provider, frac_bits)
        out = await program(mpc)
        await mpc.close()
        return out, mpc

    if setup == "ot":
        (r0, m0), (r1, _) = await asyncio.gather(party(0), party(1))
        return r0, r1, m0
    dealer = asyncio.create_task(run_dealer(mesh["dealer"]["p0"], mesh["dealer"]["p1"]))
    (r0, m0), (r1, _) = await asyncio.gather(party(0), party(1))
    await dealer
    return r0, r1, m0


def run2(program: Program, frac_bits: int = 16, setup: str = "dealer") -> tuple[Any, Any, Mpc]:
    """(party 0's result, party 1's result, party 0's engine for its counters)."""
    return asyncio.run(_run(program, frac_bits, setup))
