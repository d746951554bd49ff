"""The consortium multi-lender query at a node (:mod:`rainbridge.protocols.mlq`).

A member joins a service with its role: a *lender* names its dataset of applications (ID
and date columns) and gets a fresh secret key; the *merger* holds no data. ``build`` at the
merger runs the ring over the lenders' windows (the last ``window_days`` days up to the
build's date) and publishes the merged multiset; it tells each lender, which copies it
before its next count. ``count`` at a lender sends the blinded ID to every other lender in
turn and reads the count from the multiset, minus its own presence in its window *as frozen
at that build*.

One snapshot: when a lender masks its window for a build it freezes it (the window's
distinct IDs under ``DIR/mlq/<service>/windows/<build>.parquet``, and a digest that the
merger records with the build). Every count names its build; the asking lender and every
lender it asks check that their data for that build's window is still what they froze
(the check rereads a dataset only when its file changed). A lender whose window changed
says so, and the count is refused with the lender and the fix (rebuild), or, for a service
joined with ``on_change="rebuild"`` (the merger's setting decides whether it accepts), the
merger rebuilds the same window and the count is asked again on the new build.

Every request is accepted only from the member the role requires (``mlq_mask`` and
``mlq_remask`` from the merger, ``mlq_eval``, ``mlq_sync``, ``mlq_status`` and
``mlq_rebuild`` from lenders); evaluations are
rate-limited per asking lender, metered (``component_type: mlq``) and ledgered without the
ID (the answering lender never sees it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import (
    AuthorizationError,
    ConfigError,
    DataError,
    NotFoundError,
    RainbridgeError,
    RateLimitError,
)
from rainbridge.node.config import NodeConfig, check_name
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.pir import TokenBucket, _check_service_name
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import MeterRow, Storage
from rainbridge.protocols import mlq
from rainbridge.protocols.pir.wire import b64, unb64

#: elements per build message (32 bytes each; base64 and JSON stay under the control limit)
PAGE = 32_768
#: what a lender's count does when a window changed since the build: refuse, or rebuild
ON_CHANGE = ("refuse", "rebuild")
#: frozen windows a lender keeps (the latest builds it took part in)
KEEP_WINDOWS = 4
_BUILD_ID = re.compile(r"^[0-9a-f]{16}$")
#: a file modified less than this long ago is read again rather than trusted by its times
_RACY_NS = 2_000_000_000


#: the message types of the multi-lender count between its members
MESSAGES = (
    "mlq_mask",
    "mlq_remask",
    "mlq_new_build",
    "mlq_sync",
    "mlq_eval",
    "mlq_status",
    "mlq_rebuild",
)


def _window_changed(peer: str, reason: str, reply: dict[str, Any]) -> Exception:
    return mlq.WindowChangedError(
        reason,
        lender=str(reply.get("lender", peer)),
        build=str(reply.get("build", "")),
        end=str(reply.get("end", "")),
    )


#: the multi-lender count's own refusals, as the asking member raises them
_REFUSALS = {
    "window_changed": _window_changed,
    "stale_build": lambda peer, reason, _r: mlq.StaleBuildError(f"{peer!r}: {reason}"),
}


class Mlq:
    """The multi-lender count (实时多头) at a node, as lender or merger; owns the rate limits
    of lenders' counts and the cache of multisets, masks and builds."""

    def __init__(
        self, config: NodeConfig, storage: Storage, dataplane: DataPlane, router: MessageRouter
    ) -> None:
        self.name, self.config, self.storage, self.dataplane = (
            config.name,
            config,
            storage,
            dataplane,
        )
        self._mlq_limits: dict[tuple[str, str], TokenBucket] = {}  # (service, lender) -> limit
        self._mlq_cache: dict[Any, Any] = {}  # the multiset and own window, masks in a build
        for kind in MESSAGES:
            router.add(kind, self._on_mlq, owner="mlq")

    def _mlq_dir(self, service: str) -> Path:
        return Path(self.config.path) / "mlq" / service

    def _mlq_conf(self, service: str) -> dict[str, Any]:
        path = self._mlq_dir(service) / "service.json"
        if not path.is_file():
            raise NotFoundError(f"this node is in no multi-lender service {service!r}")
        return dict(json.loads(path.read_text()))

    def mlq_join(
        self,
        *,
        name: str,
        lenders: list[str],
        merger: str,
        window_days: int = 30,
        dataset: str | None = None,
        date_column: str | None = None,
        rate_per_s: float = 50.0,
        on_change: str = "refuse",
        actor: str = "node",
    ) -> dict[str, Any]:
        """Join service ``name`` as a lender (with ``dataset``) or as its merger.

        ``on_change``: what a count does when a lender's window changed since the build it
        would read: ``refuse`` (the count names the lender; rebuild to go on) or ``rebuild``
        (a lender asks the merger to rebuild that window, then counts on the new build; the
        merger rebuilds on request only if it joined with ``rebuild`` too)."""
        _check_service_name(name)
        for p in [*lenders, merger]:
            check_name(p)
        lenders = sorted(set(lenders))
        if len(lenders) < 2 or merger in lenders:
            raise ConfigError(
                "a multi-lender service needs two or more lenders and a merger "
                "that is not one of them"
            )
        if self.name not in [*lenders, merger]:
            raise ConfigError(f"this node ({self.name}) is neither a lender nor the merger")
        if not 1 <= window_days <= 3650 or rate_per_s <= 0:
            raise ConfigError("window_days must be 1..3650 and rate_per_s positive")
        if on_change not in ON_CHANGE:
            raise ConfigError(f"on_change {on_change!r}: one of {', '.join(ON_CHANGE)}")
        role = "merger" if self.name == merger else "lender"
        conf: dict[str, Any] = {
            "name": name,
            "lenders": lenders,
            "merger": merger,
            "window_days": window_days,
            "role": role,
            "rate_per_s": float(rate_per_s),
            "on_change": on_change,
        }
        folder = self._mlq_dir(name)
        if role == "lender":
            ref = self.storage.dataset_refs().get(dataset or "")
            if ref is None:
                raise NotFoundError(f"a lender names its dataset: no dataset {dataset!r} here")
            if not ref.id_column or not date_column or date_column not in ref.columns:
                raise DataError(
                    f"dataset {dataset!r} needs its ID column and a date column "
                    f"(got {date_column!r})"
                )
            conf.update(dataset=dataset, id_column=ref.id_column, date_column=date_column)
            folder.mkdir(parents=True, exist_ok=True)
            key_path = folder / "key"
            if not key_path.exists():
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(mlq.new_key())
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(conf, folder / "service.json")
        self.storage.log("mlq_joined", conf, actor=actor)
        return conf

    def mlq_services(self) -> list[dict[str, Any]]:
        """The multi-lender services this node is in, with their last build (if known)."""
        root = Path(self.config.path) / "mlq"
        out = []
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if (d / "service.json").is_file():
                conf = json.loads((d / "service.json").read_text())
                if (d / "build.json").is_file():
                    conf["last_build"] = json.loads((d / "build.json").read_text())
                out.append(conf)
        return out

    def _mlq_key(self, service: str) -> bytes:
        return (self._mlq_dir(service) / "key").read_bytes()

    def _mlq_window(self, conf: dict[str, Any], end: str) -> pa.Array:
        ref = self.storage.dataset_refs().get(conf["dataset"])
        if ref is None:
            raise DataError(f"dataset {conf['dataset']!r} of {conf['name']!r} is gone")
        t = read_columns(ref, [conf["id_column"], conf["date_column"]])
        ids = t.column(conf["id_column"]).combine_chunks().cast(pa.string())
        dates = t.column(conf["date_column"]).combine_chunks()
        try:
            return mlq.window_ids(ids, dates, np.datetime64(end, "D"), conf["window_days"])
        except (pa.ArrowInvalid, ValueError) as exc:
            raise DataError(f"column {conf['date_column']!r} holds no dates: {exc}") from None

    # -- the merger's build ------------------------------------------------------------------

    async def mlq_build(
        self, service: str, end: str | None = None, actor: str = "node"
    ) -> dict[str, Any]:
        """Run the ring over every lender's window ending ``end`` (default: today, UTC)."""
        t0 = time.perf_counter()
        conf = self._mlq_conf(service)
        if conf["role"] != "merger":
            raise AuthorizationError(f"only {conf['merger']!r} builds {service!r}")
        end = end or dt.datetime.now(dt.UTC).date().isoformat()
        try:
            dt.date.fromisoformat(end)
        except ValueError:
            raise ConfigError(f"build date {end!r}: expected YYYY-MM-DD") from None
        build_id = secrets.token_hex(8)
        lenders = conf["lenders"]

        async def one(owner: str) -> tuple[bytes, str]:
            values, digest = await self._mlq_pages(
                owner, {"type": "mlq_mask", "service": service, "build": build_id, "end": end}
            )
            for hop in mlq.ring(lenders, owner):
                out = []
                for lo in range(0, len(values), PAGE * mlq.ELEMENT):
                    reply = await self.dataplane.call(
                        hop,
                        {
                            "type": "mlq_remask",
                            "service": service,
                            "build": build_id,
                            "values": b64(values[lo : lo + PAGE * mlq.ELEMENT]),
                        },
                    )
                    out.append(unb64(reply.get("values"), f"{hop}'s masked values"))
                values = b"".join(out)
            mlq.check_elements(values)
            return values, digest

        done = await asyncio.gather(*(one(o) for o in lenders))
        sets = [v for v, _ in done]
        merged = await asyncio.to_thread(mlq.Multiset.merge, sets)
        folder = self._mlq_dir(service)
        tmp = folder / f"multiset.{build_id}.npz.tmp"
        with open(tmp, "wb") as fh:
            build_tag = np.frombuffer(build_id.encode(), np.uint8)
            np.savez(fh, values=merged.values, counts=merged.counts, build=build_tag)
        meta = {
            "build": build_id,
            "end": end,
            "window_days": conf["window_days"],
            "sizes": {o: len(s) // mlq.ELEMENT for o, s in zip(lenders, sets, strict=True)},
            "windows": {o: d for o, (_, d) in zip(lenders, done, strict=True)},
            "people": len(merged.counts),
        }
        # the multiset names its build: a copy that finds the record of another is refused
        os.replace(tmp, folder / "multiset.npz")
        write_json_atomic(meta, folder / "build.json")
        self._mlq_cache.pop(service, None)
        self.storage.log(
            "mlq_built", {k: v for k, v in meta.items() if k != "windows"}, actor=actor
        )
        await asyncio.gather(
            *(
                self.dataplane.tell(
                    o, {"type": "mlq_new_build", "service": service, "build": build_id}
                )
                for o in lenders
            )
        )
        return {**meta, "seconds": round(time.perf_counter() - t0, 3)}

    async def _mlq_pages(self, peer: str, msg: dict[str, Any]) -> tuple[bytes, str]:
        out, page = [], 0
        while True:
            reply = await self.dataplane.call(peer, {**msg, "page": page})
            out.append(unb64(reply.get("values"), f"{peer}'s masked values"))
            if not reply.get("more"):
                digest = reply.get("digest")
                if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise DataError(f"{peer!r} sent no digest of its window")
                return b"".join(out), digest
            page += 1

    def _mlq_latest(self, service: str) -> dict[str, Any] | None:
        path = self._mlq_dir(service) / "build.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None

    async def _on_mlq_rebuild(
        self, peer: str, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        """A lender found a window changed since ``build``: rebuild that window (once, in
        the background), if this service was joined to rebuild on request."""
        if conf["role"] != "merger":
            raise AuthorizationError(f"ask the merger {conf['merger']!r} to rebuild")
        if conf.get("on_change", "refuse") != "rebuild":
            raise DataError(
                f"the merger of {service!r} does not rebuild on request (it joined with "
                f"on_change=refuse): ask its operator to run `rainbridge mlq build {service}`"
            )
        latest = self._mlq_latest(service)
        if latest is None or latest["build"] != msg.get("build"):
            return {"ok": True, "build": latest["build"] if latest else None, "started": False}
        key = ("rebuild", service)
        task = self._mlq_cache.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self.mlq_build(service, latest["end"], f"peer:{peer}"))
            self._mlq_cache[key] = task
        return {"ok": True, "build": latest["build"], "started": True}

    # -- requests from members ---------------------------------------------------------------

    async def _on_mlq(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        kind = msg.get("type")
        service = str(msg.get("service", ""))[:64]
        try:
            conf = self._mlq_conf(service)
            if kind in ("mlq_mask", "mlq_remask", "mlq_new_build"):
                if peer != conf["merger"] or conf["role"] != "lender":
                    raise AuthorizationError(f"{peer!r} is not the merger of {service!r}")
                if kind == "mlq_new_build":
                    # copy the new multiset before the next count; the mask is done with
                    self._mlq_cache.pop(service, None)
                    self._mlq_cache.pop(("mask", service), None)
                    await asyncio.to_thread(self._mlq_prune, service)
                    return {"ok": True}
                return await self._on_mlq_build_step(service, conf, msg)
            if peer not in conf["lenders"]:
                raise AuthorizationError(f"{peer!r} is not a lender of {service!r}")
            if kind == "mlq_sync":
                return await asyncio.to_thread(self._on_mlq_sync, peer, service, conf, msg)
            if kind == "mlq_eval":
                return await self._on_mlq_eval(peer, service, conf, msg)
            if kind == "mlq_status":
                if conf["role"] != "merger":
                    raise AuthorizationError(f"ask the merger {conf['merger']!r}")
                latest = self._mlq_latest(service)
                task = self._mlq_cache.get(("rebuild", service))
                failed = None
                if task is not None and task.done() and task.exception() is not None:
                    failed = str(task.exception())[:200]
                return {
                    "ok": True,
                    "build": latest["build"] if latest else None,
                    "building": task is not None and not task.done(),
                    "failed": failed,
                }
            if kind == "mlq_rebuild":
                return await self._on_mlq_rebuild(peer, service, conf, msg)
            raise DataError(f"unknown request {str(kind)[:40]!r}")
        except RainbridgeError as exc:
            self.storage.log(
                "mlq_refused",
                {"service": service, "request": str(kind)[:40], "reason": str(exc)[:200]},
                actor=f"peer:{peer}",
            )
            out: dict[str, Any] = {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
            if isinstance(exc, mlq.WindowChangedError):
                out.update(refusal="window_changed", lender=exc.lender, build=exc.build)
                out["end"] = exc.end
            elif isinstance(exc, mlq.StaleBuildError):
                out["refusal"] = "stale_build"
            return out

    async def _on_mlq_build_step(
        self, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        key = self._mlq_key(service)
        if msg["type"] == "mlq_remask":
            values = unb64(msg.get("values"), "masked values")
            if len(values) > PAGE * mlq.ELEMENT:
                raise DataError(f"at most {PAGE} values a message")
            return {"ok": True, "values": b64(await asyncio.to_thread(mlq.remask, key, values))}
        build, page = str(msg.get("build", ""))[:32], msg.get("page")
        if not _BUILD_ID.match(build):
            raise DataError("a build is named by 16 hexadecimal digits")
        if not isinstance(page, int) or page < 0:
            raise DataError("a page number is a non-negative integer")
        cached = self._mlq_cache.get(("mask", service))
        if cached is None or cached[0] != build:
            end = str(msg.get("end", ""))
            try:
                dt.date.fromisoformat(end)
            except ValueError:
                raise DataError(f"build date {end!r}: expected YYYY-MM-DD") from None
            window, digest = await asyncio.to_thread(self._mlq_freeze, service, conf, build, end)
            cached = (build, await asyncio.to_thread(mlq.mask_ids, key, window), digest)
            self._mlq_cache[("mask", service)] = cached
            self.storage.log(
                "mlq_window_masked",
                {"service": service, "build": build, "end": end, "ids": len(cached[1]) // 32},
            )
        values = cached[1]
        lo = page * PAGE * mlq.ELEMENT
        hi = lo + PAGE * mlq.ELEMENT
        return {
            "ok": True,
            "values": b64(values[lo:hi]),
            "more": hi < len(values),
            "digest": cached[2],
        }

    # -- a lender's frozen windows -------------------------------------------------------------

    def _mlq_windows_dir(self, service: str) -> Path:
        return self._mlq_dir(service) / "windows"

    def _mlq_stamp(self, conf: dict[str, Any]) -> tuple[Any, ...] | None:
        """What says that a lender's dataset is unchanged: its registration and its file's
        size, inode and modification times (None: always reread — no file to look at, or
        one modified so recently that a second write could leave the same times, as file
        times are coarser than nanoseconds)."""
        ref = self.storage.dataset_refs().get(conf["dataset"])
        if ref is None:
            raise DataError(f"dataset {conf['dataset']!r} of {conf['name']!r} is gone")
        try:
            st = os.stat(ref.path)
        except OSError:
            return None
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
            return None  # written just now: a later write could leave the same times
        reg = json.dumps(ref.to_dict(), sort_keys=True, default=str)
        return (reg, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def _mlq_freeze(
        self, service: str, conf: dict[str, Any], build: str, end: str
    ) -> tuple[pa.Array, str]:
        """Freeze this lender's window for ``build``: its distinct IDs and digest, kept here."""
        stamp = self._mlq_stamp(conf)
        window = self._mlq_window(conf, end)
        ids, digest = mlq.window_digest(self._mlq_key(service), window)
        folder = self._mlq_windows_dir(service)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{build}.parquet.tmp"
        pq.write_table(pa.table({"id": ids}), tmp)
        os.replace(tmp, folder / f"{build}.parquet")
        write_json_atomic(
            {"build": build, "end": end, "digest": digest, "ids": len(ids)},
            folder / f"{build}.json",
        )
        self._mlq_cache[("digest", service, end)] = (stamp, digest)
        return ids, digest

    def _mlq_frozen(self, service: str, build: Any) -> dict[str, Any] | None:
        """This lender's frozen window of ``build`` (its metadata), or None."""
        if not isinstance(build, str) or not _BUILD_ID.match(build):
            return None
        path = self._mlq_windows_dir(service) / f"{build}.json"
        if not path.is_file():
            return None
        return dict(json.loads(path.read_text()))

    def _mlq_frozen_ids(self, service: str, build: str) -> pa.Array:
        table = pq.read_table(self._mlq_windows_dir(service) / f"{build}.parquet")
        return table.column("id").combine_chunks()

    def _mlq_prune(self, service: str) -> None:
        """Keep the frozen windows of the latest builds only."""
        folder = self._mlq_windows_dir(service)
        if not folder.is_dir():
            return
        metas = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in metas[:-KEEP_WINDOWS]:
            for p in (old, old.with_suffix(".parquet")):
                p.unlink(missing_ok=True)

    def _mlq_check_window(self, service: str, conf: dict[str, Any], frozen: dict[str, Any]) -> None:
        """Refuse (:class:`~rainbridge.protocols.mlq.WindowChangedError`) when this lender's
        data for the frozen window's dates is no longer what it froze."""
        end = str(frozen["end"])
        stamp = self._mlq_stamp(conf)
        key = ("digest", service, end)
        cached = self._mlq_cache.get(key)
        if stamp is not None and cached is not None and cached[0] == stamp:
            digest = cached[1]
        else:
            _, digest = mlq.window_digest(self._mlq_key(service), self._mlq_window(conf, end))
            self._mlq_cache[key] = (stamp, digest)
        if digest != frozen["digest"]:
            raise mlq.WindowChangedError(
                f"lender {self.name!r}: its applications in the {conf['window_days']}-day "
                f"window ending {end} changed since build {frozen['build']}, so that build's "
                f"counts no longer hold; rebuild (`rainbridge mlq build {service} --end {end}` "
                f"at {conf['merger']!r}) and count again",
                lender=self.name,
                build=str(frozen["build"]),
                end=end,
            )

    def _on_mlq_sync(
        self, peer: str, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        if conf["role"] != "merger":
            raise AuthorizationError(f"ask the merger {conf['merger']!r} for the multiset")
        folder = self._mlq_dir(service)
        if not (folder / "build.json").is_file():
            raise NotFoundError(f"{service!r} has not been built yet")
        meta = json.loads((folder / "build.json").read_text())
        with np.load(folder / "multiset.npz") as z:
            values, counts = z["values"], z["counts"]
            tag = z["build"].tobytes().decode() if "build" in z.files else None
        if tag is None:
            raise DataError(
                f"{service!r} was built before builds recorded their lenders' windows: "
                f"rebuild it (`rainbridge mlq build {service}`)"
            )
        if tag != meta["build"]:
            raise DataError(f"{service!r} is being rebuilt: ask again")
        page = msg.get("page")
        if not isinstance(page, int) or page < 0:
            raise DataError("a page number is a non-negative integer")
        lo, hi = page * PAGE, (page + 1) * PAGE
        return {
            "ok": True,
            "build": meta["build"],
            "end": meta["end"],
            "window": (meta.get("windows") or {}).get(peer),
            "values": b64(values[lo:hi].tobytes()),
            "counts": b64(counts[lo:hi].astype("<i4").tobytes()),
            "more": hi < len(counts),
        }

    async def _on_mlq_eval(
        self, peer: str, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        if conf["role"] != "lender":
            raise AuthorizationError(f"{self.name!r} holds no key of {service!r}")
        limit = self._mlq_limits.setdefault(
            (service, peer), TokenBucket(conf["rate_per_s"], 2 * conf["rate_per_s"])
        )
        wait = limit.take()
        if wait > 0:
            raise RateLimitError(
                f"{peer!r} is over {conf['rate_per_s']:g} counts/s on "
                f"{service!r}: retry in {wait:.2f} s"
            )
        element = unb64(msg.get("element"), "a count's element")
        if len(element) != mlq.ELEMENT:
            raise DataError("a count carries one 32-byte element")
        frozen = self._mlq_frozen(service, msg.get("build"))
        if frozen is None:
            raise mlq.StaleBuildError(
                f"lender {self.name!r} keeps no window of build {str(msg.get('build'))[:20]!r} "
                f"of {service!r} (it took no part in it, or no longer keeps it): copy the "
                f"latest build and ask again, or rebuild (`rainbridge mlq build {service}` at "
                f"{conf['merger']!r})"
            )
        await asyncio.to_thread(self._mlq_check_window, service, conf, frozen)
        out = await asyncio.to_thread(mlq.remask, self._mlq_key(service), element)
        with self.storage.session() as s:
            s.add(
                MeterRow(
                    job_id=f"mlq:{service}",
                    peer=peer,
                    grant_id=None,
                    component=service,
                    component_type="mlq",
                    status="succeeded",
                    calls=1,
                    rows=1,
                    bytes=len(out),
                    cpu_seconds=round(time.perf_counter() - t0, 6),
                )
            )
        self.storage.log("mlq_evaluated", {"service": service}, actor=f"peer:{peer}")
        return {"ok": True, "element": b64(out)}

    # -- a lender's count --------------------------------------------------------------------

    async def _mlq_call(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A request to a member; a refusal becomes the typed error it names."""
        return await self.dataplane.call(peer, msg, _REFUSALS)

    async def _mlq_multiset(self, service: str, conf: dict[str, Any]) -> Any:
        """The latest build's multiset (copied from the merger once per build) and this
        lender's frozen window of that build."""
        cached = self._mlq_cache.get(service)
        if cached is not None:
            return cached
        values, counts, page = [], [], 0
        build = end = window = None
        while True:
            r = await self._mlq_call(
                conf["merger"], {"type": "mlq_sync", "service": service, "page": page}
            )
            if build is not None and r.get("build") != build:
                raise DataError(f"{service!r} was rebuilt during the copy: ask again")
            build, end, window = r.get("build"), r.get("end"), r.get("window")
            values.append(unb64(r.get("values"), "the multiset"))
            counts.append(unb64(r.get("counts"), "the multiset"))
            if not r.get("more"):
                break
            page += 1
        v = np.frombuffer(b"".join(values), np.uint8)
        c = np.frombuffer(b"".join(counts), "<i4")
        if len(v) != len(c) * mlq.ELEMENT or (len(c) and c.min() < 1):
            raise DataError(f"{conf['merger']!r} sent a malformed multiset")
        m = mlq.Multiset(v.reshape(-1, mlq.ELEMENT), c.astype(np.int32))
        keys = m.values.view(f"V{mlq.ELEMENT}").reshape(-1)
        if len(keys) > 1 and not (
            np.array_equal(np.sort(keys), keys) and len(np.unique(keys)) == len(keys)
        ):
            raise DataError(f"{conf['merger']!r} sent an unsorted multiset")
        frozen = self._mlq_frozen(service, build)
        if frozen is None or frozen.get("digest") != window:
            raise mlq.WindowChangedError(
                f"lender {self.name!r} holds no frozen window that build {build} of "
                f"{service!r} recorded for it (its copy of that window was lost or is "
                f"another), so its own presence cannot be subtracted exactly; rebuild "
                f"(`rainbridge mlq build {service}` at {conf['merger']!r}) and count again",
                lender=self.name,
                build=str(build),
                end=str(end),
            )
        own = await asyncio.to_thread(self._mlq_frozen_ids, service, str(build))
        entry = (m, set(own.to_pylist()), build, end, frozen)
        self._mlq_cache[service] = entry
        return entry

    async def mlq_count(self, service: str, ident: str, actor: str = "node") -> dict[str, Any]:
        """In how many other lenders' windows ``ident`` appears (this node learns only that),
        exactly as of the latest build; refused (or, as configured, rebuilt first) when a
        lender's window changed since that build."""
        conf = self._mlq_conf(service)
        if conf["role"] != "lender":
            raise AuthorizationError(f"only lenders of {service!r} count")
        if not ident or len(ident.encode()) > 256:
            raise DataError("an ID is 1 to 256 bytes")
        rebuilt = stale = False
        while True:
            try:
                return await self._mlq_count_once(service, conf, ident, actor)
            except mlq.StaleBuildError:
                self._mlq_cache.pop(service, None)
                if stale:
                    raise
                stale = True
            except mlq.WindowChangedError as exc:
                self._mlq_cache.pop(service, None)
                if conf.get("on_change", "refuse") != "rebuild" or rebuilt:
                    raise
                await self._mlq_rebuild(service, conf, exc)
                rebuilt = True

    async def _mlq_rebuild(
        self, service: str, conf: dict[str, Any], exc: mlq.WindowChangedError
    ) -> None:
        """Ask the merger to rebuild the changed window; wait until the new build is out."""
        merger = conf["merger"]
        r = await self._mlq_call(
            merger, {"type": "mlq_rebuild", "service": service, "build": exc.build}
        )
        if not r.get("started") and r.get("build") == exc.build:
            raise exc
        deadline = time.monotonic() + max(self.config.timeout, 30.0)
        while True:
            st = await self._mlq_call(merger, {"type": "mlq_status", "service": service})
            if not st.get("building"):
                if st.get("build") != exc.build:
                    return  # a build after the changed one is out
                raise DataError(
                    f"{merger!r} did not rebuild {service!r}: {st.get('failed') or 'no reason'}"
                )
            if time.monotonic() > deadline:
                raise DataError(f"{merger!r} is still rebuilding {service!r}: count again later")
            await asyncio.sleep(0.1)

    async def _mlq_count_once(
        self, service: str, conf: dict[str, Any], ident: str, actor: str
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        m, own, build, end, frozen = await self._mlq_multiset(service, conf)
        await asyncio.to_thread(self._mlq_check_window, service, conf, frozen)
        q = mlq.start_query(ident)
        v = q.element
        others = mlq.ring(conf["lenders"], self.name)
        for lender in others:
            reply = await self._mlq_call(
                lender,
                {"type": "mlq_eval", "service": service, "element": b64(v), "build": build},
            )
            v = unb64(reply.get("element"), f"{lender}'s answer")
            mlq.check_elements(v)
            if len(v) != mlq.ELEMENT:
                raise DataError(f"{lender!r} answered with {len(v)} bytes")
        v = mlq.remask(self._mlq_key(service), v)
        total = m.count(mlq.finish_query(q, v))
        mine = int(ident in own)
        if total < mine:
            raise DataError(
                f"build {build} of {service!r} does not hold this lender's own application: "
                "the multiset and the frozen window disagree; rebuild"
            )
        count = total - mine
        self.storage.log(
            "mlq_counted",
            {
                "service": service,
                "build": build,
                "id_sha256": hashlib.sha256(ident.encode()).hexdigest(),
            },
            actor=actor,
        )
        return {
            "service": service,
            "id": ident,
            "count": count,
            "lenders_asked": others,
            "window_end": end,
            "window_days": conf["window_days"],
            "build": build,
            "milliseconds": round((time.perf_counter() - t0) * 1000, 2),
        }
