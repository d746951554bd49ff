"""The label party's nonce reserve (``OuNonceMaker``) in SecureBoost: made only where a
feature party will take ciphertexts, and stopped when training ends, by an error included
(a reserve left filling keeps a core's idle time and the nonces' memory busy for nothing)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from rainbridge._core import OuNonceMaker, OuSecretKey
from rainbridge.net.channel import Channel
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl import secureboost
from rainbridge.protocols.fl.secureboost import SgbParams, train_feature, train_label


def _data(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 2] > 0).astype(float)
    return x, y


class _Spy:
    """Records every reserve the label party makes and the targets it fills to."""

    def __init__(self) -> None:
        self.made: list[OuNonceMaker] = []
        self.fills: list[int] = []

    def __call__(self, sk: OuSecretKey) -> Any:
        spy, real = self, OuNonceMaker(sk)
        self.made.append(real)

        class Recording:
            def fill(self, target: int) -> None:
                spy.fills.append(target)
                real.fill(target)

            def take(self, at_most: int) -> Any:
                return real.take(at_most)

            @property
            def ready(self) -> int:
                return real.ready

        return Recording()


def test_no_nonces_are_made_without_a_feature_party(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(secureboost, "OuNonceMaker", spy)
    x, y = _data()
    p = SgbParams(trees=2, max_depth=2, key_bits=1024, seed=1)
    res = asyncio.run(train_label({}, x, y, p, me="label"))
    assert len(res.trees) == 2
    # alone nothing is encrypted: a reserve would only burn a core and hold memory
    assert spy.fills == []


def test_the_reserve_stops_when_training_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(secureboost, "OuNonceMaker", spy)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a peer went away mid-tree")

    # fails after the first tree's encryption, when the next tree's reserve is filling
    monkeypatch.setattr(secureboost, "_grow", broken)
    x, y = _data()
    p = SgbParams(trees=3, max_depth=2, key_bits=1024, seed=1)
    mesh = LocalChannel.mesh("sgb-nonces", ["label", "feat"])

    async def feature_party(ch: Channel) -> None:
        # just enough of a feature party to be sent the first tree's ciphertexts
        await ch.recv("sgb/pk")
        await ch.recv_json("sgb/setup")
        desc = {"features": 2, "n_bins": 8, "n_splits": [7, 7], "missing": [False, False]}
        await ch.send_json("sgb/features", desc)

    async def main() -> None:
        await asyncio.gather(
            train_label({"feat": mesh["label"]["feat"]}, x[:, :2], y, p, me="label"),
            feature_party(mesh["feat"]["label"]),
        )

    with pytest.raises(RuntimeError, match="went away") as err:
        asyncio.run(main())
    # a caller holding the error (to log or re-raise it) keeps the label party's frame, and
    # so its reserve, alive through the traceback (here the spy keeps it too): the
    # filling must have been stopped on the way out, not left to run to its target
    assert err.value.__traceback__ is not None
    assert len(spy.made) == 1 and spy.fills[-1] > 0
    (maker,) = spy.made
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert maker.ready == 0, "the reserve kept filling after training failed"
        time.sleep(0.05)


def test_the_first_reserve_is_the_first_trees_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(secureboost, "OuNonceMaker", spy)
    x, y = _data()
    # 120 rows: 24 held out for validation, half of the other 96 drawn for every tree
    p = SgbParams(
        trees=2, max_depth=2, key_bits=1024, seed=1, subsample=0.5, validation_fraction=0.2
    )
    mesh = LocalChannel.mesh("sgb-nonces-rows", ["label", "feat"])

    async def main() -> None:
        await asyncio.gather(
            train_label({"feat": mesh["label"]["feat"]}, x[:, :2], y, p, me="label"),
            train_feature(mesh["feat"]["label"], x[:, 2:], me="feat", max_bin=p.max_bin),
        )

    asyncio.run(main())
    # a nonce made past the rows a tree encrypts is discarded at its take: wasted work
    assert spy.fills == [48, 48, 48]
