"""Restore of a node from a backup archive (:mod:`rainbridge.node.backup`).

A restore checks every member's digest against the manifest while it unpacks into a
temporary folder beside the target, refuses a target that is not empty, restores the
database (the SQLite file, or ``pg_restore`` into an *empty* PostgreSQL database in one
transaction), rewrites the configuration's database URL and the paths that named the old
directory, verifies the whole ledger and that its last entry is the manifest's head, and
only then renames the folder into place. Any failure leaves neither the folder nor tables
behind. The digests detect damage and truncation, not a forger who rewrites the manifest
too: tampering with what matters (the ledger) is caught by the ledger's verification.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from rainbridge.errors import ConfigError
from rainbridge.node.backup import (
    CHUNK,
    FORMAT,
    MANIFEST,
    MANIFEST_MAX,
    NODE_PREFIX,
    PGDUMP_MEMBER,
    SQLITE_MEMBER,
    VERSION,
    ArchiveError,
)
from rainbridge.node.backup_db import check_empty, db_message, drop_restored, parse_url, pg_restore
from rainbridge.node.config import NodeConfig, private_dir
from rainbridge.node.keys import (
    MASTER_KEY_ENV,
    NodeKeys,
)
from rainbridge.node.ledger import HEAD_FILE


@dataclass
class RestoreResult:
    directory: Path
    manifest: dict[str, Any]
    #: ``opened`` (a master key was available and opens the keys) or ``not available``
    master_key: str
    #: ``current``, or what to do before the restored node starts (an older backup)
    schema: str = "current"


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
    # resolved, as the node knows its directory: paths rewritten to a link's name would not
    # match it, and the next restore of this node would leave them naming these files
    target = Path(new_dir).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"--dir {new_dir}: not empty; restore into a new or empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    target_url = parse_url(db_url, "--db") if db_url else None
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
            check_empty(target_url)
            restored_db = target_url
            pg_restore(target_url, stage / PGDUMP_MEMBER, stage)
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
            drop_restored(restored_db)
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
                    manifest_bytes = f.read(MANIFEST_MAX + 1)
                    if len(manifest_bytes) > MANIFEST_MAX:
                        raise ArchiveError(
                            f"{src}: manifest over {MANIFEST_MAX >> 20} MiB (not a node backup)"
                        )
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
                    while chunk := f.read(CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                os.chmod(dest, (info.mode & 0o755) | 0o600)
                digests[name] = {"sha256": sha.hexdigest(), "size": size}
            # tar stops at its end marker; reading gzip's trailer checks its CRC and length,
            # so an archive cut short by even a few bytes is refused
            while gz.read(CHUNK):
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
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            setattr(cfg, f, [_moved(v, old, target) for v in value])  # data_roots
    cfg.db_url = db_url
    cfg.save()


def _rewrite_paths(url: str, old: str, target: Path) -> None:
    """Job results, models and datasets name files by absolute path: point them at
    ``target``."""
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
            # models, and datasets registered from the directory (a job's outputs)
            for table, key in (("models", "id"), ("datasets", "name")):
                if table not in tables:
                    continue
                for ident, path in conn.execute(text(f"SELECT {key}, path FROM {table}")).all():
                    if path is not None and _moved(path, old, target) != path:
                        conn.execute(
                            text(f"UPDATE {table} SET path = :p WHERE {key} = :i"),
                            {"p": _moved(path, old, target), "i": ident},
                        )
    except SQLAlchemyError as exc:
        raise ConfigError(db_message(make_url(url), exc)) from None
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
