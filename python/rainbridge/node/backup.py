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

**Restore** checks every member's digest against the manifest while it unpacks into a
temporary folder beside the target, refuses a target that is not empty, restores the
database (the SQLite file, or ``pg_restore`` into an *empty* PostgreSQL database in one
transaction), rewrites the configuration's database URL and the paths that named the old
directory, verifies the whole ledger and that its last entry is the manifest's head, and
only then renames the folder into place. Any failure leaves neither the folder nor tables
behind. The digests detect damage and truncation, not a forger who rewrites the manifest
too: tampering with what matters (the ledger) is caught by the ledger's verification.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from rainbridge.crypto.certs import fingerprint_pem
from rainbridge.errors import ConfigError, DataError
from rainbridge.node.config import NodeConfig, private_dir
from rainbridge.node.keys import (
    LEDGER_KEY_FILE,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    NodeKeys,
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
_CHUNK = 1 << 20


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


@dataclass
class RestoreResult:
    directory: Path
    manifest: dict[str, Any]
    #: ``opened`` (a master key was available and opens the keys) or ``not available``
    master_key: str
    #: ``current``, or what to do before the restored node starts (an older backup)
    schema: str = "current"


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
    url = _parse_url(cfg.database_url, "the node's db_url")
    kind = _kind(url)
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
                with _pg_env(url, work) as env:
                    _run_pg_tool(
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
        raise ConfigError(_db_message(url, exc)) from None
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
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
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
    mk = mk if mk.is_absolute() else node_dir / mk
    if mk.resolve().is_relative_to(node_dir):
        master.add(mk.resolve().relative_to(node_dir).as_posix())
    db_files: set[str] = set()
    if _kind(url) == "sqlite" and url.database:
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


# -- restore -----------------------------------------------------------------------------


def restore_node(
    archive: str | Path, new_dir: str | Path, db_url: str | None = None
) -> RestoreResult:
    """Restore a backup into ``new_dir`` (absent or empty) and, for PostgreSQL, into the
    empty database ``db_url``; nothing is left behind if any check fails.

    Raises
    ------
    ArchiveError
        The archive is damaged, truncated, tampered with, not a backup, or its ledger does
        not verify or does not end at the manifest's head.
    ConfigError
        ``new_dir`` is not empty; ``--db`` is missing, of the wrong kind, unreachable or not
        empty; ``pg_restore`` is missing; the master key given does not open the keys.
    """
    src = Path(archive)
    if not src.is_file():
        raise ConfigError(f"{archive}: no such backup file")
    target = Path(new_dir).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"--dir {new_dir}: not empty; restore into a new or empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    target_url = _parse_url(db_url, "--db") if db_url else None
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    restored_db: URL | None = None
    try:
        manifest = _unpack(src, stage)
        kind = manifest["database"]["kind"]
        node = stage / "node"
        cfg = NodeConfig.load(node)
        if cfg.name != manifest.get("node"):
            raise ArchiveError(
                f"{src}: the manifest names node {manifest.get('node')!r}, "
                f"the configuration {cfg.name!r}"
            )
        master_key = _check_master_key(cfg, node, target, manifest)
        if kind == "sqlite":
            if target_url is not None:
                raise ConfigError(
                    "--db: this backup holds a SQLite database; it is restored into the "
                    "node directory (leave --db out)"
                )
            os.replace(stage / SQLITE_MEMBER, node / "node.db")
            # the default stays the default; an explicit SQLite URL names the new file
            new_url = f"sqlite:///{target / 'node.db'}" if cfg.db_url else ""
            work_url = f"sqlite:///{node / 'node.db'}"
        elif kind == "postgresql":
            if target_url is None or target_url.get_backend_name() != "postgresql":
                raise ConfigError(
                    "--db: this backup holds a PostgreSQL database; name an empty PostgreSQL "
                    "database to restore it into (postgresql+psycopg://USER@HOST/DB)"
                )
            _check_empty(target_url)
            restored_db = target_url
            _pg_restore(target_url, stage / PGDUMP_MEMBER, stage)
            new_url = work_url = str(db_url)
        else:
            raise ArchiveError(f"{src}: unknown database kind {kind!r} in the manifest")
        _rewrite_config(cfg, node, target, manifest, new_url)
        _rewrite_paths(work_url, manifest["source_dir"], target)
        schema = _check_ledger(work_url, node, manifest, src)
        shutil.rmtree(stage / "database", ignore_errors=True)
        node.chmod(0o700)
        os.rename(node, target)  # an empty target folder is replaced: one step
    except BaseException:
        if restored_db is not None:
            _drop_restored(restored_db)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return RestoreResult(target, manifest, master_key, schema)


def _unpack(src: Path, stage: Path) -> dict[str, Any]:
    """Unpack ``src`` into ``stage``, checking every member against the manifest."""
    digests: dict[str, dict[str, Any]] = {}
    manifest_bytes: bytes | None = None
    try:
        with gzip.open(src, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for info in tar:
                name = info.name
                if manifest_bytes is not None:
                    raise ArchiveError(f"{src}: member {name!r} after the manifest")
                if info.isdir():
                    continue
                if not info.isreg():
                    raise ArchiveError(f"{src}: member {name!r} is not a regular file")
                if name in digests or not _safe_name(name):
                    raise ArchiveError(f"{src}: unexpected member {name!r}")
                f = tar.extractfile(info)
                assert f is not None  # a regular file always has content
                if name == MANIFEST:
                    manifest_bytes = f.read(1 << 24)
                    continue
                dest = stage / name
                try:
                    private_dir(dest.parent)
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except (FileExistsError, NotADirectoryError, IsADirectoryError):
                    raise ArchiveError(f"{src}: member {name!r} clashes with another") from None
                sha = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "wb") as out:
                    while chunk := f.read(_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                os.chmod(dest, (info.mode & 0o755) | 0o600)
                digests[name] = {"sha256": sha.hexdigest(), "size": size}
            # tar stops at its end marker; reading gzip's trailer checks its CRC and length,
            # so an archive cut short by even a few bytes is refused
            while gz.read(_CHUNK):
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"{src}: damaged or truncated archive ({exc})") from None
    if manifest_bytes is None:
        raise ArchiveError(f"{src}: no manifest (not a node backup, or truncated)")
    try:
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != FORMAT:
            raise ValueError("not a node backup")
        if manifest.get("version") != VERSION:
            raise ValueError(f"format version {manifest.get('version')!r}, expected {VERSION}")
        expected = manifest["members"]
        db = manifest["database"]
        if not isinstance(expected, dict) or db["member"] not in expected:
            raise ValueError("no database member")
        str(manifest["source_dir"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"{src}: invalid manifest ({exc})") from None
    missing = sorted(set(expected) - set(digests))
    extra = sorted(set(digests) - set(expected))
    if missing or extra:
        raise ArchiveError(
            f"{src}: members do not match the manifest (missing {missing[:5]}, "
            f"unlisted {extra[:5]})"
        )
    bad = sorted(n for n, d in digests.items() if d != expected[n])
    if bad:
        raise ArchiveError(f"{src}: digest mismatch (damaged or tampered): {', '.join(bad[:5])}")
    if not (stage / "node").is_dir():
        raise ArchiveError(f"{src}: holds no node directory")
    return dict(manifest)


def _safe_name(name: str) -> bool:
    if name == MANIFEST or name in (SQLITE_MEMBER, PGDUMP_MEMBER):
        return True
    parts = name.split("/")
    return (
        name.startswith(NODE_PREFIX)
        and len(parts) > 1
        and all(p not in ("", ".", "..") for p in parts)
        and "\\" not in name
        and "\x00" not in name
    )


def _check_master_key(cfg: NodeConfig, node: Path, target: Path, manifest: dict[str, Any]) -> str:
    """Whether a master key is available for the restored node; if so, that it opens the
    keys (before anything is written where it stays)."""
    configured = _moved(cfg.master_key_file, manifest["source_dir"], target)
    if not os.environ.get(MASTER_KEY_ENV, "").strip() and not (
        configured and Path(configured).is_file()
    ):
        return "not available"
    try:
        NodeKeys.load(node, cfg.crypto_suite, configured)
    except ConfigError:
        # the message would name the temporary folder; what matters is which key
        raise ConfigError(
            f"the master key given (${MASTER_KEY_ENV} or {configured or 'the key file'}) does "
            "not open the restored keys: is it this node's?"
        ) from None
    return "opened"


def _moved(value: str, old: str, new: Path) -> str:
    """``value`` with the old node directory replaced by ``new`` (other values as they are)."""
    if value and (value == old or value.startswith(old.rstrip("/") + "/")):
        return str(new) + value[len(old.rstrip("/")) :]
    return value


def _rewrite_config(
    cfg: NodeConfig, node: Path, target: Path, manifest: dict[str, Any], db_url: str
) -> None:
    old = str(manifest["source_dir"])
    for f, value in vars(cfg).items():
        if f not in ("dir", "db_url", "name") and isinstance(value, str):
            setattr(cfg, f, _moved(value, old, target))
    cfg.db_url = db_url
    cfg.save()


def _rewrite_paths(url: str, old: str, target: Path) -> None:
    """Job results and models name files by absolute path: point them at ``target``."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if "jobs" in tables:
                for job_id, result in conn.execute(
                    text("SELECT id, result FROM jobs WHERE result IS NOT NULL")
                ).all():
                    obj = json.loads(result) if isinstance(result, str) else result
                    moved = _move_json(obj, old, target)
                    if moved != obj:
                        conn.execute(
                            text("UPDATE jobs SET result = :r WHERE id = :i"),
                            {"r": json.dumps(moved), "i": job_id},
                        )
            if "models" in tables:
                for model_id, path in conn.execute(text("SELECT id, path FROM models")).all():
                    if _moved(path, old, target) != path:
                        conn.execute(
                            text("UPDATE models SET path = :p WHERE id = :i"),
                            {"p": _moved(path, old, target), "i": model_id},
                        )
    except SQLAlchemyError as exc:
        raise ConfigError(_db_message(make_url(url), exc)) from None
    finally:
        engine.dispose()


def _move_json(obj: Any, old: str, target: Path) -> Any:
    if isinstance(obj, str):
        return _moved(obj, old, target)
    if isinstance(obj, list):
        return [_move_json(x, old, target) for x in obj]
    if isinstance(obj, dict):
        return {k: _move_json(x, old, target) for k, x in obj.items()}
    return obj


def _check_ledger(url: str, node: Path, manifest: dict[str, Any], src: Path) -> str:
    """The restored ledger verifies in full and ends at the manifest's head; returns the
    schema's standing. Read with plain SQL, not :class:`Storage`: a backup made by an older
    version restores as it was, and ``node upgrade`` brings it to this version's schema."""
    from rainbridge.audit import verify_ledger as v
    from rainbridge.node.keys import certificate_history
    from rainbridge.node.migrations import state

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = [
                {"entry": json.loads(e), "hash": h, "sig": sig}
                for e, h, sig in conn.execute(
                    text("SELECT entry, hash, sig FROM ledger ORDER BY seq")
                ).all()
            ]
            db_certs = conn.execute(text("SELECT fingerprint, pem FROM certificates")).all()
            schema = state(conn)
    except SQLAlchemyError as exc:
        raise ArchiveError(
            f"{src}: the restored database has no readable ledger ({type(exc).__name__})"
        ) from None
    finally:
        engine.dispose()
    last = rows[-1] if rows else None
    got = {"seq": last["entry"]["seq"], "hash": last["hash"]} if last is not None else None
    if got != manifest.get("ledger_head"):
        raise ArchiveError(
            f"{src}: the restored ledger ends at {got}, the manifest says "
            f"{manifest.get('ledger_head')}"
        )
    recorded = [
        (f"certificate file certs/{fp}.pem", fp, pem)
        for fp, pem in certificate_history(node).items()
    ]
    recorded += [("certificate in the node's database", str(fp), str(pem)) for fp, pem in db_certs]
    certs, substituted = v.index_certificates(recorded)
    rep = v.verify_entries(rows, certs, _read_json(node / HEAD_FILE) or {}, None)
    problems = substituted + rep.problems
    if problems:
        raise ArchiveError(f"{src}: the restored ledger does not verify: {problems[:3]}")
    if schema.current == schema.head:
        return "current"
    if schema.known:
        return f"revision {schema.current}: run `rainbridge node upgrade` before starting it"
    return f"revision {schema.current}, newer than this version: run the version that made it"


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# -- databases ---------------------------------------------------------------------------


def _parse_url(value: str, what: str) -> URL:
    try:
        return make_url(value)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{what}: not a database URL (e.g. postgresql+psycopg://USER@HOST/DB)"
        ) from None


def _kind(url: URL) -> str:
    kind = url.get_backend_name()
    if kind in ("sqlite", "postgresql"):
        return kind
    if kind in ("mysql", "mariadb"):
        raise ConfigError(
            "the node database is MySQL/MariaDB: back it up with the server's own tools "
            "(mariadb-dump --single-transaction) while the node is stopped; "
            "`rainbridge node backup` takes SQLite and PostgreSQL"
        )
    raise ConfigError(f"database kind {kind!r}: backup takes SQLite and PostgreSQL")


def _db_message(url: URL, exc: Exception) -> str:
    # never the driver's text: it may carry the URL's password
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return (
        f"cannot use the PostgreSQL database {where}: {type(exc).__name__}; "
        "check the URL and that the server is running"
    )


def find_pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore``: the newest under /usr/lib/postgresql, else on PATH (a
    newer tool reads an older server; the reverse is refused)."""
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_pg_major, reverse=True):
        if (root / name).is_file():
            return str(root / name)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"{name} not found (install PostgreSQL's client tools, e.g. postgresql-client)"
    )


def _pg_major(p: Path) -> int:
    try:
        return int(p.parent.name.split(".")[0])
    except ValueError:
        return 0


_PG_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "host": "PGHOST",
    "port": "PGPORT",
}


@contextlib.contextmanager
def _pg_env(url: URL, work: Path) -> Iterator[dict[str, str]]:
    """The environment of a PostgreSQL client tool for ``url``: the password in a temporary
    passfile (mode 0600), never on a command line or in the environment."""
    env = dict(os.environ)
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    for k, var in _PG_QUERY_ENV.items():
        v = url.query.get(k)
        if isinstance(v, str):
            env[var] = v
    passfile: Path | None = None
    if url.password:
        fd, name = tempfile.mkstemp(prefix=".pgpass-", dir=work)
        passfile = Path(name)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{_pgpass_escape(str(url.password))}\n")
        env["PGPASSFILE"] = name
        env.pop("PGPASSWORD", None)
    try:
        yield env
    finally:
        if passfile is not None:
            passfile.unlink(missing_ok=True)


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _run_pg_tool(cmd: list[str], env: dict[str, str], url: URL, what: str) -> None:
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=24 * 3600)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if r.returncode != 0:
        err = r.stderr.strip()
        if url.password:
            err = err.replace(str(url.password), "***")
        raise ConfigError(f"{what} failed ({r.returncode}): {err[-800:]}")


def _check_empty(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema "
                    "NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise ConfigError(_db_message(url, exc)) from None
    finally:
        engine.dispose()
    if n:
        raise ConfigError(
            f"--db: database {url.database!r} is not empty ({n} tables); restore into a new, "
            "empty database"
        )


def _pg_restore(url: URL, dump: Path, work: Path) -> None:
    tool = find_pg_tool("pg_restore")
    with _pg_env(url, work) as env:
        _run_pg_tool(
            [
                tool,
                "--single-transaction",  # all or nothing
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                "--no-password",
                "--dbname",
                str(url.database or ""),
                str(dump),
            ],
            env,
            url,
            "pg_restore",
        )


def _drop_restored(url: URL) -> None:
    """Remove what a failed restore wrote into the (previously empty) database."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
    except SQLAlchemyError:
        pass  # the error being raised says more than this one
    finally:
        engine.dispose()
