"""The node's state through SQLAlchemy: SQLite by default, any SQL database by URL.

Tables: ``peers`` (pinned certificates), ``datasets`` (files registered in place: path,
schema, row count), ``jobs`` (spec, digest, status, progress, result), ``job_parties`` (each
party's decision on a job, with its reason) and ``events`` (an append-only log that the
signed ledger builds on). Only portable column types are used, so a PostgreSQL URL works
as well as the default SQLite file.
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


class DatasetRow(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    id_column: Mapped[str | None] = mapped_column(String(255), nullable=True)
    columns: Mapped[dict[str, str]] = mapped_column(JSON)
    num_rows: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def ref(self) -> DatasetRef:
        return DatasetRef(
            self.name, self.path, self.format, self.id_column, dict(self.columns), self.num_rows
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.ref().to_dict(), "added_at": self.added_at.isoformat()}


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


class EventRow(Base):
    """Append-only log of what happened at this node (the signed ledger builds on it)."""

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    kind: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text)


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

    def log(self, kind: str, detail: dict[str, Any], job_id: str | None = None) -> None:
        with self.session() as s:
            s.add(EventRow(kind=kind, job_id=job_id, detail=json.dumps(detail, sort_keys=True)))

    def events(self, job_id: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(EventRow).order_by(EventRow.seq)
            if job_id:
                q = q.where(EventRow.job_id == job_id)
            return [
                {
                    "seq": e.seq,
                    "at": e.at.isoformat(),
                    "kind": e.kind,
                    "job_id": e.job_id,
                    "detail": json.loads(e.detail),
                }
                for e in s.scalars(q)
            ]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The API, the data plane and the job watchers write from one process while the CLI
    # may read: WAL lets readers proceed, and a busy timeout beats "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
