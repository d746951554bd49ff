"""Run one party's roles of every component of a job, in order.

The node calls :func:`run_party` in a worker process with channels to every peer of the job;
local simulation calls it once per party in one process.

Nothing is left behind by a job that fails anywhere:

* before its first message, a party checks every input it will read
  (:func:`check_inputs`): each dataset is registered and its file is there, and every column
  any component reads or outputs at this party exists — in the dataset, or in the output of
  the earlier component it comes from;
* outputs are written to a staging folder and become visible (moved into ``out_dir``) only
  when every party has finished every component: at the end, each party tells every other
  one it is done and waits until all are (parties with nothing left to do together send
  heartbeats meanwhile, so a long step elsewhere is not mistaken for a dead peer). A
  failure anywhere reaches every party as an abort or a closed channel before that, and each
  removes its staging folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rainbridge.components import ComponentContext, get_component
from rainbridge.compute.engine import ComputeEngine, LocalEngine
from rainbridge.data import DatasetRef, inspect_dataset
from rainbridge.errors import DataError
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.spec import ComponentSpec, JobSpec
from rainbridge.net.channel import Channel

ProgressFn = Callable[[str, float], None]

#: the tag of the end-of-job exchange (a component id cannot hold a dot, so no component's
#: tags, which its id prefixes, can be mistaken for it)
END_TAG = "job.end"
_DONE = b"done"
_ALIVE = b"alive"
#: how many receive timeouts a party waits at the end for a peer's next word: a peer may still
#: be doing the local work that ends its last component (writing its outputs), during which
#: it sends nothing; a peer busy with other parties sends heartbeats instead
END_PATIENCE = 10


def _reconnector(
    channels: Mapping[str, Channel],
    reconnect: Callable[[str], Awaitable[Channel]] | None,
    prefix: str,
) -> Callable[[str], Awaitable[Channel]] | None:
    """A component's reconnect: a new link to the peer, kept for the job's later
    components, seen through the component's tag prefix."""
    if reconnect is None:
        return None

    async def again(peer: str) -> Channel:
        fresh = await reconnect(peer)
        if isinstance(channels, dict):
            old = channels.get(peer)
            channels[peer] = fresh
            if old is not None:  # dropped: release its socket now, not at the job's end
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.close(), 5)
        return TaggedChannel(fresh, prefix)

    return again


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


# -- checks before the first message ---------------------------------------------------------


def check_inputs(job: JobSpec, party: str, datasets: Mapping[str, DatasetRef]) -> None:
    """Refuse a job whose inputs at ``party`` are not all there, before any message.

    Every dataset the job reads at ``party`` must be in ``datasets`` with its file present,
    and every column that any of its components reads or outputs at ``party``
    (:meth:`~rainbridge.components.Component.columns_needed`: ID columns, output columns,
    filter, feature, statistics and group-by columns…) must be a column of the file now and
    of the dataset as registered — or, for an input ``from:`` an earlier component, of that
    output as the component declares it (:meth:`~rainbridge.components.Component.
    output_columns`). Messages name the party, the dataset, the column and the component,
    never a file's path: at a node, a refusal goes back to the proposing peer.

    Raises
    ------
    DataError
        The first input that is missing, with what needs it.
    """
    files: dict[str, set[str]] = {}
    #: "component.output" -> the columns it will have at this party (None: not known yet)
    produced: dict[str, set[str] | None] = {}
    earlier: dict[str, ComponentSpec] = {}
    ids = {c.id for c in job.components}
    for c in job.components:
        ref = c.inputs.get(party)
        model = str(c.params.get("model", "")) if c.type == "predict" else ""
        if ref is not None and model in ids and model not in earlier:
            # else a registered model of that name would score instead, silently
            raise DataError(
                f"component {c.id!r}: {model!r} comes after it (a model is trained before "
                "it scores)"
            )
        if ref is not None and model in earlier:
            # an earlier component is the in-job model, never a registered one of that name
            if f"{model}.model" not in produced:
                raise DataError(
                    f"component {c.id!r}: {model!r} gives no model at {party!r} (name a "
                    f"train_lr or train_sgb component whose model {party!r} receives, or a "
                    "registered model)"
                )
            trained = sorted(p for p, r in earlier[model].inputs.items() if r.role is None)
            scored = sorted(p for p, r in c.inputs.items() if r.role is None)
            if trained != scored:  # every part adds to each score
                raise DataError(
                    f"component {c.id!r}: model {model!r} was trained by "
                    f"{', '.join(trained)}; it scores with the same parties"
                )
            label = earlier[model].params.get("label")
            holder = label.get("party") if isinstance(label, dict) else None
            out = c.outputs.get("predictions")
            if holder is not None and out is not None and out.receivers != [holder]:
                raise DataError(  # only the label party can add the partial scores up
                    f"component {c.id!r}: the predictions go to the label party of model "
                    f"{model!r}, {holder!r}"
                )
        earlier[c.id] = c
        if ref is None:
            continue
        comp = get_component(c.type)
        have: set[str] | None = None
        id_column: str | None = None
        what = ""
        if ref.dataset is not None:
            ds = datasets.get(ref.dataset)
            if ds is None:
                raise DataError(
                    f"dataset {ref.dataset!r} is not registered at {party!r} (component {c.id!r})"
                )
            if ds.name not in files:
                files[ds.name] = _columns_now(ds, party, c.id)
            have, id_column, what = files[ds.name], ref.id or ds.id_column, f"dataset {ds.name!r}"
            if c.type == "psi" and not id_column:  # else only its run finds it, messages later
                raise DataError(
                    f"{what} at {party!r} has no ID column: component {c.id!r} matches on it "
                    "(name it with 'id')"
                )
        elif ref.from_ is not None:
            if ref.from_ not in produced:
                raise DataError(f"component {c.id!r}: {ref.from_!r} is not produced at {party!r}")
            have, id_column, what = produced[ref.from_], ref.id, f"{ref.from_!r}"
        if have is not None:
            for col, why in comp.columns_needed(c, party, id_column).items():
                if col not in have:  # its other columns are not named: peers read this
                    raise DataError(
                        f"{what} at {party!r} has no column {col!r}: component {c.id!r} {why}"
                    )
        for name, out in c.outputs.items():
            if party in out.receivers:
                cols = comp.output_columns(c, name, party, id_column)
                produced[f"{c.id}.{name}"] = None if cols is None else set(cols)


def _columns_now(ds: DatasetRef, party: str, component: str) -> set[str]:
    """The columns dataset ``ds`` has both as registered and in its file now."""
    if ds.format == "sql":
        return set(ds.columns)  # the read itself refuses a column the database lost
    path = Path(ds.path)
    if not path.is_file():
        raise DataError(
            f"dataset {ds.name!r} at {party!r} cannot be read: its file is missing "
            f"(component {component!r}); its owner registers it again or restores the file"
        )
    registered = set(ds.columns)
    now = _header(ds)
    if now is None:
        return registered
    return registered & now if registered else now


def _header(ds: DatasetRef) -> set[str] | None:
    """The column names in the file's header (None: not readable here; the data layer's
    own reading then decides)."""
    try:
        if ds.format == "parquet":
            return set(pq.read_schema(ds.path).names)
        encoding = str(getattr(ds, "encoding", None) or "utf-8")
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # a byte-order mark is not part of the first name
        delimiter = "\t" if Path(ds.path).suffix.lower() == ".tsv" else ","
        with open(ds.path, newline="", encoding=encoding) as f:
            return set(next(csv.reader(f, delimiter=delimiter), []))
    except (OSError, ValueError, LookupError, csv.Error, pa.ArrowException):
        return None


# -- one party's run --------------------------------------------------------------------------


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
            ds = DatasetRef.from_dict({**ds.to_dict(), "id_column": ref.id})
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


class _Ending:
    """The end-of-job exchange with every peer.

    Once a party has run the last component it shares with a peer, the channel between them
    carries nothing until the end; from then on the party sends that peer a heartbeat every
    quarter of the receive timeout, so that a peer still busy elsewhere (a long training
    between two other parties) is told apart from a dead one. At the end it sends ``done``
    and waits for every peer's, each word within :data:`END_PATIENCE` receive timeouts.
    """

    def __init__(self, job: JobSpec, party: str, channels: Mapping[str, Channel]) -> None:
        self.channels = channels
        #: per peer, the index of the last component the two share (-1: none)
        self.last = dict.fromkeys(channels, -1)
        for i, c in enumerate(job.components):
            if party in c.inputs:
                for p in c.inputs:
                    if p in self.last:
                        self.last[p] = i
        self.stop = asyncio.Event()
        self.beats: dict[str, asyncio.Task[None]] = {}

    def passed(self, index: int) -> None:
        """Component ``index`` (-1: none yet) is done: start the heartbeats it frees."""
        for p, last in self.last.items():
            if last <= index and p not in self.beats:
                self.beats[p] = asyncio.create_task(self._beat(self.channels[p]))

    async def _beat(self, ch: Channel) -> None:
        interval = min(5.0, max(0.05, float(getattr(ch, "timeout", 60.0)) / 4))
        with contextlib.suppress(Exception):
            while not self.stop.is_set():
                await ch.send(END_TAG, _ALIVE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), interval)

    def cancel(self) -> None:
        self.stop.set()
        for t in self.beats.values():
            t.cancel()

    async def finish(self) -> None:
        """Tell every peer this party is done; wait until every peer is.

        Every peer's channel is read while this party sends, so that two parties never both
        wait for the other to read (a backlog of heartbeats could fill the buffers between
        them)."""
        self.stop.set()
        waits = [asyncio.create_task(self._until_done(ch)) for ch in self.channels.values()]
        tells = [asyncio.create_task(self._tell(p, ch)) for p, ch in self.channels.items()]
        if not waits:
            return
        done, pending = await asyncio.wait([*waits, *tells], return_when=asyncio.FIRST_EXCEPTION)
        for t in pending:
            t.cancel()
        # collected, so that one that failed while the others were cancelled is not reported
        # as an exception never retrieved
        await asyncio.gather(*pending, return_exceptions=True)
        errors = [e for e in (t.exception() for t in done) if e is not None]
        if errors:
            raise errors[0]

    async def _tell(self, peer: str, ch: Channel) -> None:
        beat = self.beats.get(peer)
        if beat is not None:  # after the heartbeat it is sending, never inside it
            await asyncio.gather(beat, return_exceptions=True)
        await ch.send(END_TAG, _DONE)

    @staticmethod
    async def _until_done(ch: Channel) -> None:
        patience = END_PATIENCE * float(getattr(ch, "timeout", 60.0))
        while (await ch.recv(END_TAG, timeout=patience)) != _DONE:
            pass  # a heartbeat: the peer is alive, still busy with the others


def _promote(produced: dict[str, Any], staging: Path, out_dir: Path) -> None:
    """Move every output from ``staging`` into ``out_dir``; the summaries' paths follow."""
    for summary in produced.values():
        for o in summary.get("outputs", {}).values():
            src = Path(o["path"])
            try:
                rel = src.relative_to(staging)
            except ValueError:
                continue  # not written where it was told to: left as it is
            dst = out_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dst)  # one file system: the file appears whole or not at all
            except OSError:
                shutil.move(str(src), str(dst))
            o["path"] = str(dst)


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
    staging_dir: Path | None = None,
    compute: ComputeEngine | None = None,
    reconnect: Callable[[str], Awaitable[Channel]] | None = None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``party``'s roles of every component of ``job``.

    Parameters
    ----------
    channels : Mapping[str, Channel]
        A channel of this job's session to every other party of the job.
    datasets : Mapping[str, DatasetRef]
        This party's registered datasets, by name.
    out_dir : Path
        Where this party's outputs go (only outputs it receives), once every party is done.
    ic_peers : Mapping, optional
        Parties that speak the interconnection standard (no channel; see
        :mod:`rainbridge.node.interop`), with how to reach them.
    staging_dir : Path, optional
        Where outputs are written until every party is done (a new folder beside
        ``out_dir`` by default); removed at the end, whatever the outcome.
    compute : ComputeEngine, optional
        Where this party's tasks run (default: this process, :class:`LocalEngine`).
    reconnect : callable, optional
        ``await reconnect(peer)`` opens a new channel of this job's session to ``peer``
        after the old one dropped (components that can resume use it; the new channel
        replaces the old one in ``channels`` for the rest of the job).
    models : Mapping, optional
        Registered models that a ``predict`` of the job names, by the name it uses: this
        party's part (``path``) and its registration (``id``, ``name``, ``version``,
        ``features``…), as the node's registry resolved them.

    Returns
    -------
    dict
        ``{"job", "party", "components": {id: summary}, "bytes_sent", "bytes_received",
        "seconds"}``; each summary lists its outputs with paths.

    Raises
    ------
    DataError
        An input is missing (:func:`check_inputs`), before any message is sent.
    """
    if party not in job.parties:
        raise DataError(f"party {party!r} is not named in job {job.name!r}")
    job = complete_job(job, party, datasets, models)
    check_inputs(job, party, datasets)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if staging_dir is None:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".staging", dir=out_dir.parent)
        )
    else:
        staging = Path(staging_dir)
        staging.mkdir(parents=True, exist_ok=True)
    produced: dict[str, Any] = {}
    engine = compute or LocalEngine()
    ending = _Ending(job, party, channels)
    try:
        ending.passed(-1)
        for index, c in enumerate(job.components):
            if party not in c.inputs:
                continue
            comp = get_component(c.type)
            ic = {p: v for p, v in (ic_peers or {}).items() if p in c.parties}
            peers = [p for p in c.parties if p != party and p not in ic]
            missing = [p for p in peers if p not in channels]
            if missing:
                raise DataError(f"component {c.id!r}: no channel to {', '.join(missing)}")
            mine = {p: channels[p] for p in peers}
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
                channels={p: TaggedChannel(ch, f"{c.id}/") for p, ch in mine.items()},
                out_dir=staging,
                progress=_component_progress(progress, c.id),
                artifacts={
                    f"{cid}.{name}": Path(o["path"])
                    for cid, done in produced.items()
                    for name, o in done.get("outputs", {}).items()
                },
                interop=ic,
                models=dict(models or {}),
                compute=engine,
                reconnect=_reconnector(channels, reconnect, f"{c.id}/"),
            )
            sent0, recv0 = _moved(mine)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            summary = await comp.run(ctx)
            sent1, recv1 = _moved(mine)
            # what metering bills: this party's traffic and CPU time in this component
            summary["bytes"] = (sent1 - sent0) + (recv1 - recv0)
            summary["cpu_seconds"] = round(time.process_time() - cpu0, 6)
            summary["seconds"] = round(time.perf_counter() - wall0, 3)
            produced[c.id] = summary
            ending.passed(index)
            if progress:
                progress(c.id, 1.0)
        await ending.finish()
        _promote(produced, staging, out_dir)
    finally:
        ending.cancel()
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "job": job.name,
        "job_id": job_id,
        "party": party,
        "components": produced,
        "bytes_sent": sum(ch.bytes_sent for ch in channels.values()),
        "bytes_received": sum(ch.bytes_received for ch in channels.values()),
        "seconds": round(time.perf_counter() - t0, 3),
    }
