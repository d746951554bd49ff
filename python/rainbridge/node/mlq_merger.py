"""The merger's part in the multi-lender count: building the merged multiset and serving it.

``build`` asks each lender for its masked window (the last ``window_days`` days up to the
build's date; the lender freezes it and answers with its digest), sends it around the ring
of the other lenders to be masked by each, merges the results into one multiset of masked
IDs with their counts, records the build (its lenders' window digests included) and tells
every lender. Lenders copy the multiset in pages (``mlq_sync``), ask whether a build is
under way (``mlq_status``), and, for a service joined with ``on_change="rebuild"``, ask for
a window that changed to be built again (``mlq_rebuild``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import secrets
import time
from typing import Any

import numpy as np

from rainbridge.data import write_json_atomic
from rainbridge.errors import AuthorizationError, ConfigError, DataError, NotFoundError
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.mlq_files import PAGE, MlqFiles
from rainbridge.node.storage import Storage
from rainbridge.protocols import mlq
from rainbridge.protocols.pir.wire import b64, unb64


class MlqMerger:
    """The builds of the services this node merges; owns the rebuilds under way (one per
    service), started at a lender's request.

    Parameters
    ----------
    storage : Storage
        The ledger builds are recorded in.
    dataplane : DataPlane
        How the lenders are asked and told.
    files : MlqFiles
        The services' folders, where the multiset and the build's record are kept.
    """

    def __init__(self, storage: Storage, dataplane: DataPlane, files: MlqFiles) -> None:
        self.storage = storage
        self.dataplane = dataplane
        self.files = files
        self._rebuilds: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def build(
        self, service: str, end: str | None = None, actor: str = "node"
    ) -> dict[str, Any]:
        """Run the ring over every lender's window ending ``end`` (default: today, UTC)."""
        t0 = time.perf_counter()
        conf = self.files.conf(service)
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
            values, digest = await self._pages(
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
        folder = self.files.folder(service)
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

    async def _pages(self, peer: str, msg: dict[str, Any]) -> tuple[bytes, str]:
        """A lender's masked window, page by page, and the digest of its frozen window."""
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

    # -- lenders' requests -------------------------------------------------------------------

    async def on_rebuild(
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
        latest = self.files.latest(service)
        if latest is None or latest["build"] != msg.get("build"):
            return {"ok": True, "build": latest["build"] if latest else None, "started": False}
        task = self._rebuilds.get(service)
        if task is None or task.done():
            task = asyncio.create_task(self.build(service, latest["end"], f"peer:{peer}"))
            self._rebuilds[service] = task
        return {"ok": True, "build": latest["build"], "started": True}

    def on_status(self, service: str, conf: dict[str, Any]) -> dict[str, Any]:
        """The latest build, and whether a rebuild is under way or failed."""
        if conf["role"] != "merger":
            raise AuthorizationError(f"ask the merger {conf['merger']!r}")
        latest = self.files.latest(service)
        task = self._rebuilds.get(service)
        failed = None
        if task is not None and task.done() and task.exception() is not None:
            failed = str(task.exception())[:200]
        return {
            "ok": True,
            "build": latest["build"] if latest else None,
            "building": task is not None and not task.done(),
            "failed": failed,
        }

    def on_sync(
        self, peer: str, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        """A page of the latest build's multiset, with the window it recorded for ``peer``."""
        if conf["role"] != "merger":
            raise AuthorizationError(f"ask the merger {conf['merger']!r} for the multiset")
        folder = self.files.folder(service)
        meta = self.files.latest(service)
        if meta is None:
            raise NotFoundError(f"{service!r} has not been built yet")
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
