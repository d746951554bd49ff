"""SecureBoost and batch scoring by row blocks on the ``ray`` compute engine (a real local
Ray instance): the block splitting; the sharded encryption, decryption, histograms and leaf
marks against one call each; two- and three-party training whose trees and scores are
identical to the local engine's; the components on each engine; forged ciphertexts refused
through the tasks."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge._core import OuSecretKey
from rainbridge.compute.engine import ComputeEngine, ComputeSettings, LocalEngine, RayEngine
from rainbridge.data import inspect_dataset
from rainbridge.errors import ConfigError, PeerDisconnectedError, ProtocolViolationError
from rainbridge.jobs import parse_job
from rainbridge.jobs.execute import run_party
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.fl import sharding
from rainbridge.protocols.fl.secureboost import SgbParams, SgbResult, train_feature, train_label
from rainbridge.protocols.fl.sharding import (
    CT_BYTES,
    MIN_BLOCK,
    RowShards,
    block_size,
    row_blocks,
    row_shards,
)
from rainbridge.protocols.fl.trees import TreePart, bin_features, leaf_marks

SLOT_BITS = 64
T = TypeVar("T")


class _CountingRayEngine(RayEngine):
    """The ray engine, noting which task functions it ran (to show the work was sharded)."""

    def __init__(self, settings: ComputeSettings) -> None:
        super().__init__(settings)
        self.ran: Counter[str] = Counter()

    async def map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]:
        self.ran[fn.__name__] += len(items)
        return await super().map(fn, items)


@pytest.fixture(scope="module")
def ray_engine(ray_local: Any) -> Iterator[_CountingRayEngine]:
    engine = _CountingRayEngine(ComputeSettings(engine="ray", workers=2))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())  # joined, not started here: Ray stays up for the session


@pytest.fixture(scope="module")
def key() -> OuSecretKey:
    return OuSecretKey.generate(1024)


# -- blocks -----------------------------------------------------------------------------------


@given(st.integers(0, 300_000), st.integers(1, 70_000))
def test_row_blocks_cover_every_row_once_in_order(rows: int, size: int) -> None:
    spans = row_blocks(rows, size)
    assert len(spans) == -(-rows // size)
    assert all(0 < hi - lo <= size for lo, hi in spans)
    assert (
        max((hi - lo for lo, hi in spans), default=0)
        - min((hi - lo for lo, hi in spans), default=0)
        <= 1
    )
    # consecutive, from the first row to the last: every row once, in order
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    if spans:
        assert spans[0][0] == 0 and spans[-1][1] == rows


@given(st.integers(0, 10**9), st.integers(0, 512), st.integers(1, 1 << 16))
def test_block_size_is_four_blocks_a_worker_above_the_minimum(
    rows: int, workers: int, minimum: int
) -> None:
    size = block_size(rows, workers, minimum)
    assert size == max(minimum, -(-rows // (4 * max(1, workers))))
    assert len(row_blocks(rows, size)) <= 4 * max(1, workers)
    assert block_size(rows, workers) == max(MIN_BLOCK, -(-rows // (4 * max(1, workers))))


def test_empty_blocks_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one row"):
        row_blocks(10, 0)
    with pytest.raises(ConfigError, match="at least one row"):
        block_size(10, 2, 0)


def test_only_the_ray_engine_shards(ray_engine: RayEngine) -> None:
    assert row_shards(None) is None
    assert row_shards(LocalEngine()) is None
    shards = row_shards(ray_engine, 5)
    assert isinstance(shards, RowShards) and shards.minimum == 5
    assert row_shards(ray_engine) == RowShards(ray_engine, MIN_BLOCK)


# -- the sharded kernels against one call --------------------------------------------------------


def _values(rng: np.random.Generator, rows: int) -> np.ndarray:
    return rng.integers(-(2**52), 2**52, size=(rows, 2), dtype=np.int64)


def _histogram_case(
    rng: np.random.Generator, rows: int, features: int, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bins = rng.integers(0, n_bins, size=(rows, features), dtype=np.uint8)
    # -1 (the row is in no node) and nodes nobody asks for must add nothing
    node_of_row = rng.integers(-1, 5, size=rows).astype("<i4")
    nodes = np.asarray(rng.permutation(5)[: rng.integers(1, 4)], dtype="<i4")
    return bins, node_of_row, nodes


async def _check_kernels(
    engine: ComputeEngine, sk: OuSecretKey, rows: int, minimum: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pk = sk.public_key()
    shards = RowShards(engine, minimum)
    vals = _values(rng, rows)
    cts = await shards.encrypt_packed(pk, vals, 2, SLOT_BITS)
    # one ciphertext per row, in the rows' order: what one call sends
    assert len(cts) == rows * CT_BYTES
    single = sk.decrypt_packed(cts, 2, SLOT_BITS, 0)
    assert np.array_equal(np.frombuffer(single, "<f8").reshape(rows, 2), vals.astype(np.float64))
    assert await shards.decrypt_packed(sk, cts, 2, SLOT_BITS, 0) == single

    features, n_bins = 3, 4
    bins, node_of_row, nodes = _histogram_case(rng, rows, features, n_bins)
    ct_rows = np.frombuffer(cts, np.uint8).reshape(-1, CT_BYTES)
    got = await shards.histogram(pk, ct_rows, bins, features, node_of_row, nodes, n_bins)
    whole = pk.load(cts).histogram(bins, features, node_of_row, nodes, n_bins)
    assert len(got) == len(whole) == len(nodes) * features * n_bins * CT_BYTES
    assert sk.decrypt_packed(got, 2, SLOT_BITS, 0) == sk.decrypt_packed(whole, 2, SLOT_BITS, 0)
    one = (1).to_bytes(CT_BYTES, "little")  # an empty bin left un-randomised
    assert all(got[i : i + CT_BYTES] != one for i in range(0, len(got), CT_BYTES))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 40), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_sharded_kernels_equal_one_call_on_threads(
    key: OuSecretKey, rows: int, minimum: int, seed: int
) -> None:
    # the same sharding over the local engine's threads: fast enough for many cases
    asyncio.run(_check_kernels(LocalEngine(ComputeSettings(workers=2)), key, rows, minimum, seed))


@pytest.mark.parametrize("rows", [0, 1, 8, 9, 61])
def test_sharded_kernels_equal_one_call_on_ray(
    ray_engine: RayEngine, key: OuSecretKey, rows: int
) -> None:
    asyncio.run(_check_kernels(ray_engine, key, rows, 8, rows))


def _trees_and_x(rows: int) -> tuple[list[TreePart], np.ndarray]:
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 3))
    x[rng.random(size=x.shape) < 0.1] = np.nan  # missing values go right
    trees = [
        TreePart({0: "me", 1: "me", 2: "them"}, {0: (0, 0.1), 1: (2, -0.3)}, [3, 4, 5, 6]),
        TreePart({0: "them"}, {}, [1, 2]),
        TreePart({}, {}, []),
    ]
    return trees, x


@pytest.mark.parametrize("rows", [0, 1, 50, 257])
def test_leaf_marks_by_blocks_equal_one_call(ray_engine: RayEngine, rows: int) -> None:
    trees, x = _trees_and_x(rows)
    got = asyncio.run(RowShards(ray_engine, 16).leaf_marks(trees, x))
    assert got == leaf_marks(trees, x)


def test_forged_ciphertexts_are_refused_through_the_tasks(
    ray_engine: RayEngine, key: OuSecretKey
) -> None:
    pk = key.public_key()
    shards = RowShards(ray_engine, 4)
    cts = bytearray(pk.encrypt_packed(np.zeros((12, 2), dtype="<i8"), 2, SLOT_BITS))
    cts[9 * CT_BYTES : 10 * CT_BYTES] = b"\xff" * CT_BYTES  # not below n, in the third block
    with pytest.raises(ValueError, match="out of range"):
        asyncio.run(shards.decrypt_packed(key, bytes(cts), 2, SLOT_BITS, 0))
    rows = np.frombuffer(bytes(cts), np.uint8).reshape(-1, CT_BYTES)
    with pytest.raises(ValueError, match="out of range"):
        asyncio.run(
            shards.histogram(
                pk,
                rows,
                np.zeros((12, 1), np.uint8),
                1,
                np.zeros(12, "<i4"),
                np.zeros(1, "<i4"),
                2,
            )
        )
    with pytest.raises(ValueError, match="multiple of 256"):
        asyncio.run(shards.decrypt_packed(key, bytes(cts[:-1]), 2, SLOT_BITS, 0))


def test_a_map_whose_worker_died_runs_again(ray_engine: _CountingRayEngine, tmp_path: Path) -> None:
    def die_once(marker: str, value: int) -> int:
        # the first task to run kills its worker process; every later one answers
        import os

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return value * 2
        os._exit(1)

    shards = RowShards(ray_engine, 1)
    marker = str(tmp_path / "died")
    ray_engine.ran.clear()
    got = asyncio.run(shards._map(die_once, [(marker, 1), (marker, 2), (marker, 3)]))
    assert got == [2, 4, 6]
    assert ray_engine.ran["die_once"] == 6  # the whole map, twice

    def fails(value: int) -> int:
        raise ValueError(f"not a lost task: {value}")

    with pytest.raises(ValueError, match="not a lost task"):
        asyncio.run(shards._map(fails, [(1,)]))


# -- SecureBoost on each engine ----------------------------------------------------------------


def _data(rows: int, features: int, objective: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, features))
    x[rng.random(size=x.shape) < 0.02] = np.nan
    # every feature counts, the last ones a little more: each party's splits get chosen
    coef = np.where(np.arange(features) % 2, -1.0, 1.0) * (1 + 0.2 * np.arange(features))
    z = np.nan_to_num(x) @ coef + 0.3 * rng.normal(size=rows)
    y = (z > 0).astype(np.float64) if objective == "binary" else z
    return x, y


def _train(
    parts: list[tuple[str, np.ndarray]], y: np.ndarray, p: SgbParams, engine: Any, block: int
) -> list[SgbResult]:
    names = [n for n, _ in parts]
    mesh = LocalChannel.mesh("sgb-sharded", names)
    label, lx = parts[0]

    async def main() -> list[SgbResult]:
        peers = {n: mesh[label][n] for n in names[1:]}
        jobs = [train_label(peers, lx, y, p, me=label, engine=engine, min_block=block)]
        jobs += [
            train_feature(
                mesh[n][label], x, me=n, max_bin=p.max_bin, engine=engine, min_block=block
            )
            for n, x in parts[1:]
        ]
        return list(await asyncio.gather(*jobs))

    return asyncio.run(main())


def _same(a: list[SgbResult], b: list[SgbResult]) -> None:
    for ra, rb in zip(a, b, strict=True):
        assert [t.to_json() for t in ra.trees] == [t.to_json() for t in rb.trees]
        assert ra.base == rb.base and ra.rounds == rb.rounds and ra.edges == rb.edges
    assert a[0].train_scores is not None and b[0].train_scores is not None
    assert np.array_equal(a[0].train_scores, b[0].train_scores)


def test_two_parties_train_the_same_trees_on_ray(ray_engine: _CountingRayEngine) -> None:
    x, y = _data(2000, 6, "binary")
    parts = [("bank", x[:, :3]), ("telco", x[:, 3:])]
    p = SgbParams(trees=3, max_depth=3, key_bits=1024, max_bin=16, seed=3)
    local = _train(parts, y, p, None, MIN_BLOCK)
    ray_engine.ran.clear()
    ray = _train(parts, y, p, ray_engine, 256)  # 8 blocks of rows
    _same(local, ray)
    assert ray_engine.ran["encrypt_block_secret"] == 3 * 8
    assert ray_engine.ran["histogram_block"] > 3 * 8 and ray_engine.ran["sum_chunk"] >= 3
    assert "telco" in {o for t in ray[0].trees for o in t.owner.values()}


def test_three_parties_train_the_same_trees_on_ray(ray_engine: RayEngine) -> None:
    x, y = _data(2000, 6, "regression")
    parts = [("bank", x[:, :2]), ("telco", x[:, 2:4]), ("tax", x[:, 4:])]
    p = SgbParams(
        trees=3, max_depth=3, key_bits=1024, max_bin=16, objective="regression",
        subsample=0.8, seed=11,
    )  # fmt: skip
    local = _train(parts, y, p, LocalEngine(), MIN_BLOCK)
    ray = _train(parts, y, p, ray_engine, 300)
    _same(local, ray)
    owners = {o for t in ray[0].trees for o in t.owner.values()}
    assert {"telco", "tax"} <= owners


class _ForgedFeatureParty:
    """Stands in for a feature party: its histograms hold a ciphertext out of range."""

    async def run(self, ch: Any, n: int) -> None:
        await ch.recv("sgb/pk")
        await ch.recv_json("sgb/setup")
        await ch.send_json(
            "sgb/features", {"features": 1, "n_bins": 3, "n_splits": [2], "missing": [False]}
        )
        await ch.recv_json("sgb/next")
        await ch.recv("sgb/rows")
        await ch.recv("sgb/gh")
        lvl = await ch.recv_json("sgb/level")
        await ch.send("sgb/hist", b"\xff" * CT_BYTES * 3 * len(lvl["compute"]))


def test_the_label_party_refuses_forged_histograms_on_ray(ray_engine: RayEngine) -> None:
    mesh = LocalChannel.mesh("sgb-forged-hist", ["label", "feat"])
    x, y = _data(40, 2, "binary")

    async def main() -> None:
        forger = asyncio.create_task(_ForgedFeatureParty().run(mesh["feat"]["label"], 40))
        try:
            await train_label(
                {"feat": mesh["label"]["feat"]}, x, y, SgbParams(key_bits=1024, max_depth=2),
                me="label", engine=ray_engine, min_block=1,
            )  # fmt: skip
        finally:
            forger.cancel()

    with pytest.raises(ProtocolViolationError, match="invalid histogram ciphertexts"):
        asyncio.run(main())


def test_a_feature_party_that_hangs_up_stops_the_label_party_on_ray(
    ray_engine: RayEngine,
) -> None:
    mesh = LocalChannel.mesh("sgb-hangup", ["label", "feat"])
    x, y = _data(40, 2, "binary")

    async def hang_up(ch: Any) -> None:
        await ch.recv("sgb/pk")
        await ch.recv_json("sgb/setup")
        await ch.send_json(
            "sgb/features", {"features": 1, "n_bins": 3, "n_splits": [2], "missing": [False]}
        )
        await ch.recv_json("sgb/next")
        await ch.recv("sgb/rows")
        await ch.recv("sgb/gh")  # encrypted by blocks on the cluster
        await ch.close()

    async def main() -> None:
        other = asyncio.create_task(hang_up(mesh["feat"]["label"]))
        try:
            await train_label(
                {"feat": mesh["label"]["feat"]}, x, y, SgbParams(key_bits=1024, max_depth=2),
                me="label", engine=ray_engine, min_block=8,
            )  # fmt: skip
        finally:
            await other

    with pytest.raises(PeerDisconnectedError):
        asyncio.run(main())


def test_a_feature_party_on_ray_refuses_forged_gradients(
    ray_engine: RayEngine, key: OuSecretKey
) -> None:
    mesh = LocalChannel.mesh("sgb-forged-gh", ["label", "feat"])
    x, _ = _data(20, 2, "binary")
    pk = key.public_key()

    async def forge(ch: Any) -> None:
        await ch.send("sgb/pk", pk.to_bytes())
        await ch.send_json("sgb/setup", {"rows": 20, "max_depth": 2})
        await ch.recv_json("sgb/features")
        await ch.send_json("sgb/next", {"kind": "tree"})
        await ch.send("sgb/rows", np.arange(20, dtype="<i4").tobytes())
        cts = pk.encrypt_packed(np.zeros((20, 2), dtype="<i8"), 2, SLOT_BITS)
        await ch.send("sgb/gh", cts[:-CT_BYTES] + b"\xff" * CT_BYTES)

    async def main() -> None:
        forger = asyncio.create_task(forge(mesh["label"]["feat"]))
        try:
            await train_feature(mesh["feat"]["label"], x, me="feat", engine=ray_engine, min_block=2)
        finally:
            forger.cancel()

    with pytest.raises(ProtocolViolationError, match="invalid gradient ciphertexts"):
        asyncio.run(main())


def test_binned_features_fit_the_tasks_bytes() -> None:
    # the tasks take bins as uint8 rows: the binning never makes more than 256 bins
    assert bin_features(np.zeros((3, 2)), 255).n_bins == 256


# -- the components on each engine ---------------------------------------------------------------

JOB = """
name: sgb-sharded
parties: [bank, telecom]
components:
  - id: sgb
    type: train_sgb
    inputs:
      bank: {dataset: bank}
      telecom: {dataset: telecom}
    params:
      label: {party: bank, column: y}
      features: {bank: [a, b], telecom: [c, d, e]}
      trees: 3
      max_depth: 3
      max_bin: 16
      key_bits: 1024
      seed: 2
    outputs:
      model: {receivers: [bank, telecom]}
  - id: score
    type: predict
    inputs:
      bank: {dataset: bank}
      telecom: {dataset: telecom}
    params:
      model: sgb
      label: y
      features: {bank: [a, b], telecom: [c, d, e]}
    outputs:
      predictions: {receivers: [bank], format: csv}
"""


def _run_job(tmp: Path, engine: ComputeEngine) -> dict[str, Any]:
    x, y = _data(1500, 5, "binary")
    ids = pa.array([f"c{i:05d}" for i in range(len(y))])
    cols = {"bank": ["a", "b"], "telecom": ["c", "d", "e"]}
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    tables = {
        "bank": pa.table({"customer_id": ids, "a": x[:, 0], "b": x[:, 1], "y": y}),
        "telecom": pa.table({"customer_id": ids, **{c: x[:, 2 + i] for i, c in enumerate("cde")}}),
    }
    refs = {}
    for party, table in tables.items():
        pacsv.write_csv(table, data / f"{party}.csv")
        refs[party] = {party: inspect_dataset(party, data / f"{party}.csv", "customer_id")}
    assert list(cols) == sorted(refs)
    job = parse_job(JOB)
    mesh = LocalChannel.mesh(f"sgb-job-{engine.name}", ["bank", "telecom"])
    out = tmp / engine.name

    async def main() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    run_party(job, p, mesh[p], refs[p], out / p, compute=engine)
                    for p in ("bank", "telecom")
                )
            )
        )

    asyncio.run(main())
    models = {
        p: json.loads((out / p / "sgb.model.json").read_text())["trees"]
        for p in ("bank", "telecom")
    }
    preds = pacsv.read_csv(out / "bank" / "score.predictions.csv")
    return {"models": models, "predictions": preds}


def test_components_score_the_same_on_ray(
    ray_engine: _CountingRayEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _run_job(tmp_path, LocalEngine())
    monkeypatch.setattr(sharding, "MIN_BLOCK", 200)  # 1,500 rows: 8 blocks
    ray_engine.ran.clear()
    ray = _run_job(tmp_path, ray_engine)
    assert ray_engine.ran["encrypt_block_secret"] == 3 * 8 and ray_engine.ran["histogram_block"]
    assert ray_engine.ran["marks_block"] == 2 * 8  # both parties mark their rows by blocks
    assert local["models"] == ray["models"]
    assert local["predictions"].equals(ray["predictions"])
    assert local["predictions"].num_rows == 1500
