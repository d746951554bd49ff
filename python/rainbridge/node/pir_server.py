"""The server half of keyword PIR at a node: the services it publishes and its answers to
peers.

``publish`` seals a registered dataset's label columns under a fresh key of the verifiable
OPRF (RFC 9497 mode 1: every evaluation carries a proof under the service's public key,
whose SHA-256 the ledger's ``pir_published`` entry records;
:mod:`rainbridge.protocols.pir.table`) into ``DIR/pir/<service>/``; a table published
before it stays of mode 0 (no proofs: ``"verifiable": false`` in its description); ``update`` adds,
changes and deletes rows as a new version. A peer's ``pir_query`` is answered only if a
grant lets that peer use the dataset for ``pir`` with the ID and label columns (its
``max_calls`` counts queries, ``max_rows`` IDs), within the service's rate limit for that
peer (a token bucket); each answer is metered (``component_type: pir``) and ledgered with
the number of IDs, never anything about them (the server does not know them). A
``pir_sync`` copies the sealed table or its deltas under the same grant; a ``pir_info``
tells a granted peer the service's modes and bucket size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from rainbridge.data import read_columns, read_ids, write_json_atomic
from rainbridge.data.dataset import MAX_ID_BYTES
from rainbridge.errors import (
    AuthorizationError,
    ConfigError,
    DataError,
    NotFoundError,
    RainbridgeError,
)
from rainbridge.node.config import NodeConfig
from rainbridge.node.grants import refusal_class, use_grant
from rainbridge.node.limits import RateLimits, check_service_name, valid_service_name
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.pir_labels import label_schema, labels_of
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import GrantRow, MeterRow, Storage
from rainbridge.protocols.pir import wire
from rainbridge.protocols.pir.table import PirTable

log = logging.getLogger("rainbridge.node.pir")

PURPOSE = "pir"
#: the bounds a service's max_reply_bytes may be set within
MIN_REPLY_BYTES = 1 << 16
MAX_REPLY_LIMIT = 1 << 34


class PirServer:
    """The PIR services this node serves; owns their opened tables and the rate limits of
    the peers that query them. Registers ``pir_query``, ``pir_sync`` and ``pir_info``.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; the tables lie under ``DIR/pir/``.
    storage : Storage
        The datasets, grants, metering and ledger.
    router : MessageRouter
        Where the peer messages this server answers are registered.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        router: MessageRouter,
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.root = Path(config.path) / "pir"
        self.storage = storage
        self.metrics = metrics or NodeMetrics()
        self._tables: dict[str, tuple[dict[str, Any], PirTable]] = {}  # name -> (meta, table)
        self._limits = RateLimits("queries")
        router.add("pir_query", self._on_query, owner="pir")
        router.add("pir_sync", self._on_sync, owner="pir")
        router.add("pir_info", self._on_info, owner="pir")

    def publish(
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
        check_service_name(name)
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
        folder = self.root / name
        table.save(folder)
        write_json_atomic(meta, folder / "service.json")
        self._tables[name] = (meta, table)
        self.storage.log("pir_published", {**meta, **_public(table)}, actor=actor)
        return {**meta, **table.describe()}

    def _service(self, name: str) -> tuple[dict[str, Any], PirTable]:
        if name in self._tables:
            return self._tables[name]
        folder = self.root / name
        if not valid_service_name(name) or not (folder / "service.json").is_file():
            raise NotFoundError(f"no PIR service {name!r} at this node")
        meta = json.loads((folder / "service.json").read_text())
        self._tables[name] = (meta, PirTable.load(folder))
        return self._tables[name]

    def services(self) -> list[dict[str, Any]]:
        """The services this node serves: rows, version, key ID, modes, rate limits."""
        root = self.root
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        out = []
        for n in names:
            meta, table = self._service(n)
            out.append({**meta, "max_reply_bytes": _max_reply(meta), **table.describe()})
        return out

    def update(
        self,
        name: str,
        upsert: list[dict[str, Any]],
        delete: list[str],
        actor: str = "node",
    ) -> dict[str, Any]:
        """A new version of service ``name``: rows upserted (``{id_column: ..., labels...}``)
        and IDs deleted. Replicas catch up by this delta.

        Labels are read with the published table's column types, by the datasets' rules
        (:func:`~rainbridge.node.pir_labels.labels_of`): what a file's row reads as when
        published, it reads as when upserted. Nothing changes unless every row is valid.
        """
        meta, table = self._service(name)
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
        rows = labels_of(upsert, label_schema(table), f"service {name!r}")
        delta = table.update(pa.array(upsert_ids, pa.string()), rows, pa.array(delete, pa.string()))
        table.save(self.root / name)
        detail = {
            "service": name,
            "version": delta.version,
            "upserted": len(upsert),
            "deleted": len(delete),
            "removed_rows": len(delta.removed),
        }
        self.storage.log("pir_updated", detail, actor=actor)
        return {**detail, **table.describe()}

    def _grant(self, meta: dict[str, Any], peer: str, rows: int) -> GrantRow:
        """The grant that lets ``peer`` query (``rows`` IDs, counted when > 0); else refused
        (and the refusal counted by its class)."""
        try:
            return self._use_grant(meta, peer, rows)
        except AuthorizationError as exc:
            self.metrics.refused(refusal_class(exc))
            log.info(
                "PIR request from %s refused (%s)",
                peer,
                refusal_class(exc),
                extra={"peer": peer, "reason": refusal_class(exc), "outcome": "refused"},
            )
            raise

    def _use_grant(self, meta: dict[str, Any], peer: str, rows: int) -> GrantRow:
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
            # info, sync and pages serve queries counted on their own: the last call of a
            # quota still gets its answer's pages
            counted=rows == 0,
        )

    # -- peers' requests ---------------------------------------------------------------------

    async def _on_query(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        reply = await self._answer_query(peer, msg)
        request = "page" if "page" in msg else "query"
        outcome = "refused" if reply.get("ok") is False else "answered"
        self.metrics.pir_queries.labels(request, outcome).inc()
        self.metrics.pir_seconds.labels(request, outcome).observe(time.perf_counter() - t0)
        return reply

    async def _answer_query(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._service(service)
            if "page" in msg:
                # a page of an answer already granted, rate-limited and metered: the grant
                # must still hold, nothing more is counted
                self._grant(meta, peer, 0)
                return await asyncio.to_thread(wire.answer_page, table, msg, peer=peer)
            self._limits.take(service, peer, meta["rate_per_s"], meta["burst"])
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
            grant = self._grant(meta, peer, n)
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
        size += len(reply.get("evaluated", "")) + len(reply.get("proof", ""))
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

    def _on_sync(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._service(service)
            if "private" not in meta["modes"]:
                raise DataError(f"PIR service {service!r} is not served in private mode")
            self._grant(meta, peer, 0)
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

    def _on_info(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._service(service)
            self._grant(meta, peer, 0)
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
    """A refusal as a peer reads it (:class:`~rainbridge.node.pir_client.PirClient` raises
    its typed error)."""
    out: dict[str, Any] = {"ok": False, "code": exc.code, "reason": str(exc)[:300]}
    if isinstance(exc, wire.ReplyTooLargeError):
        out["refusal"] = "reply_too_large"
    elif isinstance(exc, wire.RebucketedError):
        out["refusal"] = "rebucketed"
    return out


def _public(table: PirTable) -> dict[str, Any]:
    """A publication's ledger record: with the OPRF mode and, when its answers are proven,
    the public key's SHA-256, which a compliance officer matches with what clients pinned."""
    d = table.describe()
    keys = ("rows", "version", "key_id", "bucket_bits", "width", "oprf_mode", "pk_sha256")
    return {k: d[k] for k in keys if k in d}
