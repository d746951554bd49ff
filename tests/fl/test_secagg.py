"""Secure aggregation: the sum is right, single updates stay hidden, dropped clients are
survived (or refused below the threshold), and a client refuses to unmask anyone."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.secagg import (
    FRAC_BITS,
    PRIME,
    SecAggClient,
    SecAggError,
    SecAggServer,
    shamir_join,
    shamir_split,
)
from rainbridge.protocols.mpc.ring import encode

NAMES = ["c1", "c2", "c3", "c4", "c5"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, PRIME - 1), st.integers(1, 6), st.integers(0, 5))
def test_any_t_shamir_shares_recover_the_secret(secret: int, t: int, extra: int) -> None:
    shares = shamir_split(secret, t + extra, t)
    assert shamir_join(shares[extra:]) == secret
    if t > 1:  # fewer than t shares give (almost surely) something else
        assert shamir_join(shares[: t - 1]) != secret


def _run(xs: dict[str, np.ndarray], behaviour: dict[str, str], threshold: int = 3, rounds: int = 1):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("secagg", ["server", *NAMES], timeout=10)
        server = SecAggServer({n: mesh["server"][n] for n in NAMES}, threshold)
        seen: list[bytes] = []
        orig = mesh["server"]["c1"].recv_into

        async def spy(tag, buf):  # type: ignore[no-untyped-def]
            got = await orig(tag, buf)
            seen.append(bytes(buf))
            return got

        mesh["server"]["c1"].recv_into = spy  # type: ignore[method-assign]

        async def client(n: str) -> None:
            c = SecAggClient(n, mesh[n]["server"])
            await c.setup()
            for _ in range(rounds):
                if behaviour.get(n) == "drop-after-sharing":
                    c.rnd += 1
                    await c._send_shares("secagg/seed-shares", 12345)
                    await c._recv_shares("secagg/seed-shares")
                    await c.ch.recv_json("secagg/alive")
                    await c.ch.abort("gone")
                    return
                await c.submit(xs[n])

        async def serve() -> list:  # type: ignore[type-arg]
            await server.setup()
            return [await server.aggregate(len(xs["c1"])) for _ in range(rounds)]

        results = await asyncio.gather(serve(), *(client(n) for n in NAMES), return_exceptions=True)
        return results[0], seen

    return asyncio.run(main())


def test_the_server_gets_the_sum_and_never_a_single_update() -> None:
    rng = np.random.default_rng(4)
    xs = {n: rng.normal(size=50) for n in NAMES}
    (out,), seen = _run(xs, {})
    total, survivors = out
    assert survivors == NAMES
    assert np.allclose(total, sum(xs.values()), atol=1e-6)
    # what the server received from c1 is masked: no coordinate equals c1's encoding
    masked = np.frombuffer(seen[0], dtype=np.uint64)
    assert not np.any(masked == encode(xs["c1"], FRAC_BITS))


def test_a_client_dropping_mid_round_is_survived_and_left_out() -> None:
    rng = np.random.default_rng(5)
    xs = {n: rng.normal(size=20) for n in NAMES}
    (out,), _ = _run(xs, {"c3": "drop-after-sharing"})
    total, survivors = out
    assert survivors == ["c1", "c2", "c4", "c5"]
    assert np.allclose(total, sum(v for n, v in xs.items() if n != "c3"), atol=1e-6)


def test_too_many_dropouts_fail_the_round_clearly() -> None:
    rng = np.random.default_rng(6)
    xs = {n: rng.normal(size=5) for n in NAMES}
    behaviour = {n: "drop-after-sharing" for n in ("c1", "c2", "c3")}
    result, _ = _run(xs, behaviour)
    assert isinstance(result, SecAggError) and "needed" in str(result)


def test_a_client_refuses_to_reveal_both_secrets_of_one_client() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("secagg-evil", ["server", "a", "b", "c"], timeout=10)
        clients = [SecAggClient(n, mesh[n]["server"]) for n in ("a", "b", "c")]
        server = SecAggServer({n: mesh["server"][n] for n in ("a", "b", "c")}, 2)

        async def evil_server() -> None:
            await server.setup()
            alive = await server._relay("secagg/seed-shares", ["a", "b", "c"])
            for n in alive:
                await server.chs[n].send_json("secagg/alive", alive)
            for n in alive:
                await server.chs[n].recv("secagg/masked/1")
            # ask for b's seed *and* b's mask key: that would unmask b alone
            for n in alive:
                await server.chs[n].send_json(
                    "secagg/unmask", {"survivors": ["b"], "dropped": ["b"]}
                )

        async def client(c: SecAggClient) -> None:
            await c.setup()
            await c.submit(np.ones(3))

        res = await asyncio.gather(
            evil_server(), *(client(c) for c in clients), return_exceptions=True
        )
        assert all(isinstance(r, SecAggError) for r in res[1:]), res

    asyncio.run(main())


def test_two_rounds_with_a_client_lost_in_the_first() -> None:
    rng = np.random.default_rng(7)
    xs = {n: rng.normal(size=8) for n in NAMES}
    results, _ = _run(xs, {"c5": "drop-after-sharing"}, rounds=2)
    first, second = results
    want = sum(v for n, v in xs.items() if n != "c5")
    assert np.allclose(first[0], want, atol=1e-6) and np.allclose(second[0], want, atol=1e-6)
    assert second[1] == ["c1", "c2", "c3", "c4"]
