"""The label party's nonce reserve (``OuNonceMaker``) in SecureBoost: made only where a
feature party will take ciphertexts, and stopped when training ends, by an error included
(a reserve left filling keeps a core's idle time and the nonces' memory busy for nothing)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from rainbridge._core import OuNonceMaker, OuSecretKey
from rainbridge.protocols.fl import secureboost
from rainbridge.protocols.fl.secureboost import SgbParams, train_label


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
