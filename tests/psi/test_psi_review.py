"""RR22 PSI against forged sender values: a value repeated by the sender must not count a
common ID twice (exact or refused)."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pyarrow as pa
import pytest

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi import run_rr22
from rainbridge.protocols.psi.intersect import truncation_bytes
from rainbridge.protocols.psi.items import as_items


def test_a_sender_repeating_a_matching_value_is_refused_not_counted_twice() -> None:
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["a", "b"])

        async def liar() -> None:
            ch = mesh["b"]["a"]
            hello = await ch.recv_json("rr22/hello")
            mine = bytes(16)
            await ch.send_json("rr22/hello", {**hello, "seed": mine.hex()})
            first, second = sorted([("a", bytes.fromhex(hello["seed"])), ("b", mine)])
            seed = hashlib.sha256(b"rainbridge/rr22/seed" + first[1] + second[1]).digest()
            it = as_items(pa.array(["x", "q"], type=pa.large_string()))
            digests = _core.rr22_digests(seed, it.data, it.offsets)
            await ch.recv_json("rr22/0/size")
            await ch.send_json("rr22/0/size", 2)
            s = _core.Rr22Sender(seed, digests, 2)
            await ch.send("rr22/0/base", s.on_setup(await ch.recv("rr22/0/setup")))
            await ch.send("rr22/0/trees", s.on_matrix(await ch.recv("rr22/0/matrix")))
            width = min(16, truncation_bytes(2, 2))
            values, order = s.on_store_shuffled(await ch.recv("rr22/0/store"), width)
            rows = np.frombuffer(values, dtype=np.uint8).reshape(-1, width)
            x = rows[np.frombuffer(order, dtype="<u4").tolist().index(0)]
            # the value of "x" twice, in place of "q"'s
            await ch.send("rr22/0/values", np.concatenate([x, x]).tobytes())
            await ch.recv("rr22/0/hits")

        res, _ = await asyncio.gather(run_rr22("a", mesh["a"], pa.array(["x", "y"])), liar())
        # without the check the leader reports 2 common IDs where there is 1
        assert res.size == 1

    with pytest.raises(ProtocolViolationError, match="repeat"):
        asyncio.run(main())


def test_ecdh_masked_values_repeated_by_a_peer_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bob masks alice's values and sends every row as a copy of the first: each of alice's
    # IDs would match bob's copy of her first one
    from rainbridge.protocols.psi import EcdhPsiParams, run_role
    from rainbridge.protocols.psi import ecdh as ecdh_mod

    honest = ecdh_mod._Follower.reply

    async def copying(self, s, si, b, hop, body):  # type: ignore[no-untyped-def]
        if s == self.plan.leader:
            arr = np.frombuffer(bytes(body), dtype=np.uint8).reshape(-1, ecdh_mod._ELEMENT)
            body = np.repeat(arr[:1], len(arr), axis=0).tobytes()
        await honest(self, s, si, b, hop, body)

    monkeypatch.setattr(ecdh_mod._Follower, "reply", copying)

    async def main() -> None:
        # bob waits for a result alice refuses to give: a short timeout ends his wait
        mesh = LocalChannel.mesh("s", ["alice", "bob"], timeout=2)
        p = EcdhPsiParams()
        # the forger's own outcome does not matter: alice's must be exact or refused
        alice, _ = await asyncio.gather(
            run_role("alice", mesh["alice"], pa.array(["a", "b", "c"]), p),
            run_role("bob", mesh["bob"], pa.array(["a", "b"]), p),
            return_exceptions=True,
        )
        if isinstance(alice, BaseException):
            raise alice
        # without the check alice reports 3 common IDs where there are at most 2
        assert alice.size <= 2

    with pytest.raises(ProtocolViolationError, match="repeat"):
        asyncio.run(main())


def test_a_match_list_of_partial_entries_is_a_protocol_violation() -> None:
    # alice (the leader) answers bob's values with a match list cut mid-entry
    async def main() -> None:
        mesh = LocalChannel.mesh("s", ["a", "b"])

        async def liar() -> None:
            ch = mesh["a"]["b"]
            hello = await ch.recv_json("rr22/hello")
            mine = bytes(16)
            await ch.send_json("rr22/hello", {**hello, "seed": mine.hex()})
            first, second = sorted([("b", bytes.fromhex(hello["seed"])), ("a", mine)])
            seed = hashlib.sha256(b"rainbridge/rr22/seed" + first[1] + second[1]).digest()
            it = as_items(pa.array(["x", "q"], type=pa.large_string()))
            digests = _core.rr22_digests(seed, it.data, it.offsets)
            await ch.send_json("rr22/0/size", 2)
            await ch.recv_json("rr22/0/size")
            r, m0 = _core.Rr22Receiver.start(seed, digests)
            await ch.send("rr22/0/setup", m0)
            await ch.send("rr22/0/matrix", r.on_base(await ch.recv("rr22/0/base")))
            await ch.send("rr22/0/store", r.on_trees(await ch.recv("rr22/0/trees")))
            await ch.recv("rr22/0/values")
            await ch.send("rr22/0/hits", b"\x00" * 5)

        await asyncio.gather(run_rr22("b", mesh["b"], pa.array(["x", "y"])), liar())

    with pytest.raises(ProtocolViolationError, match="match list"):
        asyncio.run(main())
