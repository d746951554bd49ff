"""Job workers: one process per job, followed from spawn to outcome.

A worker (``python -m rainbridge.node.worker CONTEXT.json``) runs this party's roles. It
reports progress as JSON lines on stdout and its outcome in ``result.json``; its stderr goes
to ``DIR/jobs/ID/worker.log`` so that a crash leaves its traceback with the operator and
never in an API answer. A worker writes its outputs to ``DIR/jobs/ID/staging/`` and moves
them to ``DIR/outputs/ID/`` only once every party of the job has finished every component
(:func:`~rainbridge.jobs.execute.run_party`). Whatever ends a job other than success (an
error, a cancel, a peer's abort, the node stopping), the job's staging and output folders
are removed once the worker has exited, so no output survives even a killed worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rainbridge.data.sql_source import urls_for
from rainbridge.node.config import NodeConfig, private_dir
from rainbridge.node.metrics import NodeMetrics, component_labels
from rainbridge.node.storage import Storage
from rainbridge.node.worker import SESSION_CODES

log = logging.getLogger("rainbridge.node.runner")

#: statuses of a job whose worker is (about to be) running
ACTIVE = ("starting", "running")
#: statuses a job never leaves
FINAL = ("succeeded", "failed", "refused", "aborted", "cancelled")
#: longest path a Unix socket may have (108 bytes on Linux, with the NUL)
_MAX_SOCKET_PATH = 100
#: at most this many progress writes per second and component reach the database
_PROGRESS_INTERVAL = 0.2

OnFailure = Callable[[str, str, str], Awaitable[None]]
OnEnded = Callable[[str], Awaitable[None]]


class Runner:
    """Spawns one worker process per job and records how it ended.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration (directory, timeouts).
    storage : Storage
        Where job status, progress and results are recorded.
    on_failure : callable
        ``await on_failure(job_id, code, message)`` when a worker fails on its own (not when it
        was stopped on purpose), so the node can tell the other parties why.
    on_ended : callable, optional
        ``await on_ended(job_id)`` once a worker has exited and its outcome is recorded,
        whatever it was (metering and the job record hang on it).
    key_password : bytes, optional
        The password of the node's TLS key file, passed to each worker on its stdin (and
        after it the clear URLs of the job's SQL datasets).
    metrics : NodeMetrics, optional
        Where finished jobs, their durations and their bytes per peer are counted.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        on_failure: OnFailure,
        *,
        on_ended: OnEnded | None = None,
        key_password: bytes | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self.storage = storage
        self.on_failure = on_failure
        self.on_ended = on_ended
        #: handed to each worker on its stdin (never in its context file or environment)
        self.key_password = key_password
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        #: when each running job's worker started (monotonic seconds)
        self._started: dict[str, float] = {}
        self.run_dir = self._pick_run_dir()

    def _pick_run_dir(self) -> Path:
        d = self.config.path / "run"
        if len(str(d / "0123456789abcdef.sock")) <= _MAX_SOCKET_PATH:
            private_dir(d)
            return d
        # A deep node directory cannot hold Unix sockets: use a private temporary folder.
        return Path(tempfile.mkdtemp(prefix="rainbridge-"))

    def socket_path(self, job_id: str) -> Path:
        return self.run_dir / f"{job_id}.sock"

    def job_dir(self, job_id: str) -> Path:
        return self.config.path / "jobs" / job_id

    def out_dir(self, job_id: str) -> Path:
        return self.config.path / "outputs" / job_id

    def staging_dir(self, job_id: str) -> Path:
        """Where the worker writes outputs until every party has finished."""
        return self.job_dir(job_id) / "staging"

    def discard_outputs(self, job_id: str) -> None:
        """Remove everything the job wrote here (it did not succeed)."""
        shutil.rmtree(self.staging_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.out_dir(job_id), ignore_errors=True)

    def running(self) -> list[str]:
        return [j for j, p in self.procs.items() if p.returncode is None]

    async def start(self, job_id: str, context: dict[str, Any]) -> None:
        """Spawn the worker of ``job_id`` with ``context`` (see :mod:`rainbridge.node.worker`)."""
        job_dir = private_dir(self.job_dir(job_id))
        context = {
            **context,
            "job_id": job_id,
            "node_dir": str(self.config.path),
            "timeout": self.config.timeout,
            "socket": str(self.socket_path(job_id)),
            "compute": self.config.compute_settings().to_dict(),
            "out_dir": str(self.out_dir(job_id)),
            "staging_dir": str(self.staging_dir(job_id)),
            "result": str(job_dir / "result.json"),
        }
        ctx_path = job_dir / "context.json"
        ctx_path.write_text(json.dumps(context))
        with open(job_dir / "worker.log", "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rainbridge.node.worker",
                str(ctx_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdin is not None
        proc.stdin.write((self.key_password or b"") + b"\n")
        # the clear URLs of the job's SQL datasets follow, one JSON line: never on disk
        urls = urls_for(list((context.get("datasets") or {}).values()))
        proc.stdin.write(json.dumps(urls).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        self.procs[job_id] = proc
        self._started[job_id] = time.monotonic()
        self.storage.update_job(job_id, status="running")
        self.storage.log("job_started", {"pid": proc.pid}, job_id)
        spec = context.get("spec")
        parties = spec.get("parties", []) if isinstance(spec, dict) else []
        log.info(
            "job %s started: %s with %s",
            job_id,
            ", ".join(component_labels(spec)),
            ", ".join(map(str, parties)),
            extra={
                "job_id": job_id,
                "component": component_labels(spec),
                "parties": parties,
                "status": "running",
                "workers": len(self.running()),
            },
        )
        self._watchers[job_id] = asyncio.create_task(self._watch(job_id, proc))

    async def stop(self, job_id: str, grace: float = 3.0) -> None:
        """Stop a worker (SIGTERM, then SIGKILL after ``grace`` s) and wait for its watcher.

        Set the job's final status *before* calling this: the watcher keeps a status that is
        no longer active, and only cleans up.
        """
        proc = self.procs.get(job_id)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        watcher = self._watchers.get(job_id)
        if watcher is not None and watcher is not asyncio.current_task():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(watcher), grace + 2)
        row = self.storage.find_job(job_id)
        if job_id not in self.procs and (row is None or row.status != "succeeded"):
            self.discard_outputs(job_id)  # stopped before or after its worker: nothing stays

    async def stop_all(self, grace: float = 3.0) -> None:
        await asyncio.gather(*(self.stop(j, grace) for j in list(self.procs)))

    async def _watch(self, job_id: str, proc: asyncio.subprocess.Process) -> None:
        try:
            progress = await self._follow_progress(job_id, proc)
            code = await proc.wait()
            await self._finish(job_id, code, progress)
            self._ended(job_id)
            if self.on_ended is not None:
                try:
                    await self.on_ended(job_id)
                except Exception:
                    log.exception("job %s: recording its end failed", job_id)
        finally:
            self.procs.pop(job_id, None)
            self._watchers.pop(job_id, None)
            self._started.pop(job_id, None)
            with contextlib.suppress(OSError):
                self.socket_path(job_id).unlink()

    def _ended(self, job_id: str) -> None:
        """Count and log the end of a job whose worker exited (its status is final now)."""
        row = self.storage.find_job(job_id)
        if row is None:
            return
        took = time.monotonic() - self._started.get(job_id, time.monotonic())
        self.metrics.job_finished(job_id, row.spec, row.status, took)
        outcome: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            outcome = json.loads((self.job_dir(job_id) / "result.json").read_text())
        traffic = outcome.get("traffic") if isinstance(outcome, dict) else None
        peers = (row.spec or {}).get("parties", []) if isinstance(row.spec, dict) else []
        if isinstance(traffic, dict):
            for peer, t in traffic.items():
                # only the job's own parties: the label stays within the pinned peers
                if peer in peers and isinstance(t, dict):
                    self.metrics.traffic(
                        peer, "job", int(t.get("sent") or 0), int(t.get("received") or 0)
                    )
        types = component_labels(row.spec)
        log.info(
            "job %s ended: %s after %.3f s (%s)",
            job_id,
            row.status,
            took,
            ", ".join(types),
            extra={
                "job_id": job_id,
                "component": types,
                "parties": peers,
                "status": row.status,
                "duration_s": round(took, 3),
            },
        )

    async def _follow_progress(
        self, job_id: str, proc: asyncio.subprocess.Process
    ) -> dict[str, float]:
        assert proc.stdout is not None
        progress: dict[str, float] = {}
        last = 0.0
        while line := await proc.stdout.readline():
            try:
                msg = json.loads(line)
                progress[str(msg["component"])] = min(1.0, max(0.0, float(msg["fraction"])))
            except (ValueError, KeyError, TypeError):
                continue  # not a progress line: ignore rather than trust it
            now = time.monotonic()
            if now - last >= _PROGRESS_INTERVAL:
                last = now
                self.storage.update_job(job_id, progress=dict(progress))
        return progress

    async def _finish(self, job_id: str, code: int, progress: dict[str, float]) -> None:
        row = self.storage.find_job(job_id)
        outcome: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            outcome = json.loads((self.job_dir(job_id) / "result.json").read_text())
        shutil.rmtree(self.staging_dir(job_id), ignore_errors=True)  # empty after success
        if row is not None and row.status in ACTIVE and code == 0 and outcome.get("ok"):
            self.storage.update_job(
                job_id, status="succeeded", result=outcome["result"], progress=progress
            )
            self.storage.log(
                "job_succeeded",
                {
                    "outputs": _outputs(outcome["result"]),
                    "seconds": outcome["result"].get("seconds"),
                },
                job_id,
            )
            return
        # Anything but success: no output may remain, whatever the worker managed to write.
        self.discard_outputs(job_id)
        own = outcome.get("error") if isinstance(outcome.get("error"), dict) else None
        if row is not None and row.status == "aborted" and own and _local_cause(own):
            # This worker failed by itself (a file, a column, a bug); the other parties'
            # aborts that its failure caused only overtook its result. Its own error is the
            # cause, and stays this node's record of the job.
            message = str(own.get("message", "unknown error"))
            self.storage.update_job(job_id, status="failed", error=message, progress=progress)
            self.storage.log("job_failed", {"code": own.get("code"), "message": message}, job_id)
            return
        if row is None or row.status not in ACTIVE:
            return  # stopped on purpose (cancel, abort, shutdown): the status is already set
        err = outcome.get("error") or {
            "code": "worker",
            "message": f"the job's worker process exited with status {code} "
            f"(details in the node's jobs/{job_id}/worker.log)",
        }
        message = str(err.get("message", "unknown error"))
        self.storage.update_job(job_id, status="failed", error=message, progress=progress)
        self.storage.log("job_failed", {"code": err.get("code"), "message": message}, job_id)
        log.warning("job %s failed: %s", job_id, message)
        try:
            await self.on_failure(job_id, str(err.get("code", "worker")), message)
        except Exception:
            log.exception("could not report the failure of job %s", job_id)


def _local_cause(error: dict[str, Any]) -> bool:
    """Whether a worker's error is its own (not the session's, not a stop by its node)."""
    return bool(error.get("code")) and error.get("code") not in SESSION_CODES


def _outputs(result: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{cid}.{name}": {"path": o.get("path"), "rows": o.get("rows")}
        for cid, comp in result.get("components", {}).items()
        for name, o in comp.get("outputs", {}).items()
    }
