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
import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rainbridge.data import read_columns, read_ids, write_json_atomic
from rainbridge.data.dataset import MAX_ID_BYTES
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
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import GrantRow, MeterRow, Storage
from rainbridge.protocols.pir import wire
from rainbridge.protocols.pir.client import Answer, Replica
from rainbridge.protocols.pir.table import PirTable

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
PURPOSE = "pir"
#: the bounds a service's max_reply_bytes may be set within
MIN_REPLY_BYTES = 1 << 16
MAX_REPLY_LIMIT = 1 << 34


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


#: a PIR service's own refusals, as the client raises them
_REFUSALS = {
    "reply_too_large": lambda peer, reason, _r: wire.ReplyTooLargeError(
        f"{peer!r} refused: {reason}"
    ),
    "rebucketed": lambda peer, reason, _r: wire.RebucketedError(f"{peer!r} refused: {reason}"),
}


class Pir:
    """Keyword PIR at a node: the services it serves and its replicas of peers' tables; owns
    the opened tables, the per-client rate limits and the replicas."""

    def __init__(
        self, config: NodeConfig, storage: Storage, dataplane: DataPlane, router: MessageRouter
    ) -> None:
        self.name, self.config, self.storage, self.dataplane = (
            config.name,
            config,
            storage,
            dataplane,
        )
        self._pir: dict[str, tuple[dict[str, Any], PirTable]] = {}  # name -> (meta, table)
        self._pir_limits: dict[tuple[str, str], TokenBucket] = {}  # (service, peer) -> limit
        self._replicas: dict[tuple[str, str], Replica] = {}  # (peer, service) -> replica
        self._pir_bits: dict[tuple[str, str], int] = {}  # (peer, service) -> bucket bits
        router.add("pir_query", self._on_pir_query, owner="pir")
        router.add("pir_sync", self._on_pir_sync, owner="pir")
        router.add("pir_info", self._on_pir_info, owner="pir")

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
        max_reply_bytes: int = wire.MAX_REPLY_BYTES,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Seal ``dataset``'s ``labels`` by its ID column as service ``name`` (replacing any
        earlier table of that name: a new key, so replicas copy it again).

        ``max_reply_bytes`` bounds one bucket-mode answer (its rows, sent in pages of at most
        1 MiB each): a query whose answer would be larger is refused before any work."""
        _check_service_name(name)
        modes = list(modes or wire.MODES)
        if not modes or any(m not in wire.MODES for m in modes):
            raise ConfigError(f"PIR modes: some of {', '.join(wire.MODES)}")
        if not 1 <= k <= 1 << 20 or rate_per_s <= 0 or burst < 1:
            raise ConfigError("PIR k must be 1..2^20, rate_per_s positive and burst at least 1")
        if not MIN_REPLY_BYTES <= max_reply_bytes <= MAX_REPLY_LIMIT:
            raise ConfigError(
                f"PIR max_reply_bytes must be {MIN_REPLY_BYTES:,}..{MAX_REPLY_LIMIT:,} "
                f"(got {max_reply_bytes:,})"
            )
        ref = self.storage.dataset_refs().get(dataset)
        if ref is None:
            raise NotFoundError(f"no dataset {dataset!r} at this node")
        if not ref.id_column:
            raise DataError(f"dataset {dataset!r} has no ID column to key the service by")
        ids = read_ids(ref, ref.id_column)
        label_table = read_columns(ref, labels)
        for f in label_table.schema:
            if pa.types.is_timestamp(f.type) and f.type.unit == "ns":
                raise DataError(
                    f"label {f.name!r} is {f.type}: answers carry times to the microsecond, "
                    "so nanoseconds would not read back exactly; store it in microseconds"
                )
        table = PirTable.build(ids, label_table, k=k)
        meta = {
            "name": name,
            "dataset": dataset,
            "id_column": ref.id_column,
            "labels": list(labels),
            "modes": modes,
            "k": k,
            "rate_per_s": float(rate_per_s),
            "burst": int(burst),
            "max_reply_bytes": int(max_reply_bytes),
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
            out.append({**meta, "max_reply_bytes": _max_reply(meta), **table.describe()})
        return out

    def update_pir(
        self,
        name: str,
        upsert: list[dict[str, Any]],
        delete: list[str],
        actor: str = "node",
    ) -> dict[str, Any]:
        """A new version of service ``name``: rows upserted (``{id_column: ..., labels...}``)
        and IDs deleted. Replicas catch up by this delta.

        Labels are read with the published table's column types, by the datasets' rules
        (:func:`labels_of`): what a file's row reads as when published, it reads as when
        upserted. Nothing changes unless every row is valid.
        """
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
        upsert_ids = [r[idc] for r in upsert]
        for what, ids in (("upserted", upsert_ids), ("deleted", delete)):
            empty = sum(1 for x in ids if not x)
            if empty:
                raise DataError(f"{empty} {what} row(s) have an empty ID; every row needs one")
            long = [x for x in ids if len(x.encode()) > MAX_ID_BYTES]
            if long:
                raise DataError(
                    f"{len(long)} {what} ID(s) are longer than {MAX_ID_BYTES} bytes "
                    f"(the first: {long[0][:40]!r}…)"
                )
        both = sorted(set(upsert_ids) & set(delete))
        if both:
            raise DataError(
                f"{len(both)} ID(s) are both upserted and deleted (the first: {both[0]!r}): "
                "name each once"
            )
        rows = labels_of(upsert, _label_schema(table), f"service {name!r}")
        delta = table.update(pa.array(upsert_ids, pa.string()), rows, pa.array(delete, pa.string()))
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
            if "page" in msg:
                # a page of an answer already granted, rate-limited and metered: the grant
                # must still hold, nothing more is counted
                self._pir_grant(meta, peer, 0)
                return await asyncio.to_thread(wire.answer_page, table, msg, peer=peer)
            limit = self._pir_limits.setdefault(
                (service, peer), TokenBucket(meta["rate_per_s"], meta["burst"])
            )
            wait = limit.take()
            if wait > 0:
                raise RateLimitError(
                    f"{peer!r} is over {meta['rate_per_s']:g} queries/s on {service!r}: "
                    f"retry in {wait:.2f} s"
                )
            # everything that can refuse the query is checked before the grant counts it
            # (in bucket mode the first check of a version orders the rows by bucket)
            check = functools.partial(
                wire.check_query,
                table,
                msg,
                tuple(meta["modes"]),
                max_reply_bytes=_max_reply(meta),
            )
            n, _ = await asyncio.to_thread(check) if msg.get("mode") == "bucket" else check()
            grant = self._pir_grant(meta, peer, n)
            reply = await asyncio.to_thread(
                wire.answer_query,
                table,
                msg,
                tuple(meta["modes"]),
                peer=peer,
                max_reply_bytes=_max_reply(meta),
            )
        except RainbridgeError as exc:
            self.storage.log(
                "pir_refused", {"service": service, "reason": str(exc)[:200]}, actor=f"peer:{peer}"
            )
            return _refusal(exc)
        answer = reply.get("answer")
        size = int(answer["bytes"]) if answer else 0
        size += len(reply.get("evaluated", ""))
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
            return _refusal(exc)
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
            reply = await self._pir_call(peer, req)
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

    async def _pir_call(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A PIR request to ``peer``; a refusal becomes the typed error it names."""
        return await self.dataplane.call(peer, msg, _REFUSALS)

    async def pir_query(
        self, peer: str, service: str, ids: list[str], mode: str = "private", actor: str = "node"
    ) -> dict[str, Any]:
        """Look ``ids`` up in ``peer``'s service; the peer learns nothing about them (private
        mode) or only their buckets (bucket mode, whose answer is read in pages)."""
        t0 = time.perf_counter()
        if mode not in wire.MODES:
            raise ConfigError(f"PIR mode {mode!r}: use {' or '.join(wire.MODES)}")
        if not ids or len(ids) > wire.MAX_BATCH:
            raise DataError(f"a PIR query asks 1 to {wire.MAX_BATCH} IDs")
        if mode == "private":
            answers, version = await self._pir_private(peer, service, ids, actor)
        else:
            try:
                answers, version = await self._pir_bucket(peer, service, ids)
            except wire.RebucketedError:
                self._pir_bits.pop((peer, service), None)  # republished: ask once more
                answers, version = await self._pir_bucket(peer, service, ids)
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
            "version": version,
            "results": [{"id": a.id, "found": a.found, "label": a.label} for a in answers],
            "milliseconds": round((time.perf_counter() - t0) * 1000, 2),
        }

    async def _pir_private(
        self, peer: str, service: str, ids: list[str], actor: str
    ) -> tuple[list[Answer], Any]:
        rep = self._replica(peer, service)
        if rep is None:
            await self.pir_sync(peer, service, actor)
            rep = self._replica(peer, service)
        q, msg = wire.make_query(service, ids, "private")
        reply = await self._pir_call(peer, msg)
        if rep is None or (reply.get("version"), reply.get("key_id")) != (
            rep.version,
            rep.key_id,
        ):
            await self.pir_sync(peer, service, actor)  # the table changed since the last copy
            rep = self._replica(peer, service)
        answers = await asyncio.to_thread(wire.read_answer, q, reply, rep, peer)
        return answers, reply.get("version")

    async def _pir_bucket(
        self, peer: str, service: str, ids: list[str]
    ) -> tuple[list[Answer], Any]:
        bits = await self._bucket_bits(peer, service)
        q, msg = wire.make_query(service, ids, "bucket", bits)
        reply = await self._pir_call(peer, msg)
        if reply.get("bucket_bits") != bits:
            raise wire.RebucketedError(f"{peer!r} re-bucketed {service!r}: ask again")
        got = await asyncio.to_thread(wire.BucketAnswer, q, reply, peer)
        while got.next is not None:
            page = await self._pir_call(
                peer, {"type": "pir_query", "service": service, "page": got.next}
            )
            if page.get("key_id") != reply.get("key_id"):
                raise DataError(f"{peer!r} republished {service!r} during the answer: ask again")
            await asyncio.to_thread(got.take, page)
        return await asyncio.to_thread(got.answers), got.version

    _pir_bits: dict[tuple[str, str], int]

    async def _bucket_bits(self, peer: str, service: str) -> int:
        key = (peer, service)
        if key not in self._pir_bits:
            info = await self._pir_call(peer, {"type": "pir_info", "service": service})
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
            return _refusal(exc)
        return {
            "ok": True,
            "modes": meta["modes"],
            "max_reply_bytes": _max_reply(meta),
            **table.describe(),
        }


def _max_reply(meta: dict[str, Any]) -> int:
    return int(meta.get("max_reply_bytes") or wire.MAX_REPLY_BYTES)


def _refusal(exc: RainbridgeError) -> dict[str, Any]:
    """A refusal as a peer reads it (:meth:`Pir._pir_call` raises its typed error)."""
    out: dict[str, Any] = {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
    if isinstance(exc, wire.ReplyTooLargeError):
        out["refusal"] = "reply_too_large"
    elif isinstance(exc, wire.RebucketedError):
        out["refusal"] = "rebucketed"
    return out


def _public(table: PirTable) -> dict[str, Any]:
    d = table.describe()
    return {k: d[k] for k in ("rows", "version", "key_id", "bucket_bits", "width")}


def _label_schema(table: PirTable) -> pa.Schema:
    empty = table.layout.decode(np.zeros((0, max(1, table.width)), np.uint8))
    return pa.schema([pa.field(f.name, f.type) for f in empty.schema])


def labels_of(rows: list[dict[str, Any]], schema: pa.Schema, what: str) -> pa.Table:
    """Upserted labels (JSON values) as a table of the published ``schema``.

    The rules are the datasets' CSV rules: a text value is read as a CSV cell of its
    column's type would be (``"404"`` and ``"007"`` in a string column stay that text, in
    an integer column they are 404 and 7), and an empty text or a null is NULL, whatever the
    type. A JSON number or boolean is read as its text in a column of numbers or booleans;
    in a string column an integer is its decimal text and anything else is refused, as is a
    value in a column the table was published without any value in.

    Raises
    ------
    DataError
        A value that is not of its column's type; the message names the column and value.
    """
    columns = []
    for f in schema:
        texts = [_text_of(r.get(f.name), f, what) for r in rows]
        columns.append(_typed(texts, f, what))
    return pa.Table.from_arrays(columns, schema=schema)


def _text_of(value: Any, f: pa.Field, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None  # an empty cell is NULL, for every type
    string_like = pa.types.is_string(f.type) or pa.types.is_binary(f.type)
    if isinstance(value, bool):
        if string_like:
            raise DataError(f"{what}: label {f.name!r} is text; send {value!r} as a string")
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not string_like:
        return repr(value)
    raise DataError(
        f"{what}: label {f.name!r} ({f.type}) cannot hold {type(value).__name__} "
        f"{str(value)[:40]!r}; send it as text"
    )


def _typed(texts: list[str | None], f: pa.Field, what: str) -> pa.Array:
    """Texts converted as the CSV reader converts a cell of type ``f.type``."""
    if pa.types.is_null(f.type):
        given = [t for t in texts if t is not None]
        if given:
            raise DataError(
                f"{what}: label {f.name!r} was published without any value (an empty column), "
                f"so it cannot hold {given[0][:40]!r}: republish the table with values in it"
            )
        return pa.nulls(len(texts))
    if pa.types.is_string(f.type):
        return pa.array(texts, pa.string())  # kept as written
    if not texts:
        return pa.array([], f.type)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table({"v": pa.array(texts, pa.string())}), sink)
    buf = sink.getvalue()
    try:
        out = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(block_size=max(buf.size + 1, 1 << 16)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"v": f.type},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        reason = re.sub(r"^In CSV column #\d+: ", "", text)[:200]
        raise DataError(
            f"{what}: label {f.name!r} is {f.type} in the published table: {reason}"
        ) from None
    col = out.column("v").combine_chunks()
    if len(col) != len(texts):
        raise DataError(f"{what}: label {f.name!r}: {len(col)} values read for {len(texts)}")
    return col
