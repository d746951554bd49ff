"""What a data owner does at its node: register datasets and say what peers may see of them
(the catalogue, 安全发布), set their policies (group-size threshold, privacy budget), and
grant and revoke their use (:mod:`.grants` holds the checks): the owner's side of
governance, apart from the life of a job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import select

from rainbridge.components import component_types
from rainbridge.data import DatasetRef, inspect_dataset
from rainbridge.data.sql_source import inspect_sql, provide_url
from rainbridge.errors import ConfigError, NotFoundError, RainbridgeError
from rainbridge.node.config import NodeConfig, check_name
from rainbridge.node.credentials import SourceCredentials
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.grants import (
    COLUMN_LEVELS,
    SERVICE_PURPOSES,
    new_grant_id,
    validate_grant,
)
from rainbridge.node.keys import master_key_path
from rainbridge.node.paths import check_data_path
from rainbridge.node.router import MessageRouter
from rainbridge.node.runner import FINAL
from rainbridge.node.storage import DatasetRow, GrantRow, Storage

SENSITIVITY = ("public", "internal", "confidential", "secret")

log = logging.getLogger("rainbridge.node.owners")


class DataOwners:
    """Datasets, catalogue, policies and grants of one node.

    Parameters
    ----------
    stop_job : callable
        ``await stop_job(job_id, why)``: stop a job here and tell its other parties why
        (a revoked grant).
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        dataplane: DataPlane,
        router: MessageRouter,
        *,
        stop_job: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.config, self.storage, self.dataplane = config, storage, dataplane
        self._stop_job = stop_job
        self._credentials: SourceCredentials | None = None
        router.add("catalogue", self._on_catalogue, owner="owners")
        self._open_sources()

    def _sealer(self) -> SourceCredentials:
        if self._credentials is None:  # the master key is read only once a SQL source exists
            c = self.config
            self._credentials = SourceCredentials(c.path, c.crypto_suite, c.master_key_file)
        return self._credentials

    def _open_sources(self) -> None:
        """Unseal the URLs of the SQL datasets into this process (reads and job workers)."""
        for row in self.storage.datasets():
            src = row.source or {}
            if not src.get("sealed") or not src.get("credential"):
                continue
            try:
                url = self._sealer().unseal(row.name, src["credential"], src["sealed"])
            except RainbridgeError as exc:  # its reads fail, saying so; the node still starts
                log.warning("dataset %s: %s", row.name, exc)
                continue
            provide_url(src["credential"], url)

    def _on_catalogue(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        self.storage.log("catalogue_browsed", {}, actor=f"peer:{peer}")
        return {"ok": True, "datasets": self.catalogue()}

    # -- datasets --------------------------------------------------------------------------

    def add_dataset(
        self,
        name: str,
        path: str | None,
        id_column: str | None,
        *,
        owner: str = "",
        sensitivity: str = "internal",
        description: str = "",
        encoding: str | None = None,
        column_types: Mapping[str, str] | None = None,
        sql_url: str | None = None,
        table: str | None = None,
        query: str | None = None,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Register a CSV or Parquet file in place: its schema and row count are recorded,
        and for a CSV file its ``encoding`` (default UTF-8) and the owner's declared
        ``column_types`` (``{column: type}``), which every later read applies.

        Or, with ``sql_url`` instead of ``path``, a ``table`` or a ``query`` of a PostgreSQL
        or MySQL database, read in place (:mod:`rainbridge.data.sql_source`): the URL is
        stored sealed under the master key and shown, logged and recorded only masked.

        Raises
        ------
        AuthorizationError
            ``path`` (resolved, symlinks too) is not under a data root of the node, or is one
            of the node's own files (keys, token, database, job folders); said in the same
            words whether or not the file exists, and before anything about the file is.
        DataError
            The file is missing or unreadable, not text in its encoding, holds a value not of
            its declared type, or lacks ``id_column`` (each is named).
        ConfigError
            An unknown encoding or type, or a declared column the file lacks; for a SQL
            source, a malformed URL, a query that is not one SELECT, or both or neither of
            ``path`` and ``sql_url``.
        DataError
            (SQL) the server is unreachable or refuses the credentials, the table or a column
            is missing, or a column's type cannot be read exactly.
        """
        check_name(name)
        if sensitivity not in SENSITIVITY:
            raise ConfigError(f"sensitivity {sensitivity!r}: expected {', '.join(SENSITIVITY)}")
        if sql_url is not None or table is not None or query is not None:
            if path or sql_url is None:
                raise ConfigError(
                    f"dataset {name!r}: give a file (path) or a database (sql_url with a table "
                    "or a query), not both"
                )
            if encoding or column_types:
                raise ConfigError(
                    f"dataset {name!r}: a database's columns carry their own types and "
                    "encoding; --encoding and --column-type apply to CSV files"
                )
            ref = inspect_sql(name, sql_url, id_column, table=table, query=query)
            return self._put_dataset(ref, owner, sensitivity, description, actor, sql_url)
        if not path:
            raise ConfigError(f"dataset {name!r}: give a file (path) or a database (sql_url)")
        where = check_data_path(
            path,
            self.config.path,
            self.config.data_roots,
            extra=[str(master_key_path(self.config.path, self.config.master_key_file))],
        )
        ref = inspect_dataset(
            name, str(where), id_column, encoding=encoding, column_types=column_types
        )
        return self._put_dataset(ref, owner, sensitivity, description, actor)

    def _put_dataset(
        self,
        ref: DatasetRef,
        owner: str,
        sensitivity: str,
        description: str,
        actor: str,
        sql_url: str | None = None,
    ) -> dict[str, Any]:
        source: dict[str, Any] | None = None
        if ref.source is not None:
            assert sql_url is not None
            key = str(ref.source["credential"])
            source = {**ref.source, "sealed": self._sealer().seal(ref.name, key, sql_url)}
        self.storage.put_dataset(ref)
        with self.storage.session() as s:
            row = s.get(DatasetRow, ref.name)
            assert row is not None
            row.owner = owner or actor.removeprefix("user:")
            row.sensitivity, row.description = sensitivity, description
            row.source = source  # a file registered over a SQL dataset drops its source
        event: dict[str, Any] = {
            "dataset": ref.name,
            "rows": ref.num_rows,
            "columns": sorted(ref.columns),
        }
        if ref.encoding:
            event["encoding"] = ref.encoding
        if ref.column_types:
            event["column_types"] = ref.column_types
        if ref.source is not None:  # the masked URL and what is read, never the credentials
            event["source"] = {
                k: ref.source[k] for k in ("dialect", "url", "table", "query") if k in ref.source
            }
        self.storage.log("dataset_added", event, actor=actor)
        return row.to_dict()

    def publish_dataset(
        self,
        name: str,
        columns: list[str],
        *,
        description: str | None = None,
        publish_rows: bool = False,
        published: bool = True,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Choose what peers see of ``name`` in the catalogue (安全发布): metadata, no rows."""
        with self.storage.session() as s:
            row = s.get(DatasetRow, name)
            if row is None:
                raise NotFoundError(f"no dataset {name!r} at this node")
            unknown = [c for c in columns if c not in row.columns]
            if unknown:
                raise ConfigError(f"dataset {name!r} has no column {', '.join(map(repr, unknown))}")
            row.published, row.published_columns = published, list(dict.fromkeys(columns))
            row.publish_rows = publish_rows
            if description is not None:
                row.description = description
        self.storage.log(
            "dataset_published" if published else "dataset_unpublished",
            {"dataset": name, "columns": columns, "rows_shown": publish_rows},
            actor=actor,
        )
        return row.to_dict()

    def set_dataset_policy(
        self,
        name: str,
        *,
        min_group_size: int | None = None,
        dp_budget: float | None = None,
        columns: Mapping[str, str] | None = None,
        column_updates: Mapping[str, str] | None = None,
        actor: str = "node",
    ) -> dict[str, Any]:
        """The owner's rules for results over ``name``: its k-anonymity threshold, its
        differential-privacy budget (once set, releases to other parties must use DP) and
        its column policy (``columns``: column -> level of :data:`COLUMN_LEVELS`; given, it
        replaces the previous policy; columns it does not list may not be used; ``{}``
        removes it, leaving the grants alone in charge). ``column_updates`` changes the
        named columns only, merged in the same transaction that reads the policy."""
        if columns is not None and column_updates is not None:
            raise ConfigError("give columns (the whole policy) or column_updates, not both")
        for given in (columns, column_updates):
            bad = {c: lv for c, lv in (given or {}).items() if lv not in COLUMN_LEVELS}
            if bad:
                col, lv = next(iter(bad.items()))
                raise ConfigError(
                    f"column policy of {col!r}: unknown level {lv!r} "
                    f"(levels: {', '.join(COLUMN_LEVELS)})"
                )
        if min_group_size is not None and min_group_size < 1:
            raise ConfigError("min_group_size must be 1 or more")
        if dp_budget is not None and dp_budget <= 0:
            raise ConfigError("dp_budget must be a positive epsilon")
        with self.storage.session() as s:
            row = s.get(DatasetRow, name)
            if row is None:
                raise NotFoundError(f"no dataset {name!r} at this node")
            if min_group_size is not None:
                row.min_group_size = min_group_size
            if dp_budget is not None:
                row.dp_budget = dp_budget
            for given in (columns, column_updates):
                unknown = sorted(set(given or {}) - set(row.columns))
                if unknown:
                    raise ConfigError(f"dataset {name!r} has no column {unknown[0]!r}")
            if columns is not None:
                row.column_policy = dict(columns)
            elif column_updates:
                row.column_policy = {**(row.column_policy or {}), **column_updates}
        self.storage.log(
            "dataset_policy_changed",
            {
                "dataset": name,
                "min_group_size": row.min_group_size,
                "dp_budget": row.dp_budget,
                "column_policy": dict(row.column_policy or {}),
            },
            actor=actor,
        )
        return row.to_dict()

    def catalogue(self) -> list[dict[str, Any]]:
        """The published metadata of this node's datasets, as peers see it."""
        return [d.public_metadata() for d in self.storage.datasets() if d.published]

    async def peer_catalogue(self, peer: str) -> list[dict[str, Any]]:
        """A peer's published catalogue, fetched over the data plane."""
        reply = await self.dataplane.request(peer, {"type": "catalogue"})
        items = reply.get("datasets")
        if not isinstance(items, list):
            raise ConfigError(f"peer {peer!r} sent no catalogue")
        return [d for d in items if isinstance(d, dict)][:10_000]

    # -- grants ----------------------------------------------------------------------------

    def add_grant(
        self,
        *,
        dataset: str,
        peer: str,
        columns: list[str],
        components: list[str],
        receivers: list[str],
        max_calls: int | None = None,
        max_rows: int | None = None,
        expires_at: dt.datetime | None = None,
        approval: str = "auto",
        actor: str = "node",
    ) -> dict[str, Any]:
        """Let ``peer`` use ``dataset`` as described (see :mod:`.grants`)."""
        refs = self.storage.dataset_refs()
        if dataset not in refs:
            raise NotFoundError(f"no dataset {dataset!r} at this node")
        check_name(peer)
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        validate_grant(
            dataset=refs[dataset],
            peer=peer,
            columns=columns,
            components=components,
            receivers=receivers,
            max_calls=max_calls,
            max_rows=max_rows,
            expires_at=expires_at,
            approval=approval,
            known_components=[*component_types(), *SERVICE_PURPOSES],
        )
        row = GrantRow(
            id=new_grant_id(),
            dataset=dataset,
            peer=peer,
            columns=list(columns),
            components=list(components),
            receivers=list(receivers),
            max_calls=max_calls,
            max_rows=max_rows,
            expires_at=expires_at,
            approval=approval,
            created_by=actor,
            calls_used=0,
            rows_used=0,
            created_at=dt.datetime.now(dt.UTC),
        )
        with self.storage.session() as s:
            s.add(row)
        d = row.to_dict()
        self.storage.log("grant_added", {k: d[k] for k in _GRANT_TERMS}, actor=actor)
        return d

    def grants(self, dataset: str | None = None, peer: str | None = None) -> list[GrantRow]:
        with self.storage.session() as s:
            q = select(GrantRow).order_by(GrantRow.created_at)
            if dataset:
                q = q.where(GrantRow.dataset == dataset)
            if peer:
                q = q.where(GrantRow.peer == peer)
            return list(s.scalars(q))

    async def revoke_grant(self, grant_id: str, actor: str = "node") -> dict[str, Any]:
        """Revoke at once: new jobs are refused, running ones under it stopped."""
        with self.storage.session() as s:
            row = s.get(GrantRow, grant_id)
            if row is None:
                raise NotFoundError(f"no grant {grant_id!r} at this node")
            if row.revoked_at is None:
                row.revoked_at = dt.datetime.now(dt.UTC)
        self.storage.log(
            "grant_revoked",
            {"grant": grant_id, "dataset": row.dataset, "peer": row.peer},
            actor=actor,
        )
        for job in self.storage.jobs(limit=10_000):
            if job.status in FINAL or grant_id not in _grant_ids(job.grants):
                continue
            why = f"grant {grant_id} on dataset {row.dataset!r} was revoked by its owner"
            await self._stop_job(job.id, why)
        return row.to_dict()


_GRANT_TERMS = (
    "id",
    "dataset",
    "peer",
    "columns",
    "components",
    "receivers",
    "max_calls",
    "max_rows",
    "expires_at",
    "approval",
)


def _grant_ids(grants: dict[str, Any] | None) -> set[str]:
    return {g for per in (grants or {}).values() for g in per.values()}
