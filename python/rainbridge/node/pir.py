"""PIR services at a node (匿踪查询): publishing a sealed table, answering peers' queries
under grants, rate limits and metering; and, at a client node, querying a peer's service.

Server: ``publish_pir`` seals a registered dataset's label columns under a fresh OPRF key
(:mod:`rainbridge.protocols.pir.table`) into ``DIR/pir/<service>/``; ``update_pir`` adds,
changes and deletes rows as a new version. A peer's ``pir_query`` is answered only if a
grant lets that peer use the dataset for ``pir`` with the ID and label columns (its
``max_calls`` counts queries, ``max_rows`` IDs), within the service's rate limit for that
peer (a token bucket); each answer is metered (``component_type: pir``) and ledgered with
the number of IDs, never anything about them (the server does not know them). A
``pir_sync`` copies the sealed table or its deltas under the same grant.

Client: ``pir_query`` blinds the IDs, asks the peer, and opens the answers from its replica
(``DIR/pir-replicas/<peer>/<service>/``, synced first when missing or behind) or, in bucket
mode, from the rows returned. Its own ledger records each query with the IDs hashed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge.data import read_columns, read_ids, write_json_atomic
from rainbridge.errors import (
    ConfigError,
    DataError,
    NotFoundError,
    RainbridgeError,
    RateLimitError,
)
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.grants import use_grant
from rainbridge.node.storage import GrantRow, MeterRow, Storage
from rainbridge.protocols.pir import wire
from rainbridge.protocols.pir.client import Replica
from rainbridge.protocols.pir.table import PirTable

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
PURPOSE = "pir"


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a query takes one."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is free."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def _check_service_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"PIR service name {name!r}: letters, digits, '_.-', at most 64")


class PirOps:
    """The PIR part of :class:`~rainbridge.node.service.NodeService`."""

    name: str
    config: NodeConfig
    storage: Storage
    dataplane: DataPlane
    _pir: dict[str, tuple[dict[str, Any], PirTable]]
    _pir_limits: dict[tuple[str, str], TokenBucket]
    _replicas: dict[tuple[str, str], Replica]

    # -- server ----------------------------------------------------------------------------

    def _pir_dir(self, service: str) -> Path:
        return Path(self.config.path) / "pir" / service

    def publish_pir(
        self,
        *,
        name: str,
        dataset: str,
        labels: list[str],
        modes: list[str] | None = None,
        k: int = 256,
        rate_per_s: float = 50.0,
        burst: int = 100,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Seal ``dataset``'s ``labels`` by its ID column as service ``name`` (replacing any
        earlier table of that name: a new key, so replicas copy it again)."""
        _check_service_name(name)
        modes = list(modes or wire.MODES)
        if not modes or any(m not in wire.MODES for m in modes):
            raise ConfigError(f"PIR modes: some of {', '.join(wire.MODES)}")
        if not 1 <= k <= 1 << 20 or rate_per_s <= 0 or burst < 1:
            raise ConfigError("PIR k must be 1..2^20, rate_per_s positive and burst at least 1")
        ref = self.storage.dataset_refs().get(dataset)
        if ref is None:
            raise NotFoundError(f"no dataset {dataset!r} at this node")
        if not ref.id_column:
            raise DataError(f"dataset {dataset!r} has no ID column to key the service by")
        ids = read_ids(ref, ref.id_column)
        table = PirTable.build(ids, read_columns(ref, labels), k=k)
        meta = {
            "name": name,
            "dataset": dataset,
            "id_column": ref.id_column,
            "labels": list(labels),
            "modes": modes,
            "k": k,
            "rate_per_s": float(rate_per_s),
            "burst": int(burst),
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        folder = self._pir_dir(name)
        table.save(folder)
        write_json_atomic(meta, folder / "service.json")
        self._pir[name] = (meta, table)
        self.storage.log("pir_published", {**meta, **_public(table)}, actor=actor)
        return {**meta, **table.describe()}

    def _pir_service(self, name: str) -> tuple[dict[str, Any], PirTable]:
        if name in self._pir:
            return self._pir[name]
        folder = self._pir_dir(name)
        if not _NAME.match(name) or not (folder / "service.json").is_file():
            raise NotFoundError(f"no PIR service {name!r} at this node")
        meta = json.loads((folder / "service.json").read_text())
        self._pir[name] = (meta, PirTable.load(folder))
        return self._pir[name]

    def pir_services(self) -> list[dict[str, Any]]:
        root = Path(self.config.path) / "pir"
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        out = []
        for n in names:
            meta, table = self._pir_service(n)
            out.append({**meta, **table.describe()})
        return out

    def update_pir(
        self,
        name: str,
        upsert: list[dict[str, Any]],
        delete: list[str],
        actor: str = "node",
    ) -> dict[str, Any]:
        """A new version of service ``name``: rows upserted (``{id_column: ..., labels...}``)
        and IDs deleted. Replicas catch up by this delta."""
        meta, table = self._pir_service(name)
        idc, labels = meta["id_column"], meta["labels"]
        bad = [r for r in upsert if not isinstance(r, dict) or not isinstance(r.get(idc), str)]
        if bad:
            raise DataError(f"every upserted row needs its ID as text in {idc!r}")
        missing = sorted({c for r in upsert for c in labels if c not in r})
        if missing:
            raise DataError(f"upserted rows lack label column(s) {', '.join(missing)}")
        if not all(isinstance(x, str) for x in delete):
            raise DataError("deleted IDs are text")
        schema = pa.schema([f for f in _label_schema(table)])
        try:
            rows = pa.Table.from_pylist([{c: r.get(c) for c in labels} for r in upsert], schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"upserted labels do not fit the service's columns: {exc}") from None
        delta = table.update(
            pa.array([r[idc] for r in upsert], pa.string()), rows, pa.array(delete, pa.string())
        )
        table.save(self._pir_dir(name))
        detail = {
            "service": name,
            "version": delta.version,
            "upserted": len(upsert),
            "deleted": len(delete),
            "removed_rows": len(delta.removed),
        }
        self.storage.log("pir_updated", detail, actor=actor)
        return {**detail, **table.describe()}

    def _pir_grant(self, meta: dict[str, Any], peer: str, rows: int) -> GrantRow:
        """The grant that lets ``peer`` query (``rows`` IDs, counted when > 0); else refused."""
        return use_grant(
            self.storage,
            dataset=meta["dataset"],
            peer=peer,
            component_type=PURPOSE,
            columns=[meta["id_column"], *meta["labels"]],
            receivers=[peer],
            rows=rows,
            what=f"query PIR service {meta['name']!r}",
            count=rows > 0,
        )

    async def _on_pir_query(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._pir_service(service)
            limit = self._pir_limits.setdefault(
                (service, peer), TokenBucket(meta["rate_per_s"], meta["burst"])
            )
            wait = limit.take()
            if wait > 0:
                raise RateLimitError(
                    f"{peer!r} is over {meta['rate_per_s']:g} queries/s on {service!r}: "
                    f"retry in {wait:.2f} s"
                )
            n = len(wire.unb64(msg.get("elements"), "PIR query")) // 32
            grant = self._pir_grant(meta, peer, max(1, n))
            reply = await asyncio.to_thread(wire.answer_query, table, msg, tuple(meta["modes"]))
        except RainbridgeError as exc:
            self.storage.log(
                "pir_refused", {"service": service, "reason": str(exc)[:200]}, actor=f"peer:{peer}"
            )
            return {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
        size = len(json.dumps(reply))
        with self.storage.session() as s:
            s.add(
                MeterRow(
                    job_id=f"pir:{service}",
                    peer=peer,
                    grant_id=grant.id,
                    component=service,
                    component_type=PURPOSE,
                    status="succeeded",
                    calls=1,
                    rows=n,
                    bytes=size,
                    cpu_seconds=round(time.perf_counter() - t0, 6),
                )
            )
        self.storage.log(
            "pir_answered",
            {"service": service, "ids": n, "mode": msg.get("mode"), "grant": grant.id},
            actor=f"peer:{peer}",
        )
        return reply

    def _on_pir_sync(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._pir_service(service)
            if "private" not in meta["modes"]:
                raise DataError(f"PIR service {service!r} is not served in private mode")
            self._pir_grant(meta, peer, 0)
            reply = wire.sync_page(table, msg)
        except RainbridgeError as exc:
            return {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
        snap = reply.get("snapshot")
        if snap is None or snap["offset"] == 0:
            kind = "deltas" if snap is None else "copy"
            self.storage.log(
                "pir_synced",
                {"service": service, "kind": kind, "version": table.version},
                actor=f"peer:{peer}",
            )
        return reply

    # -- client ----------------------------------------------------------------------------

    def _replica_dir(self, peer: str, service: str) -> Path:
        return Path(self.config.path) / "pir-replicas" / peer / service

    def _replica(self, peer: str, service: str) -> Replica | None:
        key = (peer, service)
        if key in self._replicas:
            return self._replicas[key]
        folder = self._replica_dir(peer, service)
        if not (folder / "replica.json").is_file():
            return None
        try:
            meta = json.loads((folder / "replica.json").read_text())
            with np.load(folder / "rows.npz") as z:
                arrays = {k: z[k].tobytes() for k in ("tags", "versions", "buckets", "sealed")}
        except (OSError, ValueError, KeyError):
            return None  # a damaged copy is copied again
        rep = Replica.from_parts(meta, arrays, f"replica of {peer}/{service}")
        self._replicas[key] = rep
        return rep

    def _save_replica(self, peer: str, service: str, rep: Replica) -> None:
        folder = self._replica_dir(peer, service)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "rows.npz.tmp"
        arrays = rep.to_arrays()
        with open(tmp, "wb") as f:
            np.savez(
                f,
                tags=arrays["tags"],
                versions=arrays["versions"],
                buckets=arrays["buckets"],
                sealed=arrays["sealed"],
            )
        tmp.replace(folder / "rows.npz")
        write_json_atomic(rep.meta(), folder / "replica.json")

    async def pir_sync(self, peer: str, service: str, actor: str = "node") -> dict[str, Any]:
        """Bring this node's replica of ``peer``'s ``service`` up to date."""
        t0 = time.perf_counter()
        rep = self._replica(peer, service)
        have = {"key_id": rep.key_id, "version": rep.version} if rep else None
        req: dict[str, Any] = {
            "type": "pir_sync",
            "service": service,
            "have": have,
            "snapshot": None,
        }
        pages = 0
        while True:
            reply = await self.dataplane.call(peer, req)
            rep, nxt = await asyncio.to_thread(wire.apply_sync, rep, reply, peer)
            pages += 1
            if nxt is None:
                break
            req = {**req, "have": None, "snapshot": nxt}
        assert rep is not None
        self._replicas[(peer, service)] = rep
        await asyncio.to_thread(self._save_replica, peer, service, rep)
        out = {
            "peer": peer,
            "service": service,
            **rep.meta(),
            "messages": pages,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        self.storage.log(
            "pir_replica_synced", {k: out[k] for k in out if k != "layout"}, actor=actor
        )
        return out

    async def pir_query(
        self, peer: str, service: str, ids: list[str], mode: str = "private", actor: str = "node"
    ) -> dict[str, Any]:
        """Look ``ids`` up in ``peer``'s service; the peer learns nothing about them (private
        mode) or only their buckets (bucket mode)."""
        t0 = time.perf_counter()
        if mode not in wire.MODES:
            raise ConfigError(f"PIR mode {mode!r}: use {' or '.join(wire.MODES)}")
        if not ids or len(ids) > wire.MAX_BATCH:
            raise DataError(f"a PIR query asks 1 to {wire.MAX_BATCH} IDs")
        rep = None
        bits = None
        if mode == "private":
            rep = self._replica(peer, service)
            if rep is None:
                await self.pir_sync(peer, service, actor)
                rep = self._replica(peer, service)
        else:
            bits = await self._bucket_bits(peer, service)
        q, msg = wire.make_query(service, ids, mode, bits)
        reply = await self.dataplane.call(peer, msg)
        if rep is not None and (reply.get("version"), reply.get("key_id")) != (
            rep.version,
            rep.key_id,
        ):
            await self.pir_sync(peer, service, actor)  # the table changed since the last copy
            rep = self._replica(peer, service)
        if mode == "bucket" and reply.get("bucket_bits") != bits:
            self._pir_bits.pop((peer, service), None)
            raise DataError(f"{peer!r} re-bucketed {service!r}: ask again")
        answers = await asyncio.to_thread(wire.read_answer, q, reply, rep, peer)
        self.storage.log(
            "pir_queried",
            {
                "peer": peer,
                "service": service,
                "mode": mode,
                "ids": len(ids),
                "ids_sha256": [hashlib.sha256(i.encode()).hexdigest() for i in ids[:16]],
            },
            actor=actor,
        )
        return {
            "peer": peer,
            "service": service,
            "mode": mode,
            "version": reply.get("version"),
            "results": [{"id": a.id, "found": a.found, "label": a.label} for a in answers],
            "milliseconds": round((time.perf_counter() - t0) * 1000, 2),
        }

    _pir_bits: dict[tuple[str, str], int]

    async def _bucket_bits(self, peer: str, service: str) -> int:
        key = (peer, service)
        if key not in self._pir_bits:
            info = await self.dataplane.call(peer, {"type": "pir_info", "service": service})
            bits = info.get("bucket_bits")
            if not isinstance(bits, int) or not 0 <= bits <= 24:
                raise DataError(f"{peer!r} sent no bucket size for {service!r}")
            self._pir_bits[key] = bits
        return self._pir_bits[key]

    def _on_pir_info(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._pir_service(service)
            self._pir_grant(meta, peer, 0)
        except RainbridgeError as exc:
            return {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
        return {"ok": True, "modes": meta["modes"], **table.describe()}


def _public(table: PirTable) -> dict[str, Any]:
    d = table.describe()
    return {k: d[k] for k in ("rows", "version", "key_id", "bucket_bits", "width")}


def _label_schema(table: PirTable) -> list[pa.Field]:
    empty = table.layout.decode(np.zeros((0, max(1, table.width)), np.uint8))
    return list(empty.schema)
