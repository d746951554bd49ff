"""PSI by bucket pairs (rainbridge.compute.psi) against the plain intersection, on the local
engine and on a real Ray instance, with lost tasks and a dropped link."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbridge.compute import ComputeSettings, LocalEngine, RayEngine
from rainbridge.compute import psi as bpsi
from rainbridge.compute.psi import BucketedPsiParams, parquet_chunks, run_bucketed_psi
from rainbridge.errors import DataError, ParameterMismatchError, PeerDisconnectedError
from rainbridge.net.channel import Buffer, Channel
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.psi.ecdh import PsiResult


def _sets(seed: int, n_a: int, n_b: int, common: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    pool = [f"id-{v}" for v in rng.choice(10**9, size=n_a + n_b, replace=False)]
    a = pool[:n_a]
    b = a[:common] + pool[n_a : n_a + n_b - common]
    rng.shuffle(b)
    return a, b


def _expected(a: list[str], b: list[str]) -> tuple[int, np.ndarray, np.ndarray]:
    sb, sa = set(b), set(a)
    rows_a = np.array([i for i, v in enumerate(a) if v in sb], dtype=np.int64)
    rows_b = np.array([i for i, v in enumerate(b) if v in sa], dtype=np.int64)
    return len(sa & sb), rows_a, rows_b


async def _pair(
    a_ids: Any,
    b_ids: Any,
    params: BucketedPsiParams,
    engines: tuple[Any, Any],
    work: Path,
    links: tuple[Channel, Channel] | None = None,
    reconnect: Any = None,
) -> tuple[PsiResult, PsiResult]:
    la, lb = links or LocalChannel.pair("s", "alice", "bob", timeout=30)
    ra, rb = await asyncio.gather(
        run_bucketed_psi(
            "alice", {"bob": la}, a_ids, params, engines[0], work / "a",
            reconnect=reconnect and reconnect("alice"),
        ),
        run_bucketed_psi(
            "bob", {"alice": lb}, b_ids, params, engines[1], work / "b",
            reconnect=reconnect and reconnect("bob"),
        ),
    )  # fmt: skip
    return ra, rb


@pytest.mark.parametrize("protocol", ["rr22", "ecdh"])
def test_local_engine_equals_plain_intersection(protocol: str, tmp_path: Path) -> None:
    a, b = _sets(1, 5000, 3000, 1200)
    a += a[:50]  # duplicates at one party: every row of a common ID is common
    size, rows_a, rows_b = _expected(a, b)
    params = BucketedPsiParams(protocol=protocol, bucket_items=1024)
    engines = (LocalEngine(ComputeSettings(workers=3)), LocalEngine(ComputeSettings(workers=2)))
    ra, rb = asyncio.run(_pair(pa.array(a), pa.array(b), params, engines, tmp_path))
    assert ra.size == rb.size == size
    assert ra.indices is not None and rb.indices is not None
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)
    assert ra.stats["buckets"] == 8 and ra.stats["window"] == 2
    assert ra.stats["bucket_sessions"] == 8 and ra.stats["bucket_retries"] == 0


def test_one_receiver_and_empty_sets(tmp_path: Path) -> None:
    a, b = _sets(2, 300, 200, 0)
    params = BucketedPsiParams(protocol="rr22", receivers=("bob",), bucket_items=1024)
    ra, rb = asyncio.run(
        _pair(pa.array(a), pa.array(b), params, (LocalEngine(), LocalEngine()), tmp_path)
    )
    assert ra.size == rb.size == 0 and ra.indices is None
    assert rb.indices is not None and len(rb.indices) == 0
    empty = pa.array([], type=pa.string())
    ra, rb = asyncio.run(
        _pair(empty, pa.array(b), params, (LocalEngine(), LocalEngine()), tmp_path / "e")
    )
    assert ra.size == rb.size == 0 and rb.indices is not None and len(rb.indices) == 0


def test_ecdh_cardinality_only(tmp_path: Path) -> None:
    a, b = _sets(3, 2000, 2500, 700)
    params = BucketedPsiParams(protocol="ecdh", cardinality_only=True, bucket_items=1024)
    ra, rb = asyncio.run(
        _pair(pa.array(a), pa.array(b), params, (LocalEngine(), LocalEngine()), tmp_path)
    )
    assert ra.size == rb.size == 700 and ra.indices is None and rb.indices is None


def test_parameters_must_agree(tmp_path: Path) -> None:
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=10)

    async def go() -> None:
        await asyncio.gather(
            run_bucketed_psi(
                "alice", {"bob": la}, pa.array(["x"]), BucketedPsiParams(bucket_items=1024),
                LocalEngine(), tmp_path / "a",
            ),
            run_bucketed_psi(
                "bob", {"alice": lb}, pa.array(["x"]), BucketedPsiParams(bucket_items=2048),
                LocalEngine(), tmp_path / "b",
            ),
        )  # fmt: skip

    with pytest.raises(ParameterMismatchError):
        asyncio.run(go())


def _parquet(tmp_path: Path, ids: list[str | None], group: int) -> Path:
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"cid": ids}), path, row_group_size=group)
    return path


def test_parquet_chunks_are_split_by_tasks(tmp_path: Path) -> None:
    a, b = _sets(4, 6000, 4000, 1500)
    size, rows_a, rows_b = _expected(a, b)
    chunks = parquet_chunks(str(_parquet(tmp_path, a, 1000)), "cid", target_rows=2000)
    assert [c.rows for c in chunks] == [2000, 2000, 2000]
    params = BucketedPsiParams(protocol="rr22", bucket_items=2048)
    ra, rb = asyncio.run(
        _pair(chunks, pa.array(b), params, (LocalEngine(), LocalEngine()), tmp_path)
    )
    assert ra.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)


def test_parquet_chunk_with_an_empty_id_is_refused(tmp_path: Path) -> None:
    path = _parquet(tmp_path, ["a", "b", None, "d"], 2)
    chunk = parquet_chunks(str(path), "cid", target_rows=2)[1]
    with pytest.raises(DataError, match="1 empty IDs"):
        bpsi.split_parquet_chunk(chunk, b"\0" * 16, 4, str(tmp_path / "out"))


class _DroppingLink(Channel):
    """A link that drops (both ends see it fail) at its ``after``-th message."""

    def __init__(self, inner: LocalChannel, after: int) -> None:
        super().__init__()
        self.inner, self.after = inner, after
        self.session_id, self.local, self.peer = inner.session_id, inner.local, inner.peer
        self.timeout = inner.timeout

    async def send(self, tag: str, payload: Buffer) -> None:
        self.after -= 1
        if self.after == 0:
            await self.inner.abort("link dropped")
            raise PeerDisconnectedError("the link dropped")
        await self.inner.send(tag, payload)
        self.bytes_sent = self.inner.bytes_sent

    async def send_many(self, tag: str, parts: Any) -> None:
        await self.send(tag, b"".join(bytes(p) for p in parts))

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        data = await self.inner.recv(tag, timeout=timeout)
        self.bytes_received = self.inner.bytes_received
        return data

    async def close(self) -> None:
        await self.inner.close()

    async def abort(self, reason: str) -> None:
        await self.inner.abort(reason)


class _Relinker:
    """Both parties' reconnect: the first to ask makes a fresh pair, the other gets its end."""

    def __init__(self) -> None:
        self.pending: dict[str, asyncio.Future[LocalChannel]] = {}
        self.count = 0

    def __call__(self, party: str) -> Any:
        async def again(peer: str) -> Channel:
            fut = self.pending.pop(party, None)
            if fut is not None:
                return await fut
            mine, theirs = LocalChannel.pair("s2", party, peer, timeout=30)
            self.pending[peer] = asyncio.get_running_loop().create_future()
            self.pending[peer].set_result(theirs)
            self.count += 1
            return mine

        return again


@pytest.mark.parametrize("protocol", ["rr22", "ecdh"])
def test_dropped_link_resumes_without_redoing_finished_buckets(
    protocol: str, tmp_path: Path
) -> None:
    a, b = _sets(5, 8000, 6000, 2500)
    size, rows_a, rows_b = _expected(a, b)
    params = BucketedPsiParams(protocol=protocol, bucket_items=1024)
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=30)
    # about a third of the way through (each bucket takes ~10 messages each way)
    link = _DroppingLink(la, after=30)
    relink = _Relinker()
    ra, rb = asyncio.run(
        _pair(
            pa.array(a), pa.array(b), params,
            (LocalEngine(ComputeSettings(workers=2)), LocalEngine(ComputeSettings(workers=2))),
            tmp_path, links=(link, lb), reconnect=relink,
        )
    )  # fmt: skip
    assert relink.count == 1
    assert ra.size == rb.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)
    for r in (ra, rb):
        st = r.stats
        assert st["reconnects"] == 1 and st["buckets"] == 8
        # buckets finished at both before the drop were kept, not run again
        assert st["buckets_kept_on_resume"] >= 1
        # only buckets finished at one party alone when the link dropped ran again (at
        # most the window's worth); every other bucket ran once
        assert st["bucket_sessions"] == 8 + st["buckets_run_again"]
        assert st["buckets_run_again"] <= 2


def test_dropped_link_without_reconnect_fails(tmp_path: Path) -> None:
    a, b = _sets(6, 4000, 4000, 100)
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=5)
    with pytest.raises(PeerDisconnectedError):
        asyncio.run(
            _pair(
                pa.array(a), pa.array(b), BucketedPsiParams(bucket_items=1024),
                (LocalEngine(), LocalEngine()), tmp_path, links=(_DroppingLink(la, 20), lb),
            )
        )  # fmt: skip


# -- on a real Ray instance ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["rr22", "ecdh"])
def test_ray_engine_equals_local_engine(protocol: str, tmp_path: Path, ray_local: Any) -> None:
    a, b = _sets(7, 5000, 4000, 1000)
    size, rows_a, rows_b = _expected(a, b)
    params = BucketedPsiParams(protocol=protocol, bucket_items=2048)
    ray_engine = RayEngine(ComputeSettings(engine="ray", workers=2))
    chunks = parquet_chunks(str(_parquet(tmp_path, a, 1000)), "cid", target_rows=1000)
    ra, rb = asyncio.run(_pair(chunks, pa.array(b), params, (ray_engine, LocalEngine()), tmp_path))
    assert ra.stats["engine"] == "ray" and rb.stats["engine"] == "local"
    assert ra.size == rb.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)


_real_session = bpsi.bucket_session


async def _dying_session(ch: Channel, job: Any) -> dict[str, Any]:
    """Bucket 1's first attempt: its Ray worker is killed in the middle of the protocol."""
    mark = Path(job.parts).parent / "killed"
    if job.party == "alice" and job.k == 1 and not mark.exists():
        await ch.send_json("rr22/1/size", 0)  # the bucket has begun at the peer
        mark.write_text("once")
        os.kill(os.getpid(), signal.SIGKILL)
    return await _real_session(ch, job)


def test_killed_ray_worker_is_retried(tmp_path: Path, ray_local: Any, monkeypatch: Any) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    a, b = _sets(8, 4000, 4000, 900)
    size, rows_a, rows_b = _expected(a, b)
    monkeypatch.setattr(bpsi, "bucket_session", _dying_session)
    ray_engine = RayEngine(ComputeSettings(engine="ray", workers=2))
    params = BucketedPsiParams(protocol="rr22", bucket_items=1024)
    ra, rb = asyncio.run(
        _pair(pa.array(a), pa.array(b), params, (ray_engine, LocalEngine()), tmp_path)
    )
    assert (tmp_path / "a" / "killed").exists()
    assert ra.size == rb.size == size
    np.testing.assert_array_equal(ra.indices, rows_a)
    np.testing.assert_array_equal(rb.indices, rows_b)
    assert ra.stats["bucket_retries"] == 1 and rb.stats["bucket_retries"] == 1
