"""A lender's part in the multi-lender count: its window in a build, its answers to the
other lenders' counts, and its own counts.

In a build the merger asks the lender to mask its window (``mlq_mask``, frozen first, see
:mod:`rainbridge.node.mlq_windows`) and to mask other lenders' windows again
(``mlq_remask``). Another lender's count asks it to mask one blinded element
(``mlq_eval``): rate-limited per asking lender, metered (``component_type: mlq``) and
ledgered without the ID (the answering lender never sees it), and refused when the lender's
window of the count's build changed since it was frozen or is no longer kept.

``count`` sends the blinded ID to every other lender in turn and reads the count from the
latest build's multiset (copied from the merger once per build), minus this lender's own
presence in its window as frozen at that build.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from typing import Any

import numpy as np

from rainbridge.errors import AuthorizationError, DataError
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.limits import RateLimits
from rainbridge.node.mlq_files import BUILD_ID, PAGE, MlqFiles
from rainbridge.node.mlq_windows import FrozenWindows
from rainbridge.node.storage import MeterRow, Storage
from rainbridge.protocols import mlq
from rainbridge.protocols.pir.wire import b64, unb64


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

#: a lender's copy of a build: the multiset, its own frozen IDs, build, end, frozen window
Copy = tuple[mlq.Multiset, set[Any], Any, Any, dict[str, Any]]


class MlqLender:
    """This node as a lender of multi-lender services; owns the rate limits of the other
    lenders' counts, its masked window while a build is under way and its copy of each
    service's latest multiset.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration (its name, and the timeout a rebuild is waited for).
    storage : Storage
        Metering and ledger.
    dataplane : DataPlane
        How the merger and the other lenders are asked.
    files : MlqFiles
        The services' folders and keys.
    windows : FrozenWindows
        This lender's frozen windows.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        dataplane: DataPlane,
        files: MlqFiles,
        windows: FrozenWindows,
    ) -> None:
        self.name = config.name
        self.timeout = config.timeout
        self.storage = storage
        self.dataplane = dataplane
        self.files = files
        self.windows = windows
        self._limits = RateLimits("counts")
        self._masks: dict[str, tuple[str, bytes, str]] = {}  # service -> (build, masked, digest)
        self._copies: dict[str, Copy] = {}  # service -> the latest build, as copied

    # -- the merger's requests ---------------------------------------------------------------

    async def on_new_build(self, service: str) -> dict[str, Any]:
        """A build is out: copy its multiset before the next count; the mask is done with."""
        self._copies.pop(service, None)
        self._masks.pop(service, None)
        await asyncio.to_thread(self.windows.prune, service)
        return {"ok": True}

    async def on_build_step(
        self, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        """A page of this lender's masked window (``mlq_mask``), or a page of another
        lender's masked again (``mlq_remask``)."""
        key = self.files.key(service)
        if msg["type"] == "mlq_remask":
            values = unb64(msg.get("values"), "masked values")
            if len(values) > PAGE * mlq.ELEMENT:
                raise DataError(f"at most {PAGE} values a message")
            return {"ok": True, "values": b64(await asyncio.to_thread(mlq.remask, key, values))}
        build, page = str(msg.get("build", ""))[:32], msg.get("page")
        if not BUILD_ID.match(build):
            raise DataError("a build is named by 16 hexadecimal digits")
        if not isinstance(page, int) or page < 0:
            raise DataError("a page number is a non-negative integer")
        cached = self._masks.get(service)
        if cached is None or cached[0] != build:
            end = str(msg.get("end", ""))
            try:
                dt.date.fromisoformat(end)
            except ValueError:
                raise DataError(f"build date {end!r}: expected YYYY-MM-DD") from None
            window, digest = await asyncio.to_thread(self.windows.freeze, service, conf, build, end)
            cached = (build, await asyncio.to_thread(mlq.mask_ids, key, window), digest)
            self._masks[service] = cached
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

    # -- other lenders' counts ---------------------------------------------------------------

    async def on_eval(
        self, peer: str, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        """Mask one blinded element of ``peer``'s count on the build it names."""
        t0 = time.perf_counter()
        if conf["role"] != "lender":
            raise AuthorizationError(f"{self.name!r} holds no key of {service!r}")
        self._limits.take(service, peer, conf["rate_per_s"], 2 * conf["rate_per_s"])
        element = unb64(msg.get("element"), "a count's element")
        if len(element) != mlq.ELEMENT:
            raise DataError("a count carries one 32-byte element")
        frozen = self.windows.frozen(service, msg.get("build"))
        if frozen is None:
            raise mlq.StaleBuildError(
                f"lender {self.name!r} keeps no window of build {str(msg.get('build'))[:20]!r} "
                f"of {service!r} (it took no part in it, or no longer keeps it): copy the "
                f"latest build and ask again, or rebuild (`rainbridge mlq build {service}` at "
                f"{conf['merger']!r})"
            )
        await asyncio.to_thread(self.windows.check, service, conf, frozen)
        out = await asyncio.to_thread(mlq.remask, self.files.key(service), element)
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

    # -- this lender's count -----------------------------------------------------------------

    async def _call(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A request to a member; a refusal becomes the typed error it names."""
        return await self.dataplane.call(peer, msg, _REFUSALS)

    async def _copy(self, service: str, conf: dict[str, Any]) -> Copy:
        """The latest build's multiset (copied from the merger once per build) and this
        lender's frozen window of that build."""
        cached = self._copies.get(service)
        if cached is not None:
            return cached
        values, counts, page = [], [], 0
        build = end = window = None
        while True:
            r = await self._call(
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
        frozen = self.windows.frozen(service, build)
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
        own = await asyncio.to_thread(self.windows.frozen_ids, service, str(build))
        entry: Copy = (m, set(own.to_pylist()), build, end, frozen)
        self._copies[service] = entry
        return entry

    async def count(self, service: str, ident: str, actor: str = "node") -> dict[str, Any]:
        """In how many other lenders' windows ``ident`` appears (this node learns only that),
        exactly as of the latest build; refused (or, as configured, rebuilt first) when a
        lender's window changed since that build."""
        conf = self.files.conf(service)
        if conf["role"] != "lender":
            raise AuthorizationError(f"only lenders of {service!r} count")
        if not ident or len(ident.encode()) > 256:
            raise DataError("an ID is 1 to 256 bytes")
        rebuilt = stale = False
        while True:
            try:
                return await self._count_once(service, conf, ident, actor)
            except mlq.StaleBuildError:
                self._copies.pop(service, None)
                if stale:
                    raise
                stale = True
            except mlq.WindowChangedError as exc:
                self._copies.pop(service, None)
                if conf.get("on_change", "refuse") != "rebuild" or rebuilt:
                    raise
                await self._rebuild(service, conf, exc)
                rebuilt = True

    async def _rebuild(
        self, service: str, conf: dict[str, Any], exc: mlq.WindowChangedError
    ) -> None:
        """Ask the merger to rebuild the changed window; wait until the new build is out."""
        merger = conf["merger"]
        r = await self._call(
            merger, {"type": "mlq_rebuild", "service": service, "build": exc.build}
        )
        if not r.get("started") and r.get("build") == exc.build:
            raise exc
        deadline = time.monotonic() + max(self.timeout, 30.0)
        while True:
            st = await self._call(merger, {"type": "mlq_status", "service": service})
            if not st.get("building"):
                if st.get("build") != exc.build:
                    return  # a build after the changed one is out
                raise DataError(
                    f"{merger!r} did not rebuild {service!r}: {st.get('failed') or 'no reason'}"
                )
            if time.monotonic() > deadline:
                raise DataError(f"{merger!r} is still rebuilding {service!r}: count again later")
            await asyncio.sleep(0.1)

    async def _count_once(
        self, service: str, conf: dict[str, Any], ident: str, actor: str
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        m, own, build, end, frozen = await self._copy(service, conf)
        await asyncio.to_thread(self.windows.check, service, conf, frozen)
        q = mlq.start_query(ident)
        v = q.element
        others = mlq.ring(conf["lenders"], self.name)
        for lender in others:
            reply = await self._call(
                lender,
                {"type": "mlq_eval", "service": service, "element": b64(v), "build": build},
            )
            v = unb64(reply.get("element"), f"{lender}'s answer")
            mlq.check_elements(v)
            if len(v) != mlq.ELEMENT:
                raise DataError(f"{lender!r} answered with {len(v)} bytes")
        v = mlq.remask(self.files.key(service), v)
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
