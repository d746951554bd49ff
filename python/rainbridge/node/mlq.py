"""The consortium multi-lender query at a node (:mod:`rainbridge.protocols.mlq`).

A member joins a service with its role: a *lender* names its dataset of applications (ID
and date columns) and gets a fresh secret key; the *merger* holds no data. ``build`` at the
merger runs the ring over the lenders' windows (the last ``window_days`` days up to the
build's date) and publishes the merged multiset; it tells each lender, which copies it
before its next count. ``count`` at a lender sends the blinded ID to every other lender in
turn and reads the count from the multiset, minus its own presence.

Every request is accepted only from the member the role requires (``mlq_mask`` and
``mlq_remask`` from the merger, ``mlq_eval`` and ``mlq_sync`` from lenders); evaluations are
rate-limited per asking lender, metered (``component_type: mlq``) and ledgered without the
ID (the answering lender never sees it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

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
from rainbridge.node.storage import MeterRow, Storage
from rainbridge.protocols import mlq
from rainbridge.protocols.pir.wire import b64, unb64

#: elements per build message (32 bytes each; base64 and JSON stay under the control limit)
PAGE = 32_768


class MlqOps:
    """The multi-lender part of :class:`~rainbridge.node.service.NodeService`."""

    name: str
    config: NodeConfig
    storage: Storage
    dataplane: DataPlane
    _mlq_limits: dict[tuple[str, str], TokenBucket]
    _mlq_cache: dict[Any, Any]

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
        actor: str = "node",
    ) -> dict[str, Any]:
        """Join service ``name`` as a lender (with ``dataset``) or as its merger."""
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
        role = "merger" if self.name == merger else "lender"
        conf: dict[str, Any] = {
            "name": name,
            "lenders": lenders,
            "merger": merger,
            "window_days": window_days,
            "role": role,
            "rate_per_s": float(rate_per_s),
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

        async def one(owner: str) -> bytes:
            values = await self._mlq_pages(
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
            return values

        sets = await asyncio.gather(*(one(o) for o in lenders))
        merged = await asyncio.to_thread(mlq.Multiset.merge, list(sets))
        folder = self._mlq_dir(service)
        np.savez(folder / "multiset.npz", values=merged.values, counts=merged.counts)
        meta = {
            "build": build_id,
            "end": end,
            "window_days": conf["window_days"],
            "sizes": {o: len(s) // mlq.ELEMENT for o, s in zip(lenders, sets, strict=True)},
            "people": len(merged.counts),
        }
        write_json_atomic(meta, folder / "build.json")
        self._mlq_cache.pop(service, None)
        self.storage.log("mlq_built", meta, actor=actor)
        await asyncio.gather(
            *(
                self.dataplane.tell(
                    o, {"type": "mlq_new_build", "service": service, "build": build_id}
                )
                for o in lenders
            )
        )
        return {**meta, "seconds": round(time.perf_counter() - t0, 3)}

    async def _mlq_pages(self, peer: str, msg: dict[str, Any]) -> bytes:
        out, page = [], 0
        while True:
            reply = await self.dataplane.call(peer, {**msg, "page": page})
            out.append(unb64(reply.get("values"), f"{peer}'s masked values"))
            if not reply.get("more"):
                return b"".join(out)
            page += 1

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
                    return {"ok": True}
                return await self._on_mlq_build_step(service, conf, msg)
            if peer not in conf["lenders"]:
                raise AuthorizationError(f"{peer!r} is not a lender of {service!r}")
            if kind == "mlq_sync":
                return await asyncio.to_thread(self._on_mlq_sync, service, conf, msg)
            if kind == "mlq_eval":
                return await self._on_mlq_eval(peer, service, conf, msg)
            raise DataError(f"unknown request {str(kind)[:40]!r}")
        except RainbridgeError as exc:
            self.storage.log(
                "mlq_refused",
                {"service": service, "request": str(kind)[:40], "reason": str(exc)[:200]},
                actor=f"peer:{peer}",
            )
            return {"ok": False, "code": exc.code, "reason": str(exc)[:300]}

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
        if not isinstance(page, int) or page < 0:
            raise DataError("a page number is a non-negative integer")
        cached = self._mlq_cache.get(("mask", service))
        if cached is None or cached[0] != build:
            end = str(msg.get("end", ""))
            try:
                dt.date.fromisoformat(end)
            except ValueError:
                raise DataError(f"build date {end!r}: expected YYYY-MM-DD") from None
            window = await asyncio.to_thread(self._mlq_window, conf, end)
            cached = (build, await asyncio.to_thread(mlq.mask_ids, key, window))
            self._mlq_cache[("mask", service)] = cached
            self.storage.log(
                "mlq_window_masked",
                {"service": service, "build": build, "end": end, "ids": len(cached[1]) // 32},
            )
        values = cached[1]
        lo = page * PAGE * mlq.ELEMENT
        hi = lo + PAGE * mlq.ELEMENT
        return {"ok": True, "values": b64(values[lo:hi]), "more": hi < len(values)}

    def _on_mlq_sync(
        self, service: str, conf: dict[str, Any], msg: dict[str, Any]
    ) -> dict[str, Any]:
        if conf["role"] != "merger":
            raise AuthorizationError(f"ask the merger {conf['merger']!r} for the multiset")
        folder = self._mlq_dir(service)
        if not (folder / "build.json").is_file():
            raise NotFoundError(f"{service!r} has not been built yet")
        meta = json.loads((folder / "build.json").read_text())
        with np.load(folder / "multiset.npz") as z:
            values, counts = z["values"], z["counts"]
        page = msg.get("page")
        if not isinstance(page, int) or page < 0:
            raise DataError("a page number is a non-negative integer")
        lo, hi = page * PAGE, (page + 1) * PAGE
        return {
            "ok": True,
            "build": meta["build"],
            "end": meta["end"],
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

    async def _mlq_multiset(self, service: str, conf: dict[str, Any]) -> Any:
        cached = self._mlq_cache.get(service)
        if cached is not None:
            return cached
        values, counts, page = [], [], 0
        build = end = None
        while True:
            r = await self.dataplane.call(
                conf["merger"], {"type": "mlq_sync", "service": service, "page": page}
            )
            if build is not None and r.get("build") != build:
                raise DataError(f"{service!r} was rebuilt during the copy: ask again")
            build, end = r.get("build"), r.get("end")
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
        own = set(self._mlq_window(conf, str(end)).to_pylist())
        self._mlq_cache[service] = (m, own, build, end)
        return self._mlq_cache[service]

    async def mlq_count(self, service: str, ident: str, actor: str = "node") -> dict[str, Any]:
        """In how many other lenders' windows ``ident`` appears (this node learns only that)."""
        t0 = time.perf_counter()
        conf = self._mlq_conf(service)
        if conf["role"] != "lender":
            raise AuthorizationError(f"only lenders of {service!r} count")
        if not ident or len(ident.encode()) > 256:
            raise DataError("an ID is 1 to 256 bytes")
        m, own, build, end = await self._mlq_multiset(service, conf)
        q = mlq.start_query(ident)
        v = q.element
        others = mlq.ring(conf["lenders"], self.name)
        for lender in others:
            reply = await self.dataplane.call(
                lender, {"type": "mlq_eval", "service": service, "element": b64(v)}
            )
            v = unb64(reply.get("element"), f"{lender}'s answer")
            mlq.check_elements(v)
            if len(v) != mlq.ELEMENT:
                raise DataError(f"{lender!r} answered with {len(v)} bytes")
        v = mlq.remask(self._mlq_key(service), v)
        total = m.count(mlq.finish_query(q, v))
        mine = int(ident in own)
        count = max(0, total - mine)
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
