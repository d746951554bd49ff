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

A service published with the ``lattice`` mode also keeps its sealed rows laid out for
lattice PIR (:mod:`rainbridge.protocols.pir.lattice`) in ``DIR/pir/<service>/lattice/``,
updated with the table: a ``pir_query`` of that mode is the metered OPRF step and returns a
ticket, ``pir_lattice`` messages carry the query vectors the ticket allows, and ``pir_hint``
copies the hint (or its rows changed since the client's version) under the grant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import shutil
import threading
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
from rainbridge.protocols.pir import lattice_wire, replica_sync, wire
from rainbridge.protocols.pir.lattice import LatticeDb, plan_layout
from rainbridge.protocols.pir.table import PirTable
from rainbridge.protocols.psi.records import RecordLayout

log = logging.getLogger("rainbridge.node.pir")

PURPOSE = "pir"
#: the bounds a service's max_reply_bytes may be set within
MIN_REPLY_BYTES = 1 << 16
MAX_REPLY_LIMIT = 1 << 34
#: the lattice mode's hint budget: its default and the bounds it may be set within
DEFAULT_HINT_BYTES = 16 << 20
MIN_HINT_BYTES = 1 << 20
MAX_HINT_BYTES = 1 << 30
#: the modes a service may be published in
MODES = (*wire.MODES, "lattice")


class PirServer:
    """The PIR services this node serves; owns their opened tables and the rate limits of
    the peers that query them. Registers ``pir_query``, ``pir_sync``, ``pir_info``, and the
    lattice mode's ``pir_lattice`` and ``pir_hint``.

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
        # name -> (lock, lattice layout): the lock holds one version for an answer or a page
        self._lattice: dict[str, tuple[threading.Lock, LatticeDb]] = {}
        self._tickets = lattice_wire.Tickets()
        self._updating = threading.Lock()
        router.add("pir_query", self._on_query, owner="pir")
        router.add("pir_sync", self._on_sync, owner="pir")
        router.add("pir_info", self._on_info, owner="pir")
        router.add("pir_lattice", self._on_lattice, owner="pir")
        router.add("pir_hint", self._on_hint, owner="pir")

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
        max_hint_bytes: int = DEFAULT_HINT_BYTES,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Seal ``dataset``'s ``labels`` by its ID column as service ``name`` (replacing any
        earlier table of that name: a new key, so replicas copy it again).

        ``max_reply_bytes`` bounds one bucket-mode answer (its rows, sent in pages of at most
        1 MiB each): a query whose answer would be larger is refused before any work.
        ``max_hint_bytes`` bounds the lattice mode's hint, every client's one-time download:
        a larger hint makes each query smaller (the default, 16 MiB, serves up to about
        10^7 rows; 10^8 rows need about 88 MiB, :mod:`rainbridge.protocols.pir.lattice`)."""
        check_service_name(name)
        modes = list(modes or wire.MODES)
        if not modes or any(m not in MODES for m in modes):
            raise ConfigError(f"PIR modes: some of {', '.join(MODES)}")
        if not 1 <= k <= 1 << 20 or rate_per_s <= 0 or burst < 1:
            raise ConfigError("PIR k must be 1..2^20, rate_per_s positive and burst at least 1")
        if not MIN_REPLY_BYTES <= max_reply_bytes <= MAX_REPLY_LIMIT:
            raise ConfigError(
                f"PIR max_reply_bytes must be {MIN_REPLY_BYTES:,}..{MAX_REPLY_LIMIT:,} "
                f"(got {max_reply_bytes:,})"
            )
        if not MIN_HINT_BYTES <= max_hint_bytes <= MAX_HINT_BYTES:
            raise ConfigError(
                f"PIR max_hint_bytes must be {MIN_HINT_BYTES:,}..{MAX_HINT_BYTES:,} "
                f"(got {max_hint_bytes:,})"
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
        if "lattice" in modes:  # a layout the parameters cannot serve: refused before sealing
            payload = lattice_wire.VERSION_BYTES + RecordLayout.of(label_table).size
            plan_layout(len(ids), payload, max_hint_bytes=max_hint_bytes)
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
            "max_hint_bytes": int(max_hint_bytes),
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        folder = self.root / name
        db = None
        if "lattice" in modes:
            db = lattice_wire.build_db(table, max_hint_bytes=max_hint_bytes)
        # the files and the service swap as one step against updates: an update of the
        # earlier table running now would otherwise save it over the new one's files
        with self._updating:
            table.save(folder)
            if db is not None:
                _save_lattice(folder / "lattice", db, table.version)
            elif (folder / "lattice").exists():
                shutil.rmtree(folder / "lattice")
            write_json_atomic(meta, folder / "service.json")
            self._tables[name] = (meta, table)
            self._lattice.pop(name, None)
            if db is not None:
                self._lattice[name] = (threading.Lock(), db)
        self.storage.log("pir_published", {**meta, **_public(table)}, actor=actor)
        return {**meta, **table.describe(), **self._describe_lattice(name)}

    def _service(self, name: str) -> tuple[dict[str, Any], PirTable]:
        if name in self._tables:
            return self._tables[name]
        folder = self.root / name
        if not valid_service_name(name) or not (folder / "service.json").is_file():
            raise NotFoundError(f"no PIR service {name!r} at this node")
        meta = json.loads((folder / "service.json").read_text())
        table = PirTable.load(folder)
        if "lattice" in meta["modes"] and (folder / "lattice").is_dir():
            # (no folder: the layout was withdrawn by an update it could not take)
            self._lattice[name] = (threading.Lock(), _load_lattice(folder / "lattice", table))
        self._tables[name] = (meta, table)
        return self._tables[name]

    def _lattice_of(self, name: str) -> tuple[dict[str, Any], PirTable, threading.Lock, LatticeDb]:
        meta, table = self._service(name)
        if "lattice" not in meta["modes"] or name not in self._lattice:
            raise DataError(
                f"PIR service {name!r} is not served in lattice mode (or its layout was "
                "withdrawn when an update outgrew it): use private mode"
            )
        lock, db = self._lattice[name]
        return meta, table, lock, db

    def services(self) -> list[dict[str, Any]]:
        """The services this node serves: rows, version, key ID, modes, rate limits."""
        root = self.root
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        out = []
        for n in names:
            meta, table = self._service(n)
            out.append(
                {
                    **meta,
                    "max_reply_bytes": _max_reply(meta),
                    **table.describe(),
                    **self._describe_lattice(n),
                }
            )
        return out

    def _describe_lattice(self, name: str) -> dict[str, Any]:
        """The lattice layout's public figures, for a service published in lattice mode."""
        if name not in self._lattice:
            return {}
        lock, db = self._lattice[name]
        with lock:
            lay, version = db.layout, db.version
        return {
            "lattice": {
                "layout_id": lay.layout_id,
                "version": version,
                "rows": lay.rows,
                "cols": lay.cols,
                "slots_per_col": lay.slots_per_col,
                "hint_bytes": lay.rows * lattice_wire.LWE_N * 4,
                "query_bytes_per_id": 2 * 4 * lay.cols,
                "answer_bytes_per_id": 2 * 4 * lay.rows,
            }
        }

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
        # one update at a time: the table's versions reach its lattice layout in order
        with self._updating:
            if self._service(name)[1] is not table:
                # published again since this update read it: a new key and new rows, which
                # this update was not checked against (and must not be saved over)
                raise DataError(
                    f"PIR service {name!r} was published again during the update: send the "
                    "update again"
                )
            lattice = self._lattice.get(name) if "lattice" in meta["modes"] else None
            delta = table.update(
                pa.array(upsert_ids, pa.string()), rows, pa.array(delete, pa.string())
            )
            table.save(self.root / name)
            withdrawn: str | None = None
            if lattice is not None:
                # the layout follows the table: its changed slots patch the hint (a re-layout, if
                # the new rows do not fit, gives it a new layout ID)
                lock, db = lattice
                with lock:
                    try:
                        lattice_wire.update_db(db, delta.removed, delta.added)
                    except DataError as exc:
                        # the layout cannot take the rows and stays at the previous version: its
                        # answers would lag the table, so lattice mode is withdrawn (here and on
                        # disk) until the service is published again
                        self._lattice.pop(name, None)
                        shutil.rmtree(self.root / name / "lattice", ignore_errors=True)
                        withdrawn = str(exc)[:200]
                        log.warning("PIR service %r: lattice mode withdrawn: %s", name, withdrawn)
                    else:
                        _save_lattice(self.root / name / "lattice", db, delta.version)
        detail: dict[str, Any] = {
            "service": name,
            "version": delta.version,
            "upserted": len(upsert),
            "deleted": len(delete),
            "removed_rows": len(delta.removed),
        }
        if withdrawn is not None:
            detail["lattice_withdrawn"] = withdrawn
        self.storage.log("pir_updated", detail, actor=actor)
        return {**detail, **table.describe(), **self._describe_lattice(name)}

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
            if msg.get("mode") == "lattice" and "page" not in msg:
                return await self._lattice_query(peer, service, msg, t0)
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
        self._meter(peer, service, grant, n, size, msg.get("mode"), t0)
        return reply

    async def _lattice_query(
        self, peer: str, service: str, msg: dict[str, Any], t0: float
    ) -> dict[str, Any]:
        """The OPRF step of a lattice-mode query and its ticket: checked, rate-limited, granted
        and metered exactly as a private-mode query."""
        meta, table, _, db = self._lattice_of(service)
        self._limits.take(service, peer, meta["rate_per_s"], meta["burst"])
        n = lattice_wire.check_query(table, msg)
        grant = self._grant(meta, peer, n)
        reply = await asyncio.to_thread(
            lattice_wire.answer_query, table, db, self._tickets, msg, service=service, peer=peer
        )
        size = len(reply["evaluated"]) + len(reply.get("proof", ""))
        self._meter(peer, service, grant, n, size, "lattice", t0)
        return reply

    def _meter(
        self, peer: str, service: str, grant: GrantRow, n: int, size: int, mode: Any, t0: float
    ) -> None:
        """One answered query: metered (calls, IDs, bytes) and ledgered, never its IDs."""
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
            {"service": service, "ids": n, "mode": mode, "grant": grant.id},
            actor=f"peer:{peer}",
        )

    def _on_sync(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table = self._service(service)
            if "private" not in meta["modes"]:
                raise DataError(f"PIR service {service!r} is not served in private mode")
            self._grant(meta, peer, 0)
            reply = replica_sync.sync_page(table, msg)
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

    async def _on_lattice(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Query vectors under a ticket: answered (not counted again: the ticket's query was),
        while the grant still holds."""
        t0 = time.perf_counter()
        service = str(msg.get("service", ""))[:64]
        try:
            meta, _, lock, db = self._lattice_of(service)
            self._grant(meta, peer, 0)

            def answer() -> dict[str, Any]:
                with lock:
                    return lattice_wire.answer_vectors(
                        db, self._tickets, msg, service=service, peer=peer
                    )

            reply = await asyncio.to_thread(answer)
        except RainbridgeError as exc:
            self.storage.log(
                "pir_refused", {"service": service, "reason": str(exc)[:200]}, actor=f"peer:{peer}"
            )
            reply = _refusal(exc)
        outcome = "refused" if reply.get("ok") is False else "answered"
        self.metrics.pir_queries.labels("vectors", outcome).inc()
        self.metrics.pir_seconds.labels("vectors", outcome).observe(time.perf_counter() - t0)
        return reply

    async def _on_hint(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """One page of the lattice hint, or of its rows changed since the client's version,
        under the same grant as a sync."""
        service = str(msg.get("service", ""))[:64]
        try:
            meta, table, lock, db = self._lattice_of(service)
            self._grant(meta, peer, 0)
            labels = table.layout.to_json()

            def page() -> dict[str, Any]:
                with lock:
                    return lattice_wire.hint_page(db, msg, labels)

            reply = await asyncio.to_thread(page)
        except RainbridgeError as exc:
            return _refusal(exc)
        if reply["offset"] == 0:
            self.storage.log(
                "pir_hint_sent",
                {"service": service, "kind": reply["kind"], "version": reply["version"]},
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
    elif isinstance(exc, lattice_wire.StaleHintError):
        out["refusal"] = "stale_hint"
    elif isinstance(exc, lattice_wire.TicketError):
        out["refusal"] = "ticket"
    return out


def _save_lattice(folder: Path, db: LatticeDb, table_version: int) -> None:
    """The layout, then the table version it holds (written last, so that a layout saved
    behind its table is found out when loaded)."""
    db.save(folder)
    write_json_atomic({"table_version": table_version}, folder / "table.json")


def _load_lattice(folder: Path, table: PirTable) -> LatticeDb:
    try:
        db = LatticeDb.load(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"the lattice layout in {folder} cannot be read: {exc}") from exc
    try:
        held = json.loads((folder / "table.json").read_text()).get("table_version")
    except (OSError, ValueError, AttributeError):
        held = None
    if held != table.version:
        # a crash or a failed write between the table's save and the layout's: laid out anew
        # from the table rather than answering from another version
        log.warning("PIR lattice layout in %s is not of its table's version: laid out anew", folder)
        db = lattice_wire.build_db(table)
        _save_lattice(folder, db, table.version)
    return db


def _public(table: PirTable) -> dict[str, Any]:
    """A publication's ledger record: with the OPRF mode and, when its answers are proven,
    the public key's SHA-256, which a compliance officer matches with what clients pinned."""
    d = table.describe()
    keys = ("rows", "version", "key_id", "bucket_bits", "width", "oprf_mode", "pk_sha256")
    return {k: d[k] for k in keys if k in d}
