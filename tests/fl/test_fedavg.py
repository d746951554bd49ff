"""FedAvg with secure aggregation against centralised training on the pooled rows:
breast-cancer data split across 5 clients."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from rainbridge.errors import ConfigError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl import fedavg
from rainbridge.protocols.fl.fedavg import FedAvgParams, Model
from rainbridge.protocols.fl.secagg import SecAggClient, SecAggServer

NAMES = [f"c{i}" for i in range(5)]


def _data():  # type: ignore[no-untyped-def]
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    return (xtr - mu) / sd, (xte - mu) / sd, ytr.astype(float), yte.astype(float)


def _federate(xtr, ytr, params, drop=None):  # type: ignore[no-untyped-def]
    shards = np.array_split(np.random.default_rng(0).permutation(len(ytr)), len(NAMES))

    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("fedavg", ["server", *NAMES], timeout=20)
        sa = SecAggServer({n: mesh["server"][n] for n in NAMES}, threshold=3)

        async def serve():  # type: ignore[no-untyped-def]
            await sa.setup()
            return await fedavg.server(sa, xtr.shape[1], params)

        async def client(i: int, n: str):  # type: ignore[no-untyped-def]
            c = SecAggClient(n, mesh[n]["server"])
            await c.setup()
            if n == drop:  # trains for a while, then its machine goes away
                model = Model(xtr.shape[1], params)
                buf = np.empty(model.size)
                await c.ch.recv_into("fedavg/global/0", buf.data.cast("B"))
                await c.ch.abort("power cut")
                return None
            idx = shards[i]
            return await fedavg.client(c, xtr[idx], ytr[idx], params)

        return await asyncio.gather(serve(), *(client(i, n) for i, n in enumerate(NAMES)))

    return asyncio.run(main())


@pytest.mark.parametrize("model", ["lr", "mlp"])
def test_fedavg_matches_centralised_training(model: str) -> None:
    xtr, xte, ytr, yte = _data()
    params = FedAvgParams(rounds=30, local_epochs=1, batch_size=16, learning_rate=0.05,
                          l2=0.001, model=model, hidden=8, seed=3)  # fmt: skip
    (theta, per_round), *finals = _federate(xtr, ytr, params)
    assert per_round == [5] * 30
    assert all(np.array_equal(f, theta) for f in finals)  # every client got the final model
    m = Model(xtr.shape[1], params)
    ours = roc_auc_score(yte, m.score(theta, xte))
    if model == "lr":
        ref = LogisticRegression(C=1 / (0.001 * len(ytr)), max_iter=5000).fit(xtr, ytr)
        central = roc_auc_score(yte, ref.decision_function(xte))
    else:  # the same network trained on the pooled rows
        central_params = FedAvgParams(**{**params.__dict__, "rounds": 1, "local_epochs": 30})
        th = Model(xtr.shape[1], central_params).local_train(
            Model(xtr.shape[1], central_params).init(), xtr, ytr, np.random.default_rng(1)
        )
        central = roc_auc_score(yte, m.score(th, xte))
    assert ours >= central - 0.01, (ours, central)


def test_a_client_lost_mid_training_is_left_out_and_training_finishes() -> None:
    xtr, xte, ytr, yte = _data()
    params = FedAvgParams(rounds=10, learning_rate=0.05, batch_size=16)
    (theta, per_round), *finals = _federate(xtr, ytr, params, drop="c2")
    assert per_round == [4] * 10
    assert finals[2] is None
    assert roc_auc_score(yte, Model(xtr.shape[1], params).score(theta, xte)) > 0.98


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError):
        FedAvgParams(rounds=0)
    with pytest.raises(ConfigError):
        FedAvgParams(model="cnn")  # type: ignore[arg-type]
