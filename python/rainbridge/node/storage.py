"""The node's state through SQLAlchemy: SQLite by default, any SQL database by URL.

Tables: ``peers`` (pinned certificates), ``certificates`` (every certificate ever seen, ours
and peers', to verify old signatures), ``datasets`` (files registered in place: path, schema,
row count, and the catalogue's metadata), ``grants`` (an owner's permission for a peer to use
a dataset, with its usage), ``users`` (API users, roles, token hashes), ``jobs`` (spec,
digest, status, progress, result, grants used), ``job_parties`` (each party's decision and
its signed report), ``ledger`` (the hash-chained, signed log; see
:mod:`rainbridge.node.ledger`) and ``metering`` (what each job used, per peer, grant and
component). Only portable column types are used, so a PostgreSQL URL works as well as the
default SQLite file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
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
    create_engine,
    event,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from rainbridge.data import DatasetRef
from rainbridge.errors import ConfigError, NotFoundError


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class PeerRow(Base):
    __tablename__ = "peers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    cert_pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": f"{self.host}:{self.port}",
            "fingerprint": self.fingerprint,
            "added_at": self.added_at.isoformat(),
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
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

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
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DatasetRow(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    id_column: Mapped[str | None] = mapped_column(String(255), nullable=True)
    columns: Mapped[dict[str, str]] = mapped_column(JSON)
    num_rows: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
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
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ref().to_dict(),
            "added_at": self.added_at.isoformat(),
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
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    approval: Mapped[str] = mapped_column(String(16), default="auto")
    calls_used: Mapped[int] = mapped_column(Integer, default=0)
    rows_used: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

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
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

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
            "created_at": _iso(self.created_at),
        }


class UserRow(Base):
    """A user of the REST API: a role and the SHA-256 of a bearer token (never the token)."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
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
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
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
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite returns naive datetimes: they were stored as UTC
        t = t.replace(tzinfo=dt.UTC)
    return t.isoformat()


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
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
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
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
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
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
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


class Storage:
    """Typed access to the node's tables."""

    def __init__(self, url: str) -> None:
        try:
            self.engine = create_engine(url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        except Exception as exc:
            # The driver's message may carry the URL's password: name only the backend.
            raise ConfigError(
                f"cannot open the node database ({url.split(':', 1)[0]}): "
                f"{type(exc).__name__}; check the URL and that the server is running"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: where :meth:`log` appends (attached by the node once its keys are open)
        self.ledger: Any = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # peers
    def put_peer(self, row: PeerRow) -> PeerRow:
        with self.session() as s:
            merged = s.merge(row)
            s.flush()
        return merged

    def peers(self) -> list[PeerRow]:
        with self.session() as s:
            return list(s.scalars(select(PeerRow).order_by(PeerRow.name)))

    def peer(self, name: str) -> PeerRow:
        with self.session() as s:
            row = s.get(PeerRow, name)
        if row is None:
            raise NotFoundError(f"no peer named {name!r} (add it with `rainbridge peer add`)")
        return row

    # datasets
    def put_dataset(self, ref: DatasetRef) -> DatasetRow:
        row = DatasetRow(
            name=ref.name,
            path=ref.path,
            format=ref.format,
            id_column=ref.id_column,
            columns=ref.columns,
            num_rows=ref.num_rows,
            encoding=ref.encoding,
            column_types=ref.column_types,
        )
        with self.session() as s:
            merged = s.merge(row)
            s.flush()
        return merged

    def datasets(self) -> list[DatasetRow]:
        with self.session() as s:
            return list(s.scalars(select(DatasetRow).order_by(DatasetRow.name)))

    def dataset_refs(self) -> dict[str, DatasetRef]:
        return {r.name: r.ref() for r in self.datasets()}

    # jobs
    def put_job(self, row: JobRow) -> None:
        with self.session() as s:
            s.merge(row)

    def decide(self, job_id: str, party: str, accept: bool, reason: str | None = None) -> None:
        """Record ``party``'s decision on a job (replacing an earlier one)."""
        with self.session() as s:
            s.merge(JobPartyRow(job_id=job_id, party=party, accept=accept, reason=reason))

    def decisions(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self.session() as s:
            q = select(JobPartyRow).where(JobPartyRow.job_id == job_id)
            return {r.party: {"accept": r.accept, "reason": r.reason} for r in s.scalars(q)}

    def job_dict(self, job_id: str, full: bool = False) -> dict[str, Any]:
        """A job as the API shows it, with every party's decision."""
        return self.job(job_id).to_dict(self.decisions(job_id), full=full)

    def job_dicts(self, limit: int = 100) -> list[dict[str, Any]]:
        return [row.to_dict(self.decisions(row.id)) for row in self.jobs(limit)]

    def job(self, job_id: str) -> JobRow:
        with self.session() as s:
            row = s.get(JobRow, job_id)
        if row is None:
            raise NotFoundError(f"no job {job_id!r} at this node")
        return row

    def find_job(self, job_id: str) -> JobRow | None:
        with self.session() as s:
            return s.get(JobRow, job_id)

    def jobs(self, limit: int = 100) -> list[JobRow]:
        with self.session() as s:
            q = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
            return list(s.scalars(q))

    def update_job(self, job_id: str, **fields: Any) -> JobRow:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id!r} at this node")
            for k, v in fields.items():
                if k not in JobRow.__table__.columns:
                    raise AttributeError(f"jobs has no column {k!r}")
                setattr(row, k, v)
            row.updated_at = _now()
        return row

    # ledger
    def log(
        self, kind: str, detail: dict[str, Any], job_id: str | None = None, actor: str = "node"
    ) -> None:
        """Append an event to the node's signed ledger (see :mod:`rainbridge.node.ledger`)."""
        if self.ledger is None:
            raise ConfigError("this storage has no ledger attached")
        self.ledger.append(kind, detail, job_id, actor)

    def events(
        self, job_id: str | None = None, limit: int = 1000, since: int = 0
    ) -> list[dict[str, Any]]:
        """Ledger entries (oldest first) in the event shape the API lists."""
        out = []
        for st in self.ledger_rows(job_id=job_id, limit=limit, since=since):
            e = st["entry"]
            out.append(
                {
                    "seq": e["seq"],
                    "at": e["at"],
                    "kind": e["kind"],
                    "job_id": e["job"],
                    "actor": e["actor"],
                    "detail": e["body"],
                    "hash": st["hash"],
                }
            )
        return out

    def ledger_rows(
        self,
        job_id: str | None = None,
        limit: int | None = None,
        since: int = 0,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(LedgerRow).where(LedgerRow.seq > since).order_by(LedgerRow.seq)
            if job_id:
                q = q.where(LedgerRow.job_id == job_id)
            if kind:
                q = q.where(LedgerRow.kind == kind)
            if limit:
                q = q.limit(limit)
            return [r.stored() for r in s.scalars(q)]

    def ledger_tail(self) -> LedgerRow | None:
        with self.session() as s:
            return s.scalars(select(LedgerRow).order_by(LedgerRow.seq.desc()).limit(1)).first()

    # certificates
    def keep_certificate(self, owner: str, fingerprint: str, pem: str) -> None:
        with self.session() as s:
            if s.get(CertificateRow, fingerprint) is None:
                s.add(CertificateRow(fingerprint=fingerprint, owner=owner, pem=pem))

    def certificates(self) -> dict[str, str]:
        with self.session() as s:
            return {r.fingerprint: r.pem for r in s.scalars(select(CertificateRow))}

    def certificate_rows(self, owner: str | None = None) -> list[CertificateRow]:
        with self.session() as s:
            q = select(CertificateRow).order_by(CertificateRow.added_at)
            if owner:
                q = q.where(CertificateRow.owner == owner)
            return list(s.scalars(q))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The API, the data plane and the job watchers write from one process while the CLI
    # may read: WAL lets readers proceed, and a busy timeout beats "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
