"""The node's tables, as SQLAlchemy declarative rows.

``peers`` (pinned certificates), ``ic_peers`` (peers that speak the interconnection
standard), ``certificates`` (every certificate ever seen, ours and peers', to verify old
signatures), ``datasets`` (files registered in place: path, schema, row count, and the
catalogue's metadata), ``grants`` (an owner's permission for a peer to use a dataset, with
its usage), ``models`` (this node's parts of trained models), ``users`` (API users, roles,
token hashes), ``metering`` (what each job used, per peer, grant and component), ``jobs``
(spec, digest, status, progress, result, grants used), ``job_parties`` (each party's
decision and its signed report) and ``ledger`` (the hash-chained, signed log; see
:mod:`rainbridge.node.ledger`). Only portable column types are used, so a PostgreSQL URL
works as well as the default SQLite file. :class:`rainbridge.node.storage.Storage` reads and
writes them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator

from rainbridge.data import DatasetRef
from rainbridge.errors import DataError


def utc_now() -> dt.datetime:
    """The time now, aware UTC (what every ``..._at`` column defaults to)."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A time stored in UTC and read back aware, in UTC, from every database.

    SQLite keeps no offset: it would store an aware time's wall clock as if it were UTC
    (``03:00+08:00`` as ``03:00``), and hand back naive times; PostgreSQL hands them back in
    the session's time zone. The column is ``DateTime(timezone=True)`` in the schema.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else utc(value)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else utc(value)


class Base(DeclarativeBase):
    """The node's tables' metadata (``Base.metadata.create_all`` makes them)."""


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _check_lengths(mapper: Mapper[Any], _conn: Any, row: Any) -> None:
    # PostgreSQL refuses a string longer than its column with an error of the driver's, and
    # SQLite stores it all the same: both refuse it here, alike, naming the column
    for attr in mapper.column_attrs:
        length = getattr(attr.columns[0].type, "length", None)
        value = getattr(row, attr.key, None)
        if length is not None and isinstance(value, str) and len(value) > length:
            raise DataError(
                f"{mapper.persist_selectable.description}.{attr.columns[0].name}: "
                f"{len(value)} characters, at most {length} are kept"
            )


class PeerRow(Base):
    __tablename__ = "peers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    cert_pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": f"{self.host}:{self.port}",
            "fingerprint": self.fingerprint,
            "added_at": _iso(self.added_at),
        }


class IcPeerRow(Base):
    """A peer that speaks the interconnection standard instead of Rainbridge's protocol."""

    __tablename__ = "ic_peers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(255))  # its gRPC Push endpoint, host:port
    rank: Mapped[int] = mapped_column(Integer)  # the peer's rank; this node takes the other
    listen: Mapped[str] = mapped_column(String(255))  # where this node's Push server listens
    channel: Mapped[str] = mapped_column(String(64), default="root")
    counter_start: Mapped[int] = mapped_column(Integer, default=0)
    cert_pem: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: no TLS
    tls_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "rank": self.rank,
            "listen": self.listen,
            "channel": self.channel,
            "counter_start": self.counter_start,
            "tls": self.cert_pem is not None,
            "added_at": _iso(self.added_at),
        }


class CertificateRow(Base):
    """A certificate this node or a peer has used: old signatures verify under it."""

    __tablename__ = "certificates"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DatasetRow(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    id_column: Mapped[str | None] = mapped_column(String(255), nullable=True)
    columns: Mapped[dict[str, str]] = mapped_column(JSON)
    num_rows: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    # the catalogue: who owns it, how sensitive, and what peers may see of it
    owner: Mapped[str] = mapped_column(String(64), default="")
    sensitivity: Mapped[str] = mapped_column(String(16), default="internal")
    description: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    published_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    publish_rows: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the owner's k-anonymity threshold: grouped results over it need groups this large
    min_group_size: Mapped[int] = mapped_column(Integer, default=1)
    #: the owner's differential-privacy budget for released statistics (None: not required)
    dp_budget: Mapped[float | None] = mapped_column(Float, nullable=True)
    dp_spent: Mapped[float] = mapped_column(Float, default=0.0)
    #: the owner's column policy (column -> level, see ``grants.COLUMN_LEVELS``); empty: none
    column_policy: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: how a CSV file is read: its encoding (None: UTF-8) and declared column types
    encoding: Mapped[str | None] = mapped_column(String(64), nullable=True)
    column_types: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: a SQL source (None: a file): the masked URL, table or query, credential key, and the
    #: clear URL sealed under the node's master key ("sealed", never shown nor in a ref)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def ref(self) -> DatasetRef:
        return DatasetRef(
            self.name,
            self.path,
            self.format,
            self.id_column,
            dict(self.columns),
            self.num_rows,
            encoding=self.encoding,
            column_types=dict(self.column_types or {}),
            source={k: v for k, v in self.source.items() if k != "sealed"} if self.source else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ref().to_dict(),
            "added_at": _iso(self.added_at),
            "owner": self.owner,
            "sensitivity": self.sensitivity,
            "description": self.description,
            "published": self.published,
            "published_columns": list(self.published_columns or []),
            "publish_rows": self.publish_rows,
            "min_group_size": self.min_group_size,
            "dp_budget": self.dp_budget,
            "dp_spent": self.dp_spent,
            "column_policy": dict(self.column_policy or {}),
        }

    def public_metadata(self) -> dict[str, Any]:
        """What peers browsing the catalogue see: never the path, never rows."""
        cols = [c for c in (self.published_columns or []) if c in self.columns]
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "sensitivity": self.sensitivity,
            "owner": self.owner,
            "id_column": self.id_column if self.id_column in cols else None,
            "columns": {c: self.columns[c] for c in cols},
        }
        if self.publish_rows:
            d["num_rows"] = self.num_rows
        return d


class GrantRow(Base):
    """An owner's permission for ``peer`` to use ``dataset`` in jobs, with its usage."""

    __tablename__ = "grants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    peer: Mapped[str] = mapped_column(String(64), index=True)
    columns: Mapped[list[str]] = mapped_column(JSON)
    components: Mapped[list[str]] = mapped_column(JSON)
    receivers: Mapped[list[str]] = mapped_column(JSON)
    max_calls: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    approval: Mapped[str] = mapped_column(String(16), default="auto")
    calls_used: Mapped[int] = mapped_column(Integer, default=0)
    rows_used: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "peer": self.peer,
            "columns": list(self.columns),
            "components": list(self.components),
            "receivers": list(self.receivers),
            "max_calls": self.max_calls,
            "max_rows": self.max_rows,
            "expires_at": _iso(self.expires_at),
            "approval": self.approval,
            "calls_used": self.calls_used,
            "rows_used": self.rows_used,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "active": self.revoked_at is None,
        }


class ModelRow(Base):
    """This node's part of a model a job trained (its own weights; see components)."""

    __tablename__ = "models"
    #: "<job id>.<component id>": the same key at every party of the model
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    component: Mapped[str] = mapped_column(String(64))
    #: "<job name>/<component>" by default; each new model of a name is its next version
    name: Mapped[str] = mapped_column(String(200), index=True, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    type: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    #: this node's dataset the model's features come from (for online scoring)
    dataset: Mapped[str | None] = mapped_column(String(64), nullable=True)
    label_party: Mapped[str] = mapped_column(String(64))
    parties: Mapped[list[str]] = mapped_column(JSON)
    features: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    #: every data party's features, from the training job (None: a part from before they
    #: were kept); what a scoring job asks each party to align
    features_by_party: Mapped[dict[str, list[str]] | None] = mapped_column(JSON, nullable=True)
    #: the training's headline figures at this party (AUC, KS, rows, trees or epochs,
    #: seconds): the label party's only carry AUC and KS
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    #: a retired model is never scored again (batch or online); None: in use
    retired_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retired_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "component": self.component,
            "name": self.name,
            "version": self.version,
            "type": self.type,
            "dataset": self.dataset,
            "label_party": self.label_party,
            "parties": list(self.parties),
            "features": list(self.features),
            "features_by_party": (
                {p: list(f) for p, f in self.features_by_party.items()}
                if self.features_by_party
                else None
            ),
            "created_at": _iso(self.created_at),
            "metrics": dict(self.metrics) if self.metrics else None,
            "status": "retired" if self.retired_at is not None else "active",
            "retired_at": _iso(self.retired_at) if self.retired_at is not None else None,
            "retired_by": self.retired_by,
        }


class UserRow(Base):
    """A user of the REST API: a role and the SHA-256 of a bearer token (never the token)."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": _iso(self.created_at),
            "disabled": self.disabled,
        }


class MeterRow(Base):
    """What one job used at this node, per counterparty, grant and component."""

    __tablename__ = "metering"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    peer: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    component: Mapped[str] = mapped_column(String(64))
    component_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    calls: Mapped[int] = mapped_column(Integer, default=1)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "at": _iso(self.at),
            "peer": self.peer,
            "grant_id": self.grant_id,
            "component": self.component,
            "component_type": self.component_type,
            "status": self.status,
            "calls": self.calls,
            "rows": self.rows,
            "bytes": self.bytes,
            "cpu_seconds": round(self.cpu_seconds, 6),
        }


def _iso(t: dt.datetime | None) -> str | None:
    """``t`` in ISO 8601, UTC, with its offset, whichever database it was read from."""
    return None if t is None else utc(t).isoformat()


def utc(t: dt.datetime) -> dt.datetime:
    """``t`` as an aware UTC datetime (SQLite hands back naive ones)."""
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    initiator: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    #: the grants this node's datasets are used under, ``{dataset: {peer: grant id}}``
    grants: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: who submitted it (initiator) or which peer proposed it
    submitted_by: Mapped[str] = mapped_column(String(64), default="")

    @property
    def parties(self) -> list[str]:
        return list(self.spec.get("parties", []))

    def to_dict(
        self, decisions: dict[str, Any] | None = None, full: bool = False
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "digest": self.digest,
            "initiator": self.initiator,
            "parties": self.parties,
            "components": [c.get("id") for c in self.spec.get("components", [])],
            "status": self.status,
            "progress": self.progress,
            "decisions": decisions or {},
            "error": self.error,
            "grants": self.grants or {},
            "submitted_by": self.submitted_by,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }
        if full:
            d["spec"] = self.spec
            d["result"] = self.result
        return d


class JobPartyRow(Base):
    """One party's decision on a job, as this node learned it."""

    __tablename__ = "job_parties"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    party: Mapped[str] = mapped_column(String(64), primary_key=True)
    accept: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    #: the party's signed report of the job's end (collected by the initiator)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class LedgerRow(Base):
    """One signed ledger entry, stored as the exact bytes that were hashed."""

    __tablename__ = "ledger"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    entry: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64))
    sig: Mapped[str] = mapped_column(Text)

    def stored(self) -> dict[str, Any]:
        return {"entry": json.loads(self.entry), "hash": self.hash, "sig": self.sig}
