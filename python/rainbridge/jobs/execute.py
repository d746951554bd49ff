"""Run one party's roles of every component of a job, in order.

The node calls :func:`run_party` in a worker process with channels to every peer of the job;
local simulation calls it once per party in one process. Outputs are all or nothing: if any
component fails, every output this party wrote for the job is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rainbridge.components import ComponentContext, get_component
from rainbridge.data import DatasetRef, inspect_dataset
from rainbridge.errors import DataError
from rainbridge.jobs.spec import ComponentSpec, JobSpec
from rainbridge.net.channel import Channel

ProgressFn = Callable[[str, float], None]


class TaggedChannel(Channel):
    """A view of a session's channel for one component: tags are prefixed with its id.

    Components of one job share the parties' channels; the prefix keeps their messages apart
    so that a component out of step fails on a tag mismatch instead of reading another's data.
    """

    def __init__(self, inner: Channel, prefix: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = prefix
        self.session_id = inner.session_id
        self.local = inner.local
        self.peer = inner.peer

    @property  # type: ignore[override]
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @bytes_sent.setter
    def bytes_sent(self, _v: int) -> None:
        pass

    @property  # type: ignore[override]
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    @bytes_received.setter
    def bytes_received(self, _v: int) -> None:
        pass

    async def send(self, tag: str, payload: bytes | bytearray | memoryview) -> None:
        await self.inner.send(self.prefix + tag, payload)

    async def recv(self, tag: str, *, timeout: float | None = None) -> bytes:
        return await self.inner.recv(self.prefix + tag, timeout=timeout)

    async def close(self) -> None:
        await self.inner.close()


def _resolve_input(
    c: ComponentSpec, party: str, datasets: Mapping[str, DatasetRef], produced: dict[str, Any]
) -> DatasetRef | None:
    ref = c.inputs[party]
    if ref.role is not None:
        return None  # a role without data (the dealer)
    if ref.dataset is not None:
        try:
            ds = datasets[ref.dataset]
        except KeyError:
            raise DataError(
                f"component {c.id!r}: dataset {ref.dataset!r} is not registered at {party!r}"
            ) from None
        if ref.id and ds.id_column != ref.id:
            ds = DatasetRef(ds.name, ds.path, ds.format, ref.id, ds.columns, ds.num_rows)
        return ds
    assert ref.from_ is not None
    src, _, out = ref.from_.partition(".")
    info = produced.get(src, {}).get("outputs", {}).get(out)
    if not info:
        raise DataError(f"component {c.id!r}: {ref.from_!r} was not produced at {party!r}")
    return inspect_dataset(ref.from_, info["path"], ref.id, info["format"])


def _component_progress(progress: ProgressFn | None, cid: str) -> Callable[[float], None]:
    def report(fraction: float) -> None:
        if progress is not None:
            progress(cid, fraction)

    return report


def _moved(channels: Mapping[str, Channel]) -> tuple[int, int]:
    return (
        sum(ch.bytes_sent for ch in channels.values()),
        sum(ch.bytes_received for ch in channels.values()),
    )


async def run_party(
    job: JobSpec,
    party: str,
    channels: Mapping[str, Channel],
    datasets: Mapping[str, DatasetRef],
    out_dir: Path,
    *,
    job_id: str = "local",
    progress: ProgressFn | None = None,
    ic_peers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``party``'s roles of every component of ``job``.

    Parameters
    ----------
    channels : Mapping[str, Channel]
        A channel of this job's session to every other party of the job.
    datasets : Mapping[str, DatasetRef]
        This party's registered datasets, by name.
    out_dir : Path
        Where this party's outputs go (only outputs it receives).
    ic_peers : Mapping, optional
        Parties that speak the interconnection standard (no channel; see
        :mod:`rainbridge.node.interop`), with how to reach them.

    Returns
    -------
    dict
        ``{"job", "party", "components": {id: summary}, "bytes_sent", "bytes_received",
        "seconds"}``; each summary lists its outputs with paths.
    """
    if party not in job.parties:
        raise DataError(f"party {party!r} is not named in job {job.name!r}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    mine = [c for c in job.components if party in c.inputs]
    produced: dict[str, Any] = {}
    written: list[Path] = []
    try:
        for c in mine:
            comp = get_component(c.type)
            ic = {p: v for p, v in (ic_peers or {}).items() if p in c.parties}
            peers = [p for p in c.parties if p != party and p not in ic]
            missing = [p for p in peers if p not in channels]
            if missing:
                raise DataError(f"component {c.id!r}: no channel to {', '.join(missing)}")
            ctx = ComponentContext(
                job_id=job_id,
                party=party,
                spec=c,
                params=comp.parse_params(c.params),
                inputs={
                    p: ref
                    for p, ref in {party: _resolve_input(c, party, datasets, produced)}.items()
                    if ref is not None
                },
                channels={p: TaggedChannel(channels[p], f"{c.id}/") for p in peers},
                out_dir=out_dir,
                progress=_component_progress(progress, c.id),
                artifacts={
                    f"{cid}.{name}": Path(o["path"])
                    for cid, done in produced.items()
                    for name, o in done.get("outputs", {}).items()
                },
                interop=ic,
            )
            sent0, recv0 = _moved(channels)
            cpu0 = time.process_time()
            summary = await comp.run(ctx)
            sent1, recv1 = _moved(channels)
            # what metering bills: this party's traffic and CPU time in this component
            summary["bytes"] = (sent1 - sent0) + (recv1 - recv0)
            summary["cpu_seconds"] = round(time.process_time() - cpu0, 6)
            produced[c.id] = summary
            written += [Path(o["path"]) for o in summary.get("outputs", {}).values()]
            if progress:
                progress(c.id, 1.0)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return {
        "job": job.name,
        "job_id": job_id,
        "party": party,
        "components": produced,
        "bytes_sent": sum(ch.bytes_sent for ch in channels.values()),
        "bytes_received": sum(ch.bytes_received for ch in channels.values()),
        "seconds": round(time.perf_counter() - t0, 3),
    }
