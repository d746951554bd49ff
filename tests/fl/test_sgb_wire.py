"""SecureBoost's level messages: rows' moves and split answers as one bit a row, exactly
sized or refused at either party; a forged histogram request, an oversized histogram, and a
peer that hangs up mid-tree fail the other party with a typed error."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge._core import OuPublicKey, OuSecretKey
from rainbridge.errors import DataError, PeerDisconnectedError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.secureboost import (
    SgbParams,
    move_rows,
    train_feature,
    train_label,
    unpack_rows,
)

CT = 256


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), max_size=70))
def test_bits_unpack_to_the_rows_and_only_at_their_size(bits: list[bool]) -> None:
    n = len(bits)
    data = np.packbits(np.asarray(bits, dtype=bool)).tobytes()
    assert unpack_rows(data, n, "x").tolist() == bits
    for wrong in (data + b"\x00", data[:-1] if data else b"\x00"):
        with pytest.raises(ProtocolViolationError, match="expected"):
            unpack_rows(wrong, n, "x")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=50),
    st.sets(st.integers(0, 6)),
)
def test_moves_send_rows_of_split_nodes_to_their_children(
    rows: list[tuple[int, bool]], split: set[int]
) -> None:
    pos = np.asarray([k for k, _ in rows], dtype=np.int32)
    left = np.asarray([b for _, b in rows], dtype=bool)
    got = move_rows(pos, sorted(split), left)
    want = [(2 * k + (1 if b else 2)) if k in split else k for k, b in rows]
    assert got.tolist() == want


class _Label:
    """Stands in for the label party: a valid key and tree, then one forged level."""

    def __init__(self, forge: str) -> None:
        self.forge = forge

    async def run(self, ch: Any, n: int) -> None:
        pk = OuSecretKey.generate(1024).public_key()
        await ch.send("sgb/pk", pk.to_bytes())
        await ch.send_json("sgb/setup", {"rows": n, "max_depth": 3})
        await ch.recv_json("sgb/features")
        await ch.send_json("sgb/next", {"kind": "tree"})
        await ch.send("sgb/rows", np.arange(n, dtype="<i4").tobytes())
        await ch.send("sgb/gh", pk.encrypt_packed(np.zeros((n, 2), dtype="<i8"), 2, 64))
        if self.forge == "twice":
            await ch.send_json("sgb/level", {"compute": [0, 0]})
            return
        await ch.send_json("sgb/level", {"compute": [0], "moved": []})
        await ch.recv("sgb/hist")
        await ch.send_json("sgb/splits", {"splits": [[0, 0, 0]]})
        await ch.recv("sgb/left")
        if self.forge == "moved":  # a node at the last level has no children to move to
            await ch.send_json("sgb/level", {"compute": [1], "moved": [7]})
            return
        await ch.send_json("sgb/level", {"compute": [1], "moved": [0]})
        size = (n + 7) // 8 + (1 if self.forge == "long" else -1)
        await ch.send("sgb/moves", b"\x00" * size)


@pytest.mark.parametrize(
    ("forge", "match"),
    [("twice", "or twice"), ("moved", "invalid node"), ("long", "moves"), ("short", "moves")],
)
def test_a_feature_party_refuses_forged_levels(forge: str, match: str) -> None:
    mesh = LocalChannel.mesh(f"sgb-wire-{forge}", ["label", "feat"])
    x = np.random.default_rng(0).normal(size=(30, 3))

    async def main() -> None:
        forger = asyncio.create_task(_Label(forge).run(mesh["label"]["feat"], 30))
        try:
            await train_feature(mesh["feat"]["label"], x, me="feat")
        finally:
            forger.cancel()

    with pytest.raises(ProtocolViolationError, match=match):
        asyncio.run(main())


class _Feature:
    """Stands in for a feature party of one feature in 3 bins: valid ciphertexts, then a
    forged histogram or split answer, or it hangs up."""

    def __init__(self, forge: str) -> None:
        self.forge = forge

    async def run(self, ch: Any, n: int) -> None:
        pk = OuPublicKey.from_bytes(await ch.recv("sgb/pk"))
        await ch.recv_json("sgb/setup")
        info: dict[str, Any] = {"features": 1, "n_bins": 3, "n_splits": [2], "missing": [False]}
        if self.forge == "no missing":
            del info["missing"]
        if self.forge == "huge":  # 2^18 features of no split: small messages, 8 GiB of nodes
            k = 1 << 18
            info = {"features": k, "n_bins": 256, "n_splits": [0] * k, "missing": [False] * k}
        await ch.send_json("sgb/features", info)
        await ch.recv_json("sgb/next")
        await ch.recv("sgb/rows")
        await ch.recv("sgb/gh")
        if self.forge == "hang up":
            await ch.close()
            return
        lvl = await ch.recv_json("sgb/level")
        cells = 3 * len(lvl["compute"]) + (1 if self.forge == "long histogram" else 0)
        if self.forge == "overflowing histogram":
            # valid ciphertexts whose plaintexts run past the two slots the label party reads
            # (2^192): their low 128 bits are zero, the sums are not
            vals = np.zeros((cells, 4), dtype="<i8")
            vals[:, 3] = 1
            await ch.send("sgb/hist", pk.encrypt_packed(vals, 4, 64))
        else:
            hist = pk.encrypt_packed(np.zeros((cells, 2), dtype="<i8"), 2, 64)
            await ch.send("sgb/hist", hist)
        await ch.recv_json("sgb/splits")
        size = (n + 7) // 8 + (1 if self.forge == "long answer" else 0)
        await ch.send("sgb/left", b"\x00" * size)
        await ch.recv_json("sgb/level")  # the label party goes on: hang up mid-tree
        await ch.close()


@pytest.mark.parametrize(
    ("forge", "error", "match"),
    [
        ("no missing", ProtocolViolationError, "described its features wrongly"),
        ("huge", DataError, "GiB at the label party"),
        ("long histogram", ProtocolViolationError, "histograms of the wrong size"),
        ("long answer", ProtocolViolationError, "split answer"),
        ("overflowing histogram", ProtocolViolationError, "top slot does not fit"),
        ("hang up", PeerDisconnectedError, None),
        ("hang up later", PeerDisconnectedError, None),
    ],
)
def test_the_label_party_refuses_forged_answers_and_stops_at_a_hang_up(
    forge: str, error: type[Exception], match: str | None
) -> None:
    mesh = LocalChannel.mesh(f"sgb-wire-label-{forge}", ["label", "feat"])
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), (rng.random(40) < 0.5).astype(float)

    async def main() -> None:
        other = asyncio.create_task(_Feature(forge).run(mesh["feat"]["label"], 40))
        try:
            await train_label(
                {"feat": mesh["label"]["feat"]}, x, y,
                SgbParams(key_bits=1024, max_depth=3, min_child_weight=0.0), me="label",
            )  # fmt: skip
        finally:
            other.cancel()

    with pytest.raises(error, match=match):
        asyncio.run(main())


def test_the_feature_party_stops_when_the_label_party_hangs_up_mid_tree() -> None:
    mesh = LocalChannel.mesh("sgb-wire-label-gone", ["label", "feat"])
    x = np.random.default_rng(2).normal(size=(30, 3))

    async def label(ch: Any) -> None:
        pk = OuSecretKey.generate(1024).public_key()
        await ch.send("sgb/pk", pk.to_bytes())
        await ch.send_json("sgb/setup", {"rows": 30, "max_depth": 3})
        await ch.recv_json("sgb/features")
        await ch.send_json("sgb/next", {"kind": "tree"})
        await ch.send("sgb/rows", np.arange(30, dtype="<i4").tobytes())
        await ch.send("sgb/gh", pk.encrypt_packed(np.zeros((30, 2), dtype="<i8"), 2, 64))
        await ch.send_json("sgb/level", {"compute": [0], "moved": []})
        await ch.recv("sgb/hist")
        await ch.close()

    async def main() -> None:
        other = asyncio.create_task(label(mesh["label"]["feat"]))
        try:
            await train_feature(mesh["feat"]["label"], x, me="feat")
        finally:
            await other

    with pytest.raises(PeerDisconnectedError):
        asyncio.run(main())
