"""Vertical logistic regression with several feature parties: against scikit-learn and
the same SGD on the joined plaintext (three and four parties, both sigmoids), the model
parts recombined in plaintext, what crosses the wire between a feature party and the label
party or its partner (shares, never a partial score), parties that drop or forge a message,
and the ``train_lr`` component over three parties in a whole job."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from rainbridge.components import ComponentParamError, get_component
from rainbridge.components.spec import ComponentSpec
from rainbridge.data import inspect_dataset, read_columns
from rainbridge.demo.data import DemoSizes, write_demo_data
from rainbridge.errors import (
    ChannelError,
    ConfigError,
    DataError,
    ParameterMismatchError,
    PeerDisconnectedError,
    ProtocolViolationError,
)
from rainbridge.jobs import parse_job
from rainbridge.jobs.execute import run_party
from rainbridge.jobs.local import run_local
from rainbridge.net.channel import Buffer, Channel
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl.vertical_lr import (
    LrParams,
    LrResult,
    LrRoles,
    split_score,
    train_parties,
)
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.ot import OtProvider
from rainbridge.protocols.mpc.ring import decode, encode

Parts = dict[str, np.ndarray]
#: wraps one party's channel to a peer: (me, peer, channel) -> channel
Wrap = Callable[[str, str, Channel], Channel]


class _Tap(Channel):
    """A real channel that records what this end sends and may drop or cut a message (a
    link that fails, a peer that forges a size)."""

    def __init__(self, inner: Channel, *, drop_at: tuple[str, int] | None = None,
                 cut: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.inner, self.drop_at, self.cut = inner, drop_at, cut
        self.session_id, self.local, self.peer = inner.session_id, inner.local, inner.peer
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, tag: str, payload: Buffer) -> None:
        data = bytes(memoryview(payload).cast("B"))
        self.sent.append((tag, data))
        drop = self.drop_at  # a job's component prefixes its tags with its id
        if drop is not None and sum(t.endswith(drop[0]) for t, _ in self.sent) >= drop[1]:
            raise PeerDisconnectedError(f"the link to {self.peer!r} dropped")
        if tag == self.cut:
            data = data[:-8]
        await self.inner.send(tag, data)

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        return await self.inner.recv(tag, timeout=timeout)

    async def close(self) -> None:
        await self.inner.close()


def _train(
    parts: Parts,
    label: str,
    y: np.ndarray,
    params: LrParams,
    wrap: Wrap | None = None,
    *,
    order: dict[str, tuple[str, ...]] | None = None,
    evaluate: bool = True,
    timeout: float = 30,
) -> dict[str, LrResult | BaseException]:
    """Every party in one process over a channel mesh; each pair of the label party and a
    feature party sets its engine up by OT extension. ``wrap`` wraps what (me, peer) send,
    ``order`` gives a party another feature-party order. A party that fails closes its
    channels, as a job's party does, so the others fail at once instead of waiting."""
    names = list(parts)
    feature_parties = tuple(n for n in names if n != label)
    counts = {n: parts[n].shape[1] for n in names}
    mesh = LocalChannel.mesh("lr-nparty", names, timeout=timeout)
    chans: dict[str, dict[str, Channel]] = {
        me: {p: (wrap(me, p, ch) if wrap else ch) for p, ch in mesh[me].items()} for me in names
    }

    async def party(me: str) -> LrResult:
        mine = chans[me]
        try:
            peers = feature_parties if me == label else (label,)

            async def session(peer: str) -> Mpc:
                idx = 0 if me < peer else 1
                provider = OtProvider(idx, mine[peer])
                await provider.setup()
                return Mpc(idx, mine[peer], provider)

            sessions = dict(zip(peers, await asyncio.gather(*map(session, peers)), strict=True))
            fps = (order or {}).get(me, feature_parties)
            channels = {} if me == label else {p: mine[p] for p in fps if p != me}
            roles = LrRoles(me, label, fps, counts)
            return await train_parties(
                roles, sessions, channels, parts[me], y if me == label else None,
                params=params, scores_to_label=evaluate,
            )  # fmt: skip
        except BaseException:
            for ch in mine.values():
                await ch.close()
            raise

    async def main() -> list[LrResult | BaseException]:
        jobs = [asyncio.wait_for(party(n), 2 * timeout) for n in names]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    return dict(zip(names, asyncio.run(main()), strict=True))


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = make_classification(
        n_samples=3000, n_features=12, n_informative=6, n_redundant=2, random_state=seed
    )
    xtr, xte, ytr, yte = train_test_split(x, y.astype(float), test_size=0.3, random_state=0)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    return (xtr - mu) / sd, (xte - mu) / sd, ytr, yte


#: (party, its columns); the first is the label party
THREE = [("bank", slice(0, 4)), ("telecom", slice(4, 8)), ("tax", slice(8, 12))]
FOUR = [("bank", slice(0, 0)), ("telecom", slice(0, 5)), ("tax", slice(5, 9)),
        ("insurer", slice(9, 12))]  # fmt: skip
L2 = 0.001


def _split(x: np.ndarray, layout: list[tuple[str, slice]]) -> Parts:
    return {name: x[:, cols] for name, cols in layout}


def _score(res: dict[str, Any], x: np.ndarray, layout: list[tuple[str, slice]]) -> np.ndarray:
    """The model's parts applied in plaintext: Σ x_p · w_p + the label party's intercept."""
    label = res[layout[0][0]]
    return sum(x[:, cols] @ res[name].weights for name, cols in layout) + label.intercept


@pytest.mark.parametrize(
    ("layout", "sigmoid", "epochs"),
    [
        (THREE, "piecewise", 4),
        (THREE, "taylor", 8),  # the approximation converges more slowly: more epochs
        (FOUR, "piecewise", 4),
        (FOUR, "taylor", 8),
    ],
    ids=["3-piecewise", "3-taylor", "4-piecewise", "4-taylor"],
)
def test_matches_scikit_learn_with_several_feature_parties(
    layout: list[tuple[str, slice]], sigmoid: str, epochs: int
) -> None:
    xtr, xte, ytr, yte = _data()
    # tol 0: every epoch runs, as in the plaintext reference below
    params = LrParams(epochs=epochs, batch_size=256, learning_rate=0.3, l2=L2, tol=0.0,
                      sigmoid=sigmoid, seed=1)  # type: ignore[arg-type]  # fmt: skip
    res = _train(_split(xtr, layout), layout[0][0], ytr, params)
    assert not [r for r in res.values() if isinstance(r, BaseException)], res
    label = res[layout[0][0]]
    assert isinstance(label, LrResult) and label.intercept is not None
    assert all(r.intercept is None for n, r in res.items() if n != layout[0][0])  # type: ignore[union-attr]
    assert [len(r.weights) for r in res.values()] == [c.stop - c.start for _, c in layout]  # type: ignore[union-attr]
    ours = roc_auc_score(yte, _score(res, xte, layout))
    ref = LogisticRegression(C=1.0 / (L2 * len(ytr)), max_iter=5000).fit(xtr, ytr)
    theirs = roc_auc_score(yte, ref.decision_function(xte))
    assert ours >= theirs - 0.01, (ours, theirs)
    # the parts recombined in plaintext give the label party's training scores
    z_train = _score(res, xtr, layout)
    assert label.train_scores is not None
    assert np.allclose(label.train_scores, 1 / (1 + np.exp(-z_train)), atol=1e-9)
    # every party ran the same epochs and saw the same convergence history
    assert len({r.epochs_run for r in res.values()}) == 1  # type: ignore[union-attr]
    assert len({tuple(r.history) for r in res.values()}) == 1  # type: ignore[union-attr]
    # the same SGD as on the joined plaintext, batch for batch, up to fixed-point rounding
    want = _plaintext_sgd(np.hstack([xtr[:, cols] for _, cols in layout]), ytr, params)
    got = np.concatenate([*(res[n].weights for n, _ in layout), [label.intercept]])  # type: ignore[union-attr]
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()


def _plaintext_sgd(x: np.ndarray, y: np.ndarray, p: LrParams) -> np.ndarray:
    """The protocol's mini-batch SGD in floating point: the weights, then the intercept."""
    n = len(y)
    xs = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(xs.shape[1])
    rng = np.random.default_rng(p.seed)
    for _ in range(p.epochs):
        order = rng.permutation(n)
        for start in range(0, n, p.batch_size):
            idx = order[start : start + p.batch_size]
            z = xs[idx] @ w
            sig = 0.5 + 0.25 * z if p.sigmoid == "taylor" else np.clip(z + 0.5, 0.0, 1.0)
            w -= p.learning_rate * xs[idx].T @ (sig - y[idx]) / len(idx)
            w[:-1] -= p.learning_rate * p.l2 * w[:-1]
    return w


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(-1e6, 1e6)))
def test_a_partial_score_is_split_into_shares_that_alone_are_not_it(z: np.ndarray) -> None:
    enc = encode(z, 16)
    to_partner, to_label = split_score(enc)
    assert np.array_equal(to_partner + to_label, enc)  # wraps modulo 2^64
    # each share is uniform: equal to the score in some element with probability n·2^-64
    assert not np.any(to_partner == enc) and not np.any(to_label == enc)
    assert not np.array_equal(to_partner, to_label)


def test_the_partner_and_the_label_party_see_only_shares_of_another_partial_score() -> None:
    xtr, _, ytr, _ = _data()
    taps: dict[tuple[str, str], _Tap] = {}

    def wrap(me: str, peer: str, ch: Channel) -> Channel:
        taps[me, peer] = _Tap(ch)
        return taps[me, peer]

    # taylor: without the partner's mask, tax would get telecom's own share of e, an affine
    # function of telecom's partial score
    params = LrParams(epochs=2, batch_size=512, sigmoid="taylor", seed=3)
    res = _train(_split(xtr, THREE), "bank", ytr, params, wrap)
    assert all(isinstance(r, LrResult) for r in res.values()), res
    to_partner = [d for t, d in taps["tax", "telecom"].sent if t == "lr/z"]
    to_label = [d for t, d in taps["tax", "bank"].sent if t == "lr/z"]
    assert len(to_partner) == len(to_label) == 2 * -(-len(ytr) // 512)
    for k, (a, b) in enumerate(zip(to_partner, to_label, strict=True)):
        sa, sb = np.frombuffer(a, np.uint64), np.frombuffer(b, np.uint64)
        z = decode(sa + sb, 16)
        if k == 0:
            assert np.all(z == 0)  # the weights start at zero
        assert np.all(np.abs(z) < 100)  # the shares add up to a partial score…
        # …and each alone is uniform in the ring, nothing like it (a ±100 value would
        # show up at |v| < 2^23 out of 2^63)
        assert np.all(np.abs(decode(sa, 16)) > 100) and np.all(np.abs(decode(sb, 16)) > 100)
    # what tax gets from the partner is a residual share, uniform too
    for tag, data in taps["telecom", "tax"].sent:
        assert tag in ("lr/e",), tag
        assert np.all(np.abs(decode(np.frombuffer(data, np.uint64), 16)) > 100)
    # and tax sends the label party nothing in the clear but its scores for evaluation
    assert all(
        t in ("lr/z", "lr/change", "lr/scores") or t.startswith(("mpc/", "ot/"))
        for t, _ in taps["tax", "bank"].sent
    )


def test_a_feature_party_that_drops_mid_training_fails_every_party_without_a_hang() -> None:
    xtr, _, ytr, _ = _data()

    def wrap(me: str, peer: str, ch: Channel) -> Channel:
        return _Tap(ch, drop_at=("lr/z", 3)) if (me, peer) == ("tax", "bank") else ch

    params = LrParams(epochs=3, batch_size=256, seed=1)
    res = _train(_split(xtr, THREE), "bank", ytr, params, wrap)
    assert all(isinstance(r, ChannelError) for r in res.values()), res
    assert isinstance(res["bank"], PeerDisconnectedError)


def test_a_forged_residual_share_is_refused() -> None:
    xtr, _, ytr, _ = _data()

    def wrap(me: str, peer: str, ch: Channel) -> Channel:
        return _Tap(ch, cut="lr/e") if (me, peer) == ("telecom", "tax") else ch

    res = _train(_split(xtr, THREE), "bank", ytr, LrParams(epochs=1, seed=1), wrap)
    assert isinstance(res["tax"], ProtocolViolationError), res
    assert all(isinstance(r, ChannelError) for r in res.values()), res


def test_bad_roles_are_refused() -> None:
    with pytest.raises(ConfigError, match="feature party"):
        LrRoles("a", "a", (), {"a": 1})
    with pytest.raises(ConfigError, match="named twice"):
        LrRoles("a", "a", ("a", "b"), {"a": 1, "b": 1})
    with pytest.raises(ConfigError, match="not a party"):
        LrRoles("z", "a", ("b",), {"a": 1, "b": 1})
    with pytest.raises(ConfigError, match="feature count"):
        LrRoles("a", "a", ("b", "c"), {"a": 1, "b": 1})
    roles = LrRoles("b", "a", ("b", "c"), {"a": 1, "b": 1, "c": 2})
    with pytest.raises(ConfigError, match="MPC session"):
        asyncio.run(train_parties(roles, {}, {}, np.zeros((4, 1)), None, params=LrParams()))


# -- the component, in a whole job ----------------------------------------------------------

BANK = ["age", "monthly_income", "loan_balance", "max_overdue_days"]
TEL = ["tenure_months", "monthly_spend", "late_payments_12m", "prepaid"]
TAX = ["annual_taxable_income", "num_employers", "business_owner", "years_filed"]
JOB = f"""
name: joint-default-model-3
parties: [bank, telecom, tax]
components:
  - id: psi
    type: psi
    inputs:
      bank: {{dataset: customers, id: customer_id}}
      telecom: {{dataset: subscribers, id: customer_id}}
      tax: {{dataset: taxpayers, id: customer_id}}
    outputs:
      intersection:
        receivers: [bank, telecom, tax]
        columns:
          bank: [{", ".join(BANK)}, default_12m]
          telecom: [{", ".join(TEL)}]
          tax: [{", ".join(TAX)}]
  # the two-party example's training parameters
  - id: lr
    type: train_lr
    inputs:
      bank: {{from: psi.intersection}}
      telecom: {{from: psi.intersection}}
      tax: {{from: psi.intersection}}
    params:
      label: {{party: bank, column: default_12m}}
      features:
        bank: [{", ".join(BANK)}]
        telecom: [{", ".join(TEL)}]
        tax: [{", ".join(TAX)}]
      epochs: 10
      batch_size: 256
      learning_rate: 0.1
      l2: 0.001
      seed: 7
    outputs:
      model: {{receivers: [bank, telecom, tax]}}
      report: {{receivers: [bank], format: csv}}
"""


def _datasets(tmp: Path) -> dict[str, dict[str, Any]]:
    paths = write_demo_data(tmp / "data", DemoSizes(population=6000, bank=4000, telecom=4000,
                                                    tax=3000))  # fmt: skip
    return {
        "bank": {"customers": inspect_dataset("customers", paths["bank"], "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", paths["telecom"], "customer_id")},
        "tax": {"taxpayers": inspect_dataset("taxpayers", paths["tax"], "customer_id")},
    }


def test_train_lr_over_three_parties_gives_each_its_part(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    res = run_local(parse_job(JOB), ds, tmp_path / "out")
    models = {
        p: json.loads((tmp_path / "out" / p / "lr.model.json").read_text())
        for p in ("bank", "telecom", "tax")
    }
    for p, cols in (("bank", BANK), ("telecom", TEL), ("tax", TAX)):
        m = models[p]
        assert m["party"] == p and m["features"] == cols and len(m["weights"]) == len(cols)
        assert m["parties"] == ["bank", "tax", "telecom"] and m["label_party"] == "bank"
        assert (m["intercept"] is not None) == (p == "bank")
    assert "result" not in res["telecom"]["components"]["lr"]
    assert "result" not in res["tax"]["components"]["lr"]
    metrics = res["bank"]["components"]["lr"]["result"]
    # the three parts on the joined plaintext of the intersection reproduce the bank's AUC
    tables = {
        p: read_columns(next(iter(ds[p].values())), ["customer_id", *cols])
        for p, cols in (("bank", [*BANK, "default_12m"]), ("telecom", TEL), ("tax", TAX))
    }
    common = set(tables["bank"].column("customer_id").to_pylist())
    for t in tables.values():
        common &= set(t.column("customer_id").to_pylist())
    keep = sorted(common)
    rows = {
        p: t.filter(pc.is_in(t.column("customer_id"), value_set=_arr(keep))).sort_by("customer_id")
        for p, t in tables.items()
    }
    y = rows["bank"].column("default_12m").to_numpy().astype(float)
    assert metrics["rows"] == len(y) > 500
    xs = {p: np.column_stack([rows[p].column(c).to_numpy().astype(float) for c in models[p]
                              ["features"]]) for p in models}  # fmt: skip
    z = sum(((xs[p] - m["mean"]) / m["scale"]) @ m["weights"] for p, m in models.items())
    z = z + models["bank"]["intercept"]
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, z), abs=1e-9)
    joined = np.hstack([xs["bank"], xs["telecom"], xs["tax"]])
    std = (joined - joined.mean(0)) / joined.std(0)
    ref = LogisticRegression(max_iter=2000).fit(std, y)
    assert metrics["auc"] >= roc_auc_score(y, ref.decision_function(std)) - 0.01


def _arr(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values)


def test_misaligned_tables_are_refused(tmp_path: Path) -> None:
    ds = _datasets(tmp_path)
    # tax trains on its whole table, not the intersection
    job = JOB.replace("tax: {from: psi.intersection}", "tax: {dataset: taxpayers, id: customer_id}")
    with pytest.raises(ParameterMismatchError, match="not aligned"):
        run_local(parse_job(job), ds, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*/lr.model.json"))


def test_a_feature_party_that_drops_mid_job_fails_every_party_and_leaves_no_model(
    tmp_path: Path,
) -> None:
    ds = _datasets(tmp_path)
    job = parse_job(JOB)
    mesh = LocalChannel.mesh("lr-drop", list(job.parties), timeout=30)
    # feature parties in name order: tax is the partner, telecom shares its partial scores;
    # its link to the bank drops at the third batch, after the PSI and the sessions' setup
    mesh["telecom"]["bank"] = _Tap(mesh["telecom"]["bank"], drop_at=("lr/z", 3))  # type: ignore[assignment]

    async def one(party: str) -> Any:
        try:
            return await run_party(job, party, mesh[party], ds[party], tmp_path / "out" / party)
        except BaseException:
            for ch in mesh[party].values():  # as a job's party does when it fails
                await ch.close()
            raise

    async def main() -> list[Any]:
        jobs = [asyncio.wait_for(one(p), 60) for p in job.parties]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    results = dict(zip(job.parties, asyncio.run(main()), strict=True))
    assert all(isinstance(r, ChannelError) for r in results.values()), results
    assert "dropped" in str(results["telecom"])
    assert not list((tmp_path / "out").glob("*/lr.*"))


def test_a_feature_column_with_nan_is_refused_before_training(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ds = _datasets(tmp_path)
    tax = pacsv.read_csv(ds["tax"]["taxpayers"].path)
    years = tax.column("years_filed").to_numpy().astype(float)
    years[::7] = np.nan
    i = tax.column_names.index("years_filed")
    pacsv.write_csv(tax.set_column(i, "years_filed", pa.array(years)), tmp_path / "tax.csv")
    ds["tax"] = {"taxpayers": inspect_dataset("taxpayers", tmp_path / "tax.csv", "customer_id")}
    with pytest.raises(DataError, match="'years_filed' of 'tax' holds NaN"):
        run_local(parse_job(JOB), ds, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*/lr.*"))


def _spec(**change: Any) -> ComponentSpec:
    spec: dict[str, Any] = {
        "id": "lr",
        "type": "train_lr",
        "inputs": {p: {"from": "psi.intersection"} for p in ("bank", "telecom", "tax")},
        "params": {"label": {"party": "bank", "column": "y"},
                   "features": {"telecom": ["a"], "tax": ["b"]}},
        "outputs": {"model": {"receivers": ["bank", "tax", "telecom"]},
                    "report": {"receivers": ["bank"]}},
    }  # fmt: skip
    for key, value in change.items():
        spec[key] = {**spec[key], **value}
    return ComponentSpec.model_validate(spec)


def test_a_label_party_without_features_is_accepted_and_every_party_declares_its_uses() -> None:
    comp, spec = get_component("train_lr"), _spec()
    comp.check(spec)
    assert comp.column_uses(spec, "bank", "id") == {"customer_id": {"join"}, "y": {"aggregate"}}
    assert comp.columns_used(spec, "tax", "id") == ["b"]
    assert comp.columns_used(spec, "telecom", "id") == ["a"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"params": {"label": {"party": "insurer", "column": "y"}}}, "label.party"),
        ({"params": {"features": {"telecom": ["a"], "insurer": ["b"]}}}, "not a data party"),
        ({"params": {"features": {"bank": ["c"], "telecom": ["a"]}}}, "'tax' has no features"),
        ({"inputs": {"insurer": {"role": "dealer"}}}, "dealer serves two data parties"),
        ({"outputs": {"model": {"receivers": ["bank", "telecom"]}}}, "every data part"),
        ({"outputs": {"report": {"receivers": ["tax"]}}}, "label party alone"),
    ],
)
def test_bad_specs_with_several_feature_parties_are_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ComponentParamError, match=message):
        get_component("train_lr").check(_spec(**change))
