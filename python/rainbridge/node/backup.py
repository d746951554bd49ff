"""Backup and restore of a node: its directory and its database, as one verified archive.

A backup is a gzip-compressed tar archive, written atomically (a temporary file renamed into
place) with mode 0600::

    database/node.db        SQLite: a copy made by SQLite's online backup API
    database/node.pgdump    PostgreSQL: ``pg_dump --format=custom``
    node/...                the node directory's files (configuration, sealed keys,
                            certificates, API token, signed ledger head, job folders and,
                            unless left out, job outputs, models, services' state)
    manifest.json           format, node, time, versions, database kind and schema
                            revision, the ledger's head (seq and hash), and the SHA-256
                            and size of every other member

**Consistency.** It is taken while the node runs and jobs write. The signed head file and the
key files are read first, then the database is snapshotted by its own mechanism (never a
file copy of a live WAL database), then the key files are read again: a key rotation in
between (the files changed, or the snapshot's ledger expects another key than the files
hold) starts the backup over. The head in the manifest is read from the snapshot itself, so
it is exactly the snapshot's last ledger entry; the signed head file, read before, names
that entry or an earlier one (entries past a signed head are legitimate). The rest of the
directory is read after the snapshot: job folders of jobs the snapshot does not know, a
running job's ``staging/`` and the outputs of a job the snapshot does not show succeeded are
left out, so the restored node holds no output of a job that did not succeed.

**Left out.** The master key (``master.key`` in the directory, or wherever
``master_key_file`` names inside it): a backup holds the keys sealed under it, never the key
that opens them, which must be kept apart and given at restore. Also left out: the live
database files (they are in ``database/``), ``run/`` (sockets), the node's log files at the
top of the directory, temporary files, and anything that is not a regular file or a
folder (links are not followed).

Restoring is :mod:`rainbridge.node.restore`; the database tools both use are in
:mod:`rainbridge.node.backup_db`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from rainbridge.crypto.certs import fingerprint_pem
from rainbridge.errors import ConfigError, DataError
from rainbridge.node.backup_db import (
    database_kind,
    db_message,
    find_pg_tool,
    parse_url,
    pg_env,
    run_pg_tool,
)
from rainbridge.node.config import NodeConfig
from rainbridge.node.keys import (
    LEDGER_KEY_FILE,
    MASTER_KEY_FILE,
    master_key_path,
)
from rainbridge.node.ledger import HEAD_FILE

FORMAT = "rainbridge-node-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/node.db"
PGDUMP_MEMBER = "database/node.pgdump"
NODE_PREFIX = "node/"
#: read before the database snapshot (the head) and around it (the keys): see the module doc
HEAD_AND_KEYS = (HEAD_FILE, LEDGER_KEY_FILE, "node.key", "node.crt")
#: how many times a backup starts over when a key rotation overlaps its snapshot
ATTEMPTS = 5
CHUNK = 1 << 20
#: the largest manifest a backup writes and a restore reads (about 1.5 million files)
MANIFEST_MAX = 1 << 28


class ArchiveError(DataError):
    """A backup archive that is damaged, truncated, tampered with or not a backup."""


@dataclass
class Snapshot:
    """What the backup read from the database snapshot itself."""

    kind: str
    member: str
    file: Path
    head: dict[str, Any] | None
    #: the certificate fingerprint the snapshot's ledger expects the node's keys to have
    expected_key: str | None
    jobs: dict[str, str]
    schema_revision: str | None


@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    #: files of the node directory left out on purpose, and why
    left_out: list[str] = field(default_factory=list)


# -- backup ------------------------------------------------------------------------------


def backup_node(
    directory: str | Path, out: str | Path, *, job_outputs: bool = True
) -> BackupResult:
    """Write a consistent backup of the node in ``directory`` to ``out`` (see module doc).

    Raises
    ------
    ConfigError
        Not a node directory, ``out`` inside it or in a missing folder, a database this
        backup cannot take (MySQL), an unreachable database server or a missing
        ``pg_dump``, or key rotations that kept overlapping the snapshot.
    """
    cfg = NodeConfig.load(directory)
    node_dir = cfg.path.resolve()
    out_path = Path(out).expanduser().absolute()
    if out_path.resolve().is_relative_to(node_dir):
        raise ConfigError(f"--out {out}: write the backup outside the node directory")
    if not out_path.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out_path.parent} does not exist")
    if out_path.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the archive file")
    url = parse_url(cfg.database_url, "the node's db_url")
    kind = database_kind(url)
    work = Path(tempfile.mkdtemp(prefix=".rainbridge-backup-", dir=out_path.parent))
    try:
        snap, captured = _snapshot_with_keys(cfg, node_dir, url, kind, work)
        return _write_archive(cfg, node_dir, url, snap, captured, out_path, job_outputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _snapshot_with_keys(
    cfg: NodeConfig, node_dir: Path, url: URL, kind: str, work: Path
) -> tuple[Snapshot, dict[str, bytes]]:
    for attempt in range(ATTEMPTS):
        before = _read_small(node_dir, HEAD_AND_KEYS)
        target = work / f"db-{attempt}"
        snap = (
            _sqlite_snapshot(url, target)
            if kind == "sqlite"
            else _postgres_snapshot(url, target.with_suffix(".pgdump"), work)
        )
        after = _read_small(node_dir, HEAD_AND_KEYS[1:])
        same = all(before.get(n) == after.get(n) for n in HEAD_AND_KEYS[1:])
        key = _key_of(before)
        if (
            same
            and key == _certificate_of(before)  # not a mix of the old and new files
            and (snap.expected_key is None or key == snap.expected_key)
        ):
            return snap, before
        snap.file.unlink(missing_ok=True)  # a rotation overlapped the snapshot: again
        time.sleep(0.1 * (attempt + 1))  # let the rotation finish
    raise ConfigError(
        f"node {cfg.name}: its keys kept changing during the backup (key rotations?); "
        "try again once they are done"
    )


def _read_small(node_dir: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    out = {}
    for n in names:
        with contextlib.suppress(FileNotFoundError):
            out[n] = (node_dir / n).read_bytes()
    return out


def _certificate_of(files: dict[str, bytes]) -> str | None:
    try:
        return fingerprint_pem(files["node.crt"])
    except (KeyError, ConfigError):
        return None


def _key_of(files: dict[str, bytes]) -> str | None:
    try:
        return str(json.loads(files[LEDGER_KEY_FILE])["certificate"])
    except (KeyError, ValueError, TypeError):
        return None


def _sqlite_snapshot(url: URL, target: Path) -> Snapshot:
    src_path = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not src_path.is_file():
        raise ConfigError(
            f"no node database at {src_path or url.database!r}: start the node once first"
        )
    try:
        src = sqlite3.connect(src_path, timeout=30)  # it only reads: the node's mode stays
        try:
            dst = sqlite3.connect(target)
            try:
                # one step: the whole database as of one read transaction (WAL lets the
                # node keep writing meanwhile); a stepwise copy would restart on each write
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                snap = _read_snapshot(lambda q: dst.execute(q).fetchall(), "sqlite")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot back up the SQLite database {src_path}: {exc}") from None
    return Snapshot("sqlite", SQLITE_MEMBER, target, **snap)


def _postgres_snapshot(url: URL, target: Path, work: Path) -> Snapshot:
    pg_dump = find_pg_tool("pg_dump")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # pg_dump imports this transaction's snapshot: the dump and what is read
                # here (the ledger's head, the jobs) are the same instant of the database
                snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                snap = _read_snapshot(lambda q: list(conn.execute(text(q)).all()), "postgresql")
                with pg_env(url, work) as env:
                    run_pg_tool(
                        [
                            pg_dump,
                            "--format=custom",
                            f"--snapshot={snapshot_id}",
                            "--no-password",
                            "--file",
                            str(target),
                            str(url.database or ""),
                        ],
                        env,
                        url,
                        "pg_dump",
                    )
    except SQLAlchemyError as exc:
        raise ConfigError(db_message(url, exc)) from None
    finally:
        engine.dispose()
    return Snapshot("postgresql", PGDUMP_MEMBER, target, **snap)


def _read_snapshot(query: Callable[[str], list[Any]], kind: str) -> dict[str, Any]:
    """The ledger head, the key the ledger expects, job statuses and schema revision."""
    tables = (
        {r[0] for r in query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if kind == "sqlite"
        else {
            r[0]
            for r in query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
    )
    head = expected = None
    if "ledger" in tables:
        last = query("SELECT seq, hash, entry FROM ledger ORDER BY seq DESC LIMIT 1")
        if last:
            seq, digest, entry = last[0]
            head = {"seq": int(seq), "hash": str(digest)}
            expected = str(json.loads(entry).get("key"))
            rot = query(
                "SELECT entry FROM ledger WHERE kind = 'key_rotated' ORDER BY seq DESC LIMIT 1"
            )
            if rot:
                expected = str(json.loads(rot[0][0])["body"]["new_key"])
    jobs = (
        {str(i): str(s) for i, s in query("SELECT id, status FROM jobs")}
        if "jobs" in tables
        else {}
    )
    revision = None
    if "alembic_version" in tables:
        rows = query("SELECT version_num FROM alembic_version")
        revision = str(rows[0][0]) if rows else None
    return {"head": head, "expected_key": expected, "jobs": jobs, "schema_revision": revision}


def _write_archive(
    cfg: NodeConfig,
    node_dir: Path,
    url: URL,
    snap: Snapshot,
    captured: dict[str, bytes],
    out: Path,
    job_outputs: bool,
) -> BackupResult:
    members: dict[str, dict[str, Any]] = {}
    left_out: list[str] = []
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            os.fchmod(raw.fileno(), 0o600)
            # level 6: most of level 9's ratio at a fraction of its time on large outputs
            with tarfile.open(
                fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6
            ) as tar:
                with open(snap.file, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    members[snap.member] = _add_stream(tar, snap.member, f, size, 0o600)
                for name, data in captured.items():
                    members[NODE_PREFIX + name] = _add_bytes(tar, NODE_PREFIX + name, data)
                skip = _skipped(cfg, node_dir, url, set(captured))
                for rel, path in _walk(node_dir, left_out):
                    why = skip(rel) or _job_rule(rel, snap.jobs, job_outputs)
                    if why:
                        if why != "-":
                            left_out.append(f"{rel} ({why})")
                        continue
                    try:
                        with open(path, "rb") as f:
                            st = os.fstat(f.fileno())
                            members[NODE_PREFIX + rel] = _add_stream(
                                tar, NODE_PREFIX + rel, f, st.st_size, st.st_mode & 0o777
                            )
                    except FileNotFoundError:
                        continue  # removed since listed (a job's files moved): not state
                manifest = {
                    "format": FORMAT,
                    "version": VERSION,
                    "node": cfg.name,
                    "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "rainbridge_version": _version(),
                    "crypto_suite": cfg.crypto_suite,
                    "source_dir": str(node_dir),
                    "database": {
                        "kind": snap.kind,
                        "member": snap.member,
                        "schema_revision": snap.schema_revision,
                    },
                    "ledger_head": snap.head,
                    "job_outputs": job_outputs,
                    "master_key": "not included: keep it apart; restore needs it",
                    "members": members,
                }
                manifest_bytes = json.dumps(manifest, indent=2).encode()
                if len(manifest_bytes) > MANIFEST_MAX:  # refused now, not at the restore
                    raise ConfigError(
                        f"node {cfg.name}: its {len(members)} files make a manifest over "
                        f"{MANIFEST_MAX >> 20} MiB; leave job outputs out (--no-job-outputs) "
                        "or remove old jobs' folders"
                    )
                _add_bytes(tar, MANIFEST, manifest_bytes)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return BackupResult(out, manifest, left_out)


def _skipped(
    cfg: NodeConfig, node_dir: Path, url: URL, captured: set[str]
) -> Callable[[str], str | None]:
    """Why a file of the node directory is not copied as it is ("-": silently)."""
    master = {MASTER_KEY_FILE}
    mk = master_key_path(node_dir, cfg.master_key_file).expanduser()
    # a relative master_key_file is read by the node from its working directory: leave out
    # the file it names both from there and from the node directory
    for candidate in (mk, node_dir / mk) if not mk.is_absolute() else (mk,):
        if candidate.resolve().is_relative_to(node_dir):
            master.add(candidate.resolve().relative_to(node_dir).as_posix())
    db_files: set[str] = set()
    if database_kind(url) == "sqlite" and url.database:
        db = Path(url.database).resolve()
        if db.is_relative_to(node_dir):
            base = db.relative_to(node_dir).as_posix()
            db_files = {base, f"{base}-wal", f"{base}-shm", f"{base}-journal"}
    log_file = Path(cfg.log_file).name if cfg.log_file else ""

    def why(rel: str) -> str | None:
        top = rel.split("/", 1)[0]
        name = rel.rsplit("/", 1)[-1]
        if rel in master:
            return "the master key: keep it apart"
        if rel in captured or rel in db_files:
            return "-"  # taken before the snapshot, or the database itself (in database/)
        if top == "run":
            return "-"
        if name.startswith(".") and name.endswith(".tmp"):
            return "-"  # a file being written atomically
        if "/" not in rel and (_is_log(name) or (log_file and name.startswith(log_file))):
            return "-"
        return None

    return why


def _is_log(name: str) -> bool:
    stem, _, tail = name.rpartition(".log")
    return bool(stem) and (tail == "" or (tail.startswith(".") and tail[1:].isdigit()))


def _job_rule(rel: str, jobs: dict[str, str], job_outputs: bool) -> str | None:
    parts = rel.split("/")
    if len(parts) < 2:
        return None
    if parts[0] == "jobs":
        if parts[1] not in jobs:
            return "-"  # a job newer than the database snapshot
        if len(parts) > 2 and parts[2] == "staging":
            return "-"  # outputs of a job still running: never restored
    if parts[0] == "outputs":
        if not job_outputs:
            return "job outputs left out (--no-job-outputs)"
        status = jobs.get(parts[1])
        if status is None and not parts[1].startswith("interop-"):
            return "-"
        if status is not None and status != "succeeded":
            return "-"
    return None


def _walk(node_dir: Path, left_out: list[str]) -> Iterator[tuple[str, Path]]:
    for root, dirs, files in os.walk(node_dir):
        dirs.sort()
        base = Path(root)
        for d in list(dirs):
            if (base / d).is_symlink():
                dirs.remove(d)
                left_out.append(f"{(base / d).relative_to(node_dir).as_posix()} (a link)")
        for name in sorted(files):
            p = base / name
            rel = p.relative_to(node_dir).as_posix()
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if not _is_regular(st.st_mode):
                if not rel.startswith("run/"):
                    left_out.append(f"{rel} (not a regular file)")
                continue
            yield rel, p


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


class _Hashing:
    """A reader that hashes what tarfile reads, and fails if the file shrank meanwhile."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data


def _add_stream(
    tar: tarfile.TarFile, name: str, f: IO[bytes], size: int, mode: int
) -> dict[str, Any]:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    reader = _Hashing(f)
    try:
        tar.addfile(info, reader)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno is not None:  # the disk, not the file: a full disk is not a change
            raise
        raise ConfigError(f"{name}: changed while it was copied ({exc}); try again") from None
    return {"sha256": reader.sha.hexdigest(), "size": size}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> dict[str, Any]:
    import io

    return _add_stream(tar, name, io.BytesIO(data), len(data), 0o600)


def _version() -> str:
    try:
        return metadata.version("rainbridge")
    except metadata.PackageNotFoundError:
        return "unknown"
