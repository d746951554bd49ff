"""Compute engines: where one party's work runs.

``local`` (the default) runs a party's tasks in its job worker process: CPU-bound calls go to
threads (the core releases the GIL and has its own rayon threads), sessions run as asyncio
tasks. ``ray`` runs them on a Ray cluster *inside the party*: pure functions as Ray tasks,
and a session (one bucket pair of a PSI) as a Ray task that speaks on one sub-channel of the
party pair's link through the job worker (:mod:`rainbridge.net.relay`). The link between the
parties stays the one mutual-TLS connection the job worker holds.

Isolation rule: Ray's processes trust each other and whoever holds the cluster's token
(recent Ray versions check one; older ones check nothing): it is no barrier against another
institution. Its ports must only be reachable inside the party's own network;
:func:`check_ray_address` refuses an address that resolves to a public IP, and the node's
docs say how to firewall a cluster.

Every engine gives the same results: tasks are pure functions of their inputs, and their
outputs are combined in a fixed order whatever the order they finish in.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ipaddress
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from rainbridge.errors import ChannelError, ConfigError, RainbridgeError
from rainbridge.net.channel import Channel

if TYPE_CHECKING:
    from rainbridge.net.mux import Mux
    from rainbridge.net.relay import Relay

T = TypeVar("T")
#: the engines a node may be configured with (``[compute] engine``)
ENGINES = ("local", "ray")
#: how long a failed map waits for its other Ray tasks to stop
CANCEL_WAIT_S = 30.0
#: a session function: ``async fn(channel, *args) -> result``, importable by module path
SessionFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ComputeSettings:
    """A party's compute settings (the node's ``[compute]`` table).

    Attributes
    ----------
    engine : str
        ``local`` or ``ray``.
    workers : int
        Tasks run at once (0: one per CPU here, or per ``task_cpus`` of the Ray cluster).
    ray_address : str
        The Ray cluster to join (``host:port`` of its head, inside the party's network);
        empty: a Ray instance on this machine, started for the job and stopped after it.
    task_cpus : float
        CPUs Ray reserves for each task (the core's threads in the task follow it).
    relay_host : str
        The address of this node that Ray tasks connect to for their sub-channel (an
        address of the party's private network; loopback for a cluster on this machine).
    work_dir : str
        Storage every worker reaches (a shared file system for a multi-machine cluster):
        bucket files and checkpoints. Empty: the job's own folder.
    """

    engine: str = "local"
    workers: int = 0
    ray_address: str = ""
    task_cpus: float = 1.0
    relay_host: str = "127.0.0.1"
    work_dir: str = ""

    def check(self) -> None:
        """Refuse settings that cannot work, naming the setting."""
        if self.engine not in ENGINES:
            raise ConfigError(f"compute engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.workers < 0:
            raise ConfigError("compute workers must be 0 (automatic) or a positive number")
        if not 0 < self.task_cpus <= 1024:
            raise ConfigError("compute task_cpus must be a positive number of CPUs")
        if self.engine == "ray" and self.ray_address:
            check_ray_address(self.ray_address)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ComputeSettings:
        d = d or {}
        return cls(
            engine=str(d.get("engine") or "local"),
            workers=int(d.get("workers") or 0),
            ray_address=str(d.get("ray_address") or ""),
            task_cpus=float(d.get("task_cpus") or 1.0),
            relay_host=str(d.get("relay_host") or "127.0.0.1"),
            work_dir=str(d.get("work_dir") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "workers": self.workers,
            "ray_address": self.ray_address,
            "task_cpus": self.task_cpus,
            "relay_host": self.relay_host,
            "work_dir": self.work_dir,
        }


def check_ray_address(address: str) -> None:
    """Refuse a Ray address that is, or resolves to, a public IP address.

    Ray's ports must never face another party: a cluster reached over the internet would let
    anyone who reaches it run code inside the party. ``auto`` (the cluster this machine
    belongs to) is accepted.
    """
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    host = parts.hostname
    if not host:
        raise ConfigError(f"compute ray_address {address!r}: expected host:port of the head")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ConfigError(f"compute ray_address {address!r}: cannot resolve {host!r}") from exc
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip.is_global:
            raise ConfigError(
                f"compute ray_address {address!r} resolves to the public address {ip}: a Ray "
                "cluster must stay inside the party's private network (Ray does not "
                "authenticate other institutions)"
            )


class ComputeEngine(abc.ABC):
    """Runs a party's tasks; see the module docstring."""

    name: str
    settings: ComputeSettings

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """Tasks this engine runs at once."""

    def work_dir(self, fallback: Path) -> Path:
        """Where bucket files and checkpoints go: the configured shared storage, else
        ``fallback`` (a folder of the job)."""
        return Path(self.settings.work_dir) if self.settings.work_dir else fallback

    @abc.abstractmethod
    async def map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]:
        """``[fn(*args) for args in items]``, run in parallel; results in the items' order.

        ``fn`` must be a module-level function (a Ray task imports it by name).
        """

    @abc.abstractmethod
    async def sessions(self, mux: Mux) -> Sessions:
        """A runner of sessions on sub-channels of ``mux`` (the link to one peer); close it
        when done with that link."""

    def lost_task(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the task's process or machine was lost (worth a retry)."""
        return False

    async def start(self) -> None:  # noqa: B027 - engines without setup need nothing
        """Connect to the engine's resources (idempotent)."""

    async def close(self) -> None:  # noqa: B027
        """Release what :meth:`start` took."""


class LocalEngine(ComputeEngine):
    """Tasks in this process: threads for CPU-bound calls, asyncio tasks for sessions."""

    name = "local"

    def __init__(self, settings: ComputeSettings | None = None) -> None:
        self.settings = settings or ComputeSettings()
        self._workers = self.settings.workers or (os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(self._workers)

    @property
    def workers(self) -> int:
        return self._workers

    async def map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]:
        failed: list[BaseException] = []

        async def one(args: tuple[Any, ...]) -> T | None:
            async with self._slots:
                if failed:  # no new task after a failure
                    return None
                try:
                    return await asyncio.to_thread(fn, *args)
                except BaseException as exc:
                    failed.append(exc)
                    raise

        # Every started thread is waited for (a thread cannot be stopped): the caller
        # removes the tasks' work folder after a failure, and none may write there later.
        results = await asyncio.gather(*(one(a) for a in items), return_exceptions=True)
        if failed:
            raise failed[0]
        return [cast(T, r) for r in results]

    async def sessions(self, mux: Mux) -> Sessions:
        return Sessions(mux)


async def run_on(ch: Channel, fn: SessionFn, args: tuple[Any, ...]) -> Any:
    """``fn(ch, *args)``; on failure the peer's end of ``ch`` is told why at once."""
    try:
        result = await fn(ch, *args)
    except BaseException as exc:
        if isinstance(exc, RainbridgeError) and not isinstance(exc, ChannelError):
            reason = f"failed: {exc.code}"
        elif isinstance(exc, ChannelError):
            reason = f"channel: {exc.code}"
        else:
            reason = "failed: stopped"
        with contextlib.suppress(Exception):  # the link may be gone; the error says why
            await ch.abort(reason)
        raise
    await ch.close()
    return result


class Sessions:
    """Runs sessions on sub-channels of one link's :class:`~rainbridge.net.mux.Mux`, here."""

    def __init__(self, mux: Mux) -> None:
        self.mux = mux

    async def run(self, fn: SessionFn, args: tuple[Any, ...], sub: str) -> Any:
        """``await fn(channel, *args)`` with ``channel`` = sub-channel ``sub``."""
        return await run_on(self.mux.open(sub), fn, args)

    async def close(self) -> None:
        """Stop taking sessions (the mux itself is the caller's)."""


class _RaySessions(Sessions):
    """Sessions as Ray tasks, each speaking on its sub-channel through the relay."""

    def __init__(self, mux: Mux, engine: RayEngine, relay: Relay) -> None:
        super().__init__(mux)
        self.engine = engine
        self.relay = relay

    async def run(self, fn: SessionFn, args: tuple[Any, ...], sub: str) -> Any:
        self.relay.allow(sub)
        ref = self.engine._task(_remote_session).remote(self.relay.ticket, sub, fn, args)
        result = asyncio.ensure_future(self.engine._await(ref))
        # A task that waits for a CPU never connects, so nothing would tell it the link
        # failed: the failure ends the wait here, and the task is cancelled.
        failure = asyncio.ensure_future(self.mux.wait_failure())
        try:
            await asyncio.wait({result, failure}, return_when=asyncio.FIRST_COMPLETED)
            if result.done():
                try:
                    return result.result()
                except BaseException as exc:
                    if self.engine.lost_task(exc):
                        # a task lost before it reached the relay: the peer hears it too
                        await self.relay.abandon(sub)
                    raise
            raise self.mux.link_error(sub)
        finally:
            failure.cancel()
            if not result.done():
                result.cancel()
                with contextlib.suppress(Exception):
                    self.engine._ray.cancel(ref, force=True)

    async def close(self) -> None:
        await self.relay.close()


class RayEngine(ComputeEngine):
    """Tasks on a Ray cluster inside the party (see the module docstring)."""

    name = "ray"

    def __init__(self, settings: ComputeSettings) -> None:
        self.settings = settings
        self._ray: Any = None
        self._started_here = False
        self._workers = settings.workers
        self._remote: dict[Any, Any] = {}

    @property
    def workers(self) -> int:
        return max(1, self._workers)

    async def start(self) -> None:
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "compute engine 'ray' needs Ray: install rainbridge[ray] on this node and on "
                "every machine of the Ray cluster"
            ) from None
        self.settings.check()
        if ray.is_initialized():
            self._ray = ray
        else:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
                "namespace": "rainbridge",
            }
            if self.settings.ray_address:
                kwargs["address"] = self.settings.ray_address
            else:
                kwargs["num_cpus"] = self.settings.workers or (os.cpu_count() or 1)
                self._started_here = True
            try:
                await asyncio.to_thread(ray.init, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"compute engine 'ray': cannot join the cluster at "
                    f"{self.settings.ray_address or 'this machine'}: {exc}"
                ) from None
            self._ray = ray
        try:
            await asyncio.to_thread(self._check_task_cpus)
            if not self._workers:
                cpus = float(ray.cluster_resources().get("CPU", 1))
                self._workers = max(1, int(cpus // self.settings.task_cpus))
            await self._check_versions()
        except BaseException:
            # a Ray instance started for this job must not outlive a refusal
            await self.close()
            raise

    def _check_task_cpus(self) -> None:
        """Refuse ``task_cpus`` that no machine of the cluster has: Ray would keep every
        task pending for ever (it waits for a machine that may join) and the job would hang."""
        most = max(
            (
                float(n.get("Resources", {}).get("CPU", 0))
                for n in self._ray.nodes()
                if n.get("Alive")
            ),
            default=0.0,
        )
        if self.settings.task_cpus > most:
            raise ConfigError(
                f"compute task_cpus {self.settings.task_cpus:g}: no machine of the Ray cluster "
                f"has that many CPUs (the largest has {most:g}); lower task_cpus"
            )

    async def _check_versions(self) -> None:
        """Every worker must run the same Rainbridge as this node (tasks are imported by
        name): one probe task says which it runs."""
        import rainbridge

        theirs = await self.map(_version, [()])
        if theirs[0] != rainbridge.__version__:
            raise ConfigError(
                f"the Ray cluster runs Rainbridge {theirs[0]}, this node {rainbridge.__version__}"
                ": install the same version on every machine of the cluster"
            )

    def _task(self, fn: Callable[..., Any]) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            threads = str(max(1, round(self.settings.task_cpus)))
            remote = self._ray.remote(fn).options(
                num_cpus=self.settings.task_cpus,
                max_retries=0,  # a lost task is retried by the caller, which knows the peer
                runtime_env={"env_vars": {"RAYON_NUM_THREADS": threads}},
            )
            self._remote[fn] = remote
        return remote

    async def _await(self, ref: Any) -> Any:
        try:
            return await ref
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    async def map(self, fn: Callable[..., T], items: Sequence[tuple[Any, ...]]) -> list[T]:
        await self.start()
        task = self._task(fn)
        refs = [task.remote(*args) for args in items]
        try:
            return list(await asyncio.gather(*(self._await(r) for r in refs)))
        except BaseException:
            # The others are stopped and waited for: the caller removes their work folder
            # after a failure, and none may write there later.
            for ref in refs:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref, force=True)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.gather(*refs, return_exceptions=True), CANCEL_WAIT_S)
            raise

    async def sessions(self, mux: Mux) -> Sessions:
        from rainbridge.net.relay import Relay

        await self.start()
        relay = Relay(mux, host=self.settings.relay_host)
        await relay.start()
        return _RaySessions(mux, self, relay)

    def lost_task(self, exc: BaseException) -> bool:
        if self._ray is None:
            return False
        lost = (
            self._ray.exceptions.WorkerCrashedError,
            self._ray.exceptions.NodeDiedError,
            self._ray.exceptions.ObjectLostError,
            self._ray.exceptions.OwnerDiedError,
            self._ray.exceptions.LocalRayletDiedError,
            self._ray.exceptions.TaskUnschedulableError,
        )
        return isinstance(exc, lost)

    async def close(self) -> None:
        if self._ray is not None and self._started_here:
            await asyncio.to_thread(self._ray.shutdown)
        self._ray = None


def _version() -> str:
    import rainbridge

    return rainbridge.__version__


def _remote_session(ticket: Any, sub: str, fn: SessionFn, args: tuple[Any, ...]) -> Any:
    """A Ray task's side of a session: its sub-channel through the job worker's relay."""
    from rainbridge.net.relay import connect_sub

    async def go() -> Any:
        ch, closer = await connect_sub(ticket, sub)
        try:
            return await run_on(ch, fn, args)
        finally:
            await closer()

    return asyncio.run(go())


def make_engine(settings: ComputeSettings | dict[str, Any] | None) -> ComputeEngine:
    """The engine ``settings`` names (not started: :meth:`ComputeEngine.start`)."""
    if not isinstance(settings, ComputeSettings):
        settings = ComputeSettings.from_dict(settings)
    settings.check()
    if settings.engine == "ray":
        return RayEngine(settings)
    return LocalEngine(settings)


def scratch_dir(base: Path, name: str) -> Path:
    """A fresh private folder under ``base`` for one component's bucket files."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}.", dir=base))
