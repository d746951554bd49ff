"""The node's state through SQLAlchemy: SQLite by default, PostgreSQL by URL.

:class:`Storage` opens the database, makes the node's tables in a new one or checks an
existing one's schema revision (:mod:`rainbridge.node.migrations`; their rows are in
:mod:`rainbridge.node.tables`, re-exported here) and gives typed access to them: peers,
datasets, jobs and their parties' decisions, the ledger, certificates. Each call is one
transaction and blocks, so callers on the event loop run it in a thread: the data plane in
the node's storage threads, the REST API's plain endpoints in FastAPI's thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from rainbridge.data import DatasetRef
from rainbridge.errors import ConfigError, NotFoundError, RainbridgeError
from rainbridge.node.migrations import open_schema
from rainbridge.node.tables import (
    Base,
    CertificateRow,
    DatasetRow,
    GrantRow,
    IcPeerRow,
    JobPartyRow,
    JobRow,
    LedgerRow,
    MeterRow,
    ModelRow,
    PeerRow,
    UserRow,
    utc,
    utc_now,
)

__all__ = [
    "Base",
    "CertificateRow",
    "DatasetRow",
    "GrantRow",
    "IcPeerRow",
    "JobPartyRow",
    "JobRow",
    "LedgerRow",
    "MeterRow",
    "ModelRow",
    "PeerRow",
    "Storage",
    "UserRow",
    "utc",
]


class Storage:
    """Typed access to the node's tables."""

    def __init__(self, url: str) -> None:
        try:
            self.engine = create_engine(url, **_pool_options(url))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            #: the schema's revision (a new database is made at the head; an old one refused)
            self.schema = open_schema(self.engine)
        except RainbridgeError:
            raise
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
            row.updated_at = utc_now()
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


def _pool_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {}
    # A server restarted (or a connection dropped by a proxy) leaves dead connections in the
    # pool: each is tested before use and replaced, instead of failing a request. The node
    # calls storage from its 8 storage threads and from FastAPI's thread pool (40): a pool
    # of 5 + 10 made requests queue for a connection under load, so up to 10 + 40 are
    # opened (the server's max_connections must allow that per node).
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 40, "pool_timeout": 30}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The API, the data plane and the job watchers write from one process while the CLI
    # may read: WAL lets readers proceed, and a busy timeout beats "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
