"""Review of the scale-out code: PSI by bucket pairs against a plaintext reference on
generated inputs (duplicates at both parties, empty inputs, buckets empty at one party),
and the refusals that keep a party from hanging or leaking."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.compute import ComputeSettings, LocalEngine, RayEngine
from rainbridge.compute.psi import (
    BucketedPsiParams,
    bucket_session,
    load_bucket,
    parquet_chunks,
    run_bucketed_psi,
    split_parquet_chunk,
)
from rainbridge.data.dataset import as_ids
from rainbridge.errors import ChannelError, ConfigError, DataError, PeerDisconnectedError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi.ecdh import PsiResult
from rainbridge.protocols.psi.items import as_items


def _reference(a: list[str], b: list[str]) -> tuple[int, np.ndarray, np.ndarray]:
    common = set(a) & set(b)
    rows_a = np.array([i for i, v in enumerate(a) if v in common], dtype=np.int64)
    rows_b = np.array([i for i, v in enumerate(b) if v in common], dtype=np.int64)
    return len(common), rows_a, rows_b


async def _both(
    a: list[str], b: list[str], params: BucketedPsiParams, work: Path, alice: Any = None
) -> tuple[PsiResult, PsiResult]:
    """Alice (on ``alice``'s engine, else 2 local workers) and Bob (3 local workers)."""
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=20)
    ra, rb = await asyncio.gather(
        run_bucketed_psi(
            "alice", {"bob": la}, pa.array(a, pa.string()), params,
            alice or LocalEngine(ComputeSettings(workers=2)), work / "a",
        ),
        run_bucketed_psi(
            "bob", {"alice": lb}, pa.array(b, pa.string()), params,
            LocalEngine(ComputeSettings(workers=3)), work / "b",
        ),
    )  # fmt: skip
    return ra, rb


_ID = st.text(alphabet="abcé\u0301", min_size=1, max_size=3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    a=st.lists(_ID, max_size=30),
    b=st.lists(_ID, max_size=30),
    protocol=st.sampled_from(["rr22", "ecdh"]),
)
def test_bucket_pairs_equal_the_plain_intersection(
    a: list[str], b: list[str], protocol: str, tmp_path_factory: Any
) -> None:
    # bucket_items 4: several buckets, many of them empty at one party or both
    params = BucketedPsiParams(protocol=protocol, bucket_items=4)
    work = tmp_path_factory.mktemp("psi")
    ra, rb = asyncio.run(_both(a, b, params, work))
    size, rows_a, rows_b = _reference(a, b)
    assert ra.size == rb.size == size
    assert ra.indices is not None and rb.indices is not None
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)


def test_a_task_size_no_machine_can_hold_is_refused(ray_local: Any) -> None:
    # Ray would keep such a task pending for ever: the engine refuses before any message
    engine = RayEngine(ComputeSettings(engine="ray", workers=1, task_cpus=64))
    with pytest.raises(ConfigError, match="task_cpus"):
        asyncio.run(asyncio.wait_for(engine.start(), 10))


def _hold_cpus(mark: str, seconds: float) -> None:
    """A Ray task that keeps the instance's CPUs busy (so that sessions stay pending)."""
    import time

    Path(mark).write_text("running")
    time.sleep(seconds)


def test_a_dropped_link_ends_a_session_still_pending_on_ray(tmp_path: Path, ray_local: Any) -> None:
    # Alice's bucket task waits for a CPU when the link drops: she must fail with the
    # link's error at once, not wait for the cluster (it may never have room) and hang.
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    a = [f"id-{i}" for i in range(300)]
    engine = RayEngine(ComputeSettings(engine="ray", workers=1))
    mark = tmp_path / "holding"

    async def go() -> None:
        await engine.start()
        holder = ray.remote(_hold_cpus).options(num_cpus=2).remote(str(mark), 30.0)
        try:
            for _ in range(200):
                if mark.exists():
                    break
                await asyncio.sleep(0.1)
            assert mark.exists(), "the task holding the CPUs did not start"
            # Bob's own end of a dropped LocalChannel fails at his receive timeout
            la, lb = LocalChannel.pair("s", "alice", "bob", timeout=5)
            params = BucketedPsiParams(protocol="rr22", bucket_items=1024)
            bob = run_bucketed_psi(
                "bob", {"alice": lb}, pa.array(a), params, LocalEngine(), tmp_path / "b"
            )
            alice = run_bucketed_psi(
                "alice", {"bob": la}, pa.array(a), params, engine, tmp_path / "a"
            )
            alice_t = asyncio.ensure_future(alice)
            bob_t = asyncio.ensure_future(bob)
            await asyncio.sleep(3)  # bucket 0 has begun at Bob, and waits for a CPU at Alice
            assert not alice_t.done() and not bob_t.done()
            await lb.abort("link dropped")
            done, _ = await asyncio.wait({alice_t}, timeout=10)
            assert done, "Alice still waits for her bucket's task after the link dropped"
            with pytest.raises(PeerDisconnectedError):
                alice_t.result()
            with pytest.raises(ChannelError):
                await bob_t
        finally:
            ray.cancel(holder, force=True)

    asyncio.run(go())


def test_a_parquet_chunk_of_ids_that_are_not_text_is_refused_as_data(tmp_path: Path) -> None:
    # the same refusal as the job worker's own reading (as_ids), not a raw Arrow error
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"cid": pa.array([b"a", b"\xff\xfe"], pa.binary())}), path)
    (chunk,) = parquet_chunks(str(path), "cid", target_rows=10)
    with pytest.raises(DataError, match="cid"):
        split_parquet_chunk(chunk, b"\0" * 16, 4, str(tmp_path / "out"))


def test_a_parquet_chunk_reads_ids_as_the_job_worker_does(tmp_path: Path) -> None:
    # numbers in a Parquet file are their text at both paths: '7' at one party meets 7
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"cid": pa.array([7, 1234567890123], pa.int64())}), path)
    (chunk,) = parquet_chunks(str(path), "cid", target_rows=10)
    seed = b"\1" * 16
    split_parquet_chunk(chunk, seed, 1, str(tmp_path / "p" / "c00000"))
    rec = load_bucket(tmp_path / "p", 0)
    items = as_items(as_ids(pa.array(["7", "1234567890123"])))
    want = _core.rr22_digests(seed, items.data, items.offsets)
    assert rec["digest"].tobytes() == want


def test_a_party_with_more_workers_than_a_hello_may_announce_is_not_refused(
    tmp_path: Path,
) -> None:
    # workers is the party's own setting (no upper bound): its hello announces at most
    # the window a peer accepts, instead of the peer refusing the PSI
    a = [f"id-{i}" for i in range(50)]
    params = BucketedPsiParams(protocol="rr22", bucket_items=16)
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=20)

    async def go() -> tuple[PsiResult, PsiResult]:
        ra, rb = await asyncio.gather(
            run_bucketed_psi(
                "alice", {"bob": la}, pa.array(a), params,
                LocalEngine(ComputeSettings(workers=5000)), tmp_path / "a",
            ),
            run_bucketed_psi(
                "bob", {"alice": lb}, pa.array(a[:20]), params,
                LocalEngine(ComputeSettings(workers=5000)), tmp_path / "b",
            ),
        )  # fmt: skip
        return ra, rb

    ra, rb = asyncio.run(go())
    assert ra.size == rb.size == 20
    assert ra.stats["window"] == rb.stats["window"] == 4096


def test_a_peer_that_claims_buckets_it_never_ran_cannot_make_a_party_skip_its_own(
    tmp_path: Path,
) -> None:
    # A party keeps a checkpoint only for a bucket it finished itself: whatever the peer
    # claims, the buckets it has not finished run again.
    from rainbridge.compute.psi import _todo
    from rainbridge.net.mux import Mux

    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=5)

    async def go() -> list[int]:
        ma, mb = Mux(la), Mux(lb)
        ca, cb = ma.open("ctl"), mb.open("ctl")
        liar = cb.send("done", bytes([0xFF, 0xFF]))  # "every one of your 10 buckets"
        todo, _ = await asyncio.gather(_todo(ca, "bob", 10, {1, 4, 7}), liar)
        await cb.recv("done")
        return todo

    assert asyncio.run(go()) == [0, 2, 3, 5, 6, 8, 9]


_real_session = bucket_session


async def _dies_after_finishing(ch: Any, job: Any) -> dict[str, Any]:
    """Bucket 1's first attempt at Alice: the protocol ends (Bob has his result), then the
    Ray worker dies before it reports back."""
    import os
    import signal

    result = await _real_session(ch, job)
    mark = Path(job.parts).parent / "killed"
    if job.party == "alice" and job.k == 1 and not mark.exists():
        mark.write_text("once")
        await asyncio.sleep(1.0)  # Bob has closed his side of the bucket by now
        os.kill(os.getpid(), signal.SIGKILL)
    return result


def test_a_task_lost_after_the_peer_finished_its_bucket_runs_again_at_both(
    tmp_path: Path, ray_local: Any, monkeypatch: Any
) -> None:
    # Bob finished bucket 1 and Alice did not: the bucket must run again at both (Bob
    # would otherwise never open Alice's retry and the PSI would fail at her timeout).
    import ray.cloudpickle

    from rainbridge.compute import psi as bpsi

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    rng = np.random.default_rng(9)
    a = [f"id-{v}" for v in rng.choice(10**9, size=3000, replace=False)]
    b = a[:800] + [f"other-{i}" for i in range(1500)]
    size, rows_a, rows_b = _reference(a, b)
    monkeypatch.setattr(bpsi, "bucket_session", _dies_after_finishing)
    engine = RayEngine(ComputeSettings(engine="ray", workers=2))
    params = BucketedPsiParams(protocol="rr22", bucket_items=1024)
    ra, rb = asyncio.run(asyncio.wait_for(_both(a, b, params, tmp_path, engine), 40))
    assert (tmp_path / "a" / "killed").exists()
    assert ra.size == rb.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)
    assert ra.stats["bucket_retries"] == 1
    assert rb.stats["buckets_run_again"] == 1


def _arrive(mark: str) -> _DiesOnArrival:
    """Unpickled in the Ray worker: the first time, the worker dies there and then."""
    import os
    import signal

    if not Path(mark).exists():
        Path(mark).write_text("once")
        os.kill(os.getpid(), signal.SIGKILL)
    return _DiesOnArrival(mark)


class _DiesOnArrival:
    """The bucket session, but the first Ray worker that receives it dies before its task
    reaches the relay."""

    def __init__(self, mark: str) -> None:
        self.mark = mark

    def __reduce__(self) -> Any:
        return (_arrive, (self.mark,))

    async def __call__(self, ch: Any, job: Any) -> dict[str, Any]:
        return await _real_session(ch, job)


def test_a_task_lost_before_it_reached_the_relay_runs_again_at_both(
    tmp_path: Path, ray_local: Any, monkeypatch: Any
) -> None:
    # Its sub-channel never carried a message from Alice: Bob must hear that it was lost
    # (not wait for it until his timeout) and run the bucket again with her.
    import ray.cloudpickle

    from rainbridge.compute import psi as bpsi

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    a = [f"id-{i}" for i in range(2000)]
    b = a[::3] + [f"other-{i}" for i in range(500)]
    size, rows_a, rows_b = _reference(a, b)
    mark = tmp_path / "killed"
    monkeypatch.setattr(bpsi, "bucket_session", _DiesOnArrival(str(mark)))
    engine = RayEngine(ComputeSettings(engine="ray", workers=2))
    params = BucketedPsiParams(protocol="ecdh", bucket_items=1024)
    ra, rb = asyncio.run(asyncio.wait_for(_both(a, b, params, tmp_path, engine), 40))
    assert mark.exists()
    assert ra.size == rb.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)
    assert ra.stats["bucket_retries"] == rb.stats["bucket_retries"] == 1


def _write_late(out: str, delay: float, fail: bool) -> int:
    """A map task: fails at once, or writes its file after ``delay`` seconds."""
    import time

    if fail:
        raise DataError("a bad chunk")
    time.sleep(delay)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "late.bin").write_bytes(b"x")
    return 1


def _nothing_runs_after_a_failed_map(engine: Any, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    items = [(str(out), 0.0, True), (str(out), 1.0, False)]

    async def go() -> None:
        await engine.start()
        with pytest.raises(DataError, match="bad chunk"):
            await engine.map(_write_late, items)
        # the caller now removes its work folder: no task may write there afterwards
        before = sorted(p.name for p in tmp_path.rglob("*"))
        await asyncio.sleep(2.0)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before

    asyncio.run(go())


def test_a_failed_local_map_leaves_no_task_running(tmp_path: Path) -> None:
    _nothing_runs_after_a_failed_map(LocalEngine(ComputeSettings(workers=2)), tmp_path)


def test_a_failed_ray_map_leaves_no_task_running(tmp_path: Path, ray_local: Any) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    engine = RayEngine(ComputeSettings(engine="ray", workers=2))
    _nothing_runs_after_a_failed_map(engine, tmp_path)


def test_a_peer_that_splits_a_large_input_for_longer_than_the_link_timeout_is_waited_for(
    tmp_path: Path,
) -> None:
    # Alice reads and hashes her IDs for longer than one message's timeout: Bob, done with
    # his small input, waits for her list of finished buckets as long as her row count
    # may take to split, instead of failing the PSI at the link's timeout.
    import time

    from rainbridge.protocols.psi.rr22 import IdBatches

    n = 300_000
    a = pa.array([f"id-{i}" for i in range(n)])

    def slow() -> Any:
        time.sleep(2.0)  # a slow disk
        yield a

    b = pa.array([f"id-{i}" for i in range(0, n, 100)])
    params = BucketedPsiParams(protocol="rr22", bucket_items=1 << 17)
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=1.5)

    async def go() -> tuple[PsiResult, PsiResult]:
        ra, rb = await asyncio.gather(
            run_bucketed_psi(
                "alice", {"bob": la}, IdBatches(rows=n, batches=slow()), params,
                LocalEngine(ComputeSettings(workers=2)), tmp_path / "a",
            ),
            run_bucketed_psi(
                "bob", {"alice": lb}, b, params,
                LocalEngine(ComputeSettings(workers=2)), tmp_path / "b",
            ),
        )  # fmt: skip
        return ra, rb

    ra, rb = asyncio.run(go())
    assert ra.size == rb.size == len(b)


def test_the_bucket_count_a_peer_can_force_does_not_multiply_the_files_a_party_writes(
    tmp_path: Path,
) -> None:
    # A peer's announced row count sets the bucket count (up to 2^20): a party's bucket
    # files must stay a few per batch of its own rows, not one per non-empty bucket (which
    # is one per row here, on the shared storage of a Ray cluster).
    path = tmp_path / "ids.parquet"
    ids = [f"id-{i}" for i in range(5000)]
    pq.write_table(pa.table({"cid": ids}), path)
    (chunk,) = parquet_chunks(str(path), "cid", target_rows=10_000)
    parts = tmp_path / "parts"
    seed = b"\2" * 16
    split_parquet_chunk(chunk, seed, 1 << 20, str(parts / "c00000"))
    assert len(list(parts.rglob("*"))) <= 4
    # and every record is still found in its bucket, in row order
    items = as_items(as_ids(pa.array(ids)))
    dig = _core.rr22_digests(seed, items.data, items.offsets)
    from rainbridge.compute.psi import bucket_of

    ks = bucket_of(dig, seed, 1 << 20)
    for k in np.unique(ks)[:50]:
        rec = load_bucket(parts, int(k))
        np.testing.assert_array_equal(rec["row"], np.flatnonzero(ks == k))
    assert len(load_bucket(parts, int(np.setdiff1d(np.arange(1 << 20), ks)[0]))) == 0
