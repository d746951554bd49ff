"""Run by test_ray_cluster.py in its own process: a PSI by bucket pairs whose first party
runs on a Ray cluster of several simulated machines (ray.cluster_utils.Cluster), one of which
is removed while a bucket runs on it. Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.cluster_utils import Cluster

from rainbridge.compute import ComputeSettings, LocalEngine, RayEngine
from rainbridge.compute import psi as bpsi
from rainbridge.compute.psi import BucketedPsiParams, run_bucketed_psi
from rainbridge.net.channel import Channel
from rainbridge.net.local import LocalChannel

_real_session = bpsi.bucket_session


async def _slow_on_a_worker_node(ch: Channel, job: Any) -> dict[str, Any]:
    """Bucket 2's first attempt at alice says where it runs, then waits to be cut off."""
    mark = Path(job.parts).parent / "bucket2"
    if job.party == "alice" and job.k == 2 and not mark.exists():
        mark.write_text(ray.get_runtime_context().get_node_id())
        await asyncio.sleep(60)
    return await _real_session(ch, job)


async def main(work: Path) -> dict[str, Any]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    bpsi.bucket_session = _slow_on_a_worker_node  # type: ignore[assignment]

    rng = np.random.default_rng(9)
    pool = [f"id-{v}" for v in rng.choice(10**9, size=9000, replace=False)]
    a, b = pool[:5000], pool[:2000] + pool[5000:]
    la, lb = LocalChannel.pair("s", "alice", "bob", timeout=90)
    params = BucketedPsiParams(protocol="rr22", bucket_items=1024)
    engine = RayEngine(ComputeSettings(engine="ray", workers=3))

    async def remove_the_node() -> str:
        mark = work / "a" / "bucket2"
        while not mark.exists() or not mark.read_text():
            await asyncio.sleep(0.05)
        node_id = mark.read_text()
        (victim,) = [n for n in nodes if n.node_id == node_id]
        await asyncio.to_thread(cluster.remove_node, victim)
        return node_id

    remover = asyncio.create_task(remove_the_node())
    t0 = time.perf_counter()
    ra, rb = await asyncio.gather(
        run_bucketed_psi("alice", {"bob": la}, pa.array(a), params, engine, work / "a"),
        run_bucketed_psi("bob", {"alice": lb}, pa.array(b), params, LocalEngine(), work / "b"),
    )
    removed = await remover
    alive = sum(1 for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    cluster.shutdown()
    sb = set(b)
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "removed_node": removed,
        "alive_nodes": alive,
        "size": ra.size,
        "expected": 2000,
        "alice_rows_ok": ra.indices.tolist() == [i for i, v in enumerate(a) if v in sb],
        "bob_rows_ok": rb.indices.tolist() == [i for i, v in enumerate(b) if v in set(a)],
        "alice": {k: ra.stats[k] for k in ("buckets", "bucket_retries", "bucket_sessions")},
        "bob": {k: rb.stats[k] for k in ("buckets", "bucket_retries", "bucket_sessions")},
    }


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))), flush=True)
