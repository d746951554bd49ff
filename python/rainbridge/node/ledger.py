"""The node's ledger (存证): an append-only, hash-chained log, every entry signed.

Each entry records one event (a job proposed, accepted, refused, started, a dataset read, an
output released, a grant changed, a key rotated, a user added, ...) with who did it
(``actor``: ``user:NAME``, ``peer:NAME`` or ``node``)::

    {"v": 1, "node": "bank", "seq": 42, "prev": <hash of entry 41>, "at": "...Z",
     "kind": "job_accepted", "job": "<id>" | null, "actor": "user:alice",
     "body": {...}, "suite": "standard" | "gm", "key": <certificate fingerprint>}

stored with ``hash = H(domain ‖ canonical JSON)`` (SHA-256, or SM3 under the 国密 suite) and
the node's ledger-key signature of that hash (Ed25519, or SM2). A signed **head** (the last
seq and hash) is kept in ``DIR/ledger.head`` so that entries deleted at the end are detected
too. It is rewritten by a background thread at most every :data:`HEAD_INTERVAL` seconds
(coalescing bursts: one signature per burst, not two per append) and at once by
:meth:`Ledger.flush`; entries past the head are legitimate (appended since), entries missing
below it are not. When a job ends, its parties countersign one **job record** (what
was run, on which datasets under which grants, what each party released, what it used) and
each appends the same record with every signature (:mod:`rainbridge.node.records`).

The checks are those of the stand-alone verifier (:mod:`rainbridge.audit.verify_ledger`),
which ``export`` ships inside every bundle. Threat model: whoever can write the database or
the files but lacks the ledger key cannot edit, insert, delete, reorder or replay an entry
undetected; a holder of the key could rewrite its own ledger, which is why job records are
signed by every party and kept at each (and could be anchored externally: see
docs/GOVERNANCE.md).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from rainbridge.audit import verify_ledger as v
from rainbridge.crypto.certs import _write_private
from rainbridge.errors import ConfigError
from rainbridge.node.keys import NodeKeys, certificate_history
from rainbridge.node.metrics import NodeMetrics
from rainbridge.node.storage import LedgerRow, Storage

HEAD_FILE = "ledger.head"
#: longest time the signed head may lag the last append
HEAD_INTERVAL = 0.01
_INSERT = insert(LedgerRow)
#: largest body an entry may carry (a job record of many parties fits easily)
MAX_BODY_BYTES = 256 << 10


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ledger:
    """Appends signed entries to ``storage``'s ledger table, in one chain.

    Parameters
    ----------
    storage : Storage
        The node's database.
    node : str
        This node's name (every entry carries it).
    keys : NodeKeys
        The current ledger key (replaced by :meth:`rotate`).
    directory : Path
        The node directory, where the signed head is kept.
    """

    def __init__(
        self,
        storage: Storage,
        node: str,
        keys: NodeKeys,
        directory: Path,
        *,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.storage = storage
        self.metrics = metrics or NodeMetrics()
        self.node = node
        self.keys = keys
        self.directory = directory
        self._lock = threading.Lock()
        tail = storage.ledger_tail()
        self._seq = tail.seq if tail else 0
        self._prev = tail.hash if tail else v.GENESIS
        storage.keep_certificate(node, keys.fingerprint, keys.cert_pem)
        storage.ledger = self
        self._head_dirty = threading.Event()
        self._head_thread = threading.Thread(
            target=self._head_loop, name=f"ledger-head-{node}", daemon=True
        )
        self._head_thread.start()
        if tail is None:
            self.append(
                "ledger_created", {"suite": keys.suite.name, "certificate": keys.fingerprint}
            )

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        kind: str,
        body: dict[str, Any],
        job_id: str | None = None,
        actor: str = "node",
    ) -> dict[str, Any]:
        """Sign and store one entry; returns it as stored (``entry``, ``hash``, ``sig``)."""
        with self._lock:
            entry: dict[str, Any] = {
                "v": 1,
                "node": self.node,
                "seq": self._seq + 1,
                "prev": self._prev,
                "at": _now_iso(),
                "kind": kind,
                "job": job_id,
                "actor": actor,
                "body": body,
                "suite": self.keys.suite.name,
                "key": self.keys.fingerprint,
            }
            text = v.canonical(entry)
            if len(text) > MAX_BODY_BYTES:
                raise ConfigError(f"ledger entry {kind!r} is too large ({len(text)} bytes)")
            digest = self.keys.suite.hash(v.ENTRY_DOMAIN + text)
            sig = self.keys.ledger_key.sign(digest)
            row = {
                "seq": entry["seq"],
                "kind": kind,
                "job_id": job_id,
                "entry": text.decode(),
                "hash": digest.hex(),
                "sig": sig.hex(),
            }
            try:
                # a Core insert: the ORM's unit of work costs more than the signature
                with self.storage.engine.begin() as conn:
                    conn.execute(_INSERT, row)
            except IntegrityError:
                raise ConfigError(
                    "another process appended to this node's ledger; run one node per directory"
                ) from None
            self._seq, self._prev = entry["seq"], digest.hex()
            self._head_dirty.set()
            self.metrics.ledger_appends.labels(kind).inc()
            return {"entry": entry, "hash": row["hash"], "sig": row["sig"]}

    def _head_loop(self) -> None:
        while True:
            self._head_dirty.wait()
            time.sleep(HEAD_INTERVAL)  # let a burst of appends finish: one signature for all
            self.flush()

    def flush(self) -> None:
        """Write the signed head now (before a check, an export or a shutdown)."""
        with self._lock:
            if self._head_dirty.is_set():
                self._head_dirty.clear()
                self._write_head()

    def _write_head(self) -> None:
        head = {"node": self.node, "seq": self._seq, "hash": self._prev}
        sig = self.keys.ledger_key.sign(v.HEAD_DOMAIN + v.canonical(head))
        signed = {**head, "key": self.keys.fingerprint, "sig": sig.hex()}
        _write_private(self.directory / HEAD_FILE, json.dumps(signed).encode(), 0o600, sync=False)

    def head(self) -> dict[str, Any] | None:
        try:
            obj = json.loads((self.directory / HEAD_FILE).read_text())
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def rotate(self, new_keys: NodeKeys, handover_sig: str, actor: str) -> dict[str, Any]:
        """Record the hand-over to ``new_keys`` (signed by the old key), then switch."""
        self.storage.keep_certificate(self.node, new_keys.fingerprint, new_keys.cert_pem)
        stored = self.append(
            "key_rotated",
            {
                "old_key": self.keys.fingerprint,
                "new_key": new_keys.fingerprint,
                "handover_sig": handover_sig,
            },
            actor=actor,
        )
        with self._lock:
            self.keys = new_keys
            self._head_dirty.clear()
            self._write_head()
        return stored

    # -- reading and checking ---------------------------------------------------------------

    def certificates(self) -> dict[str, str]:
        """Every certificate an entry or countersignature here may name, by content."""
        return known_certificates(self.directory, self.storage)[0]

    def verify(self, expected_fingerprint: str | None = None) -> v.Report:
        """Check the whole chain, the job records and the head (see the verifier)."""
        self.flush()
        with self._lock:
            entries = self.storage.ledger_rows()
            head = self.head()
        certs, substituted = known_certificates(self.directory, self.storage)
        rep = v.verify_entries(entries, certs, head or {}, expected_fingerprint)
        rep.problems[:0] = substituted
        return rep

    def export(self, out: Path, entries: Iterable[dict[str, Any]] | None = None) -> Path:
        """Write a bundle that ``verify_ledger.py`` (shipped inside it) checks alone."""
        self.flush()
        return export_bundle(
            out,
            list(entries) if entries is not None else self.storage.ledger_rows(),
            self.certificates(),
            self.head(),
            self.node,
        )


def export_bundle(
    out: Path,
    entries: list[dict[str, Any]],
    certs: dict[str, str],
    head: dict[str, Any] | None,
    node: str,
) -> Path:
    """The bundle directory: entries, head, certificates and the stand-alone verifier."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "entries.jsonl", "w") as f:
        for st in entries:
            f.write(json.dumps(st, ensure_ascii=False, separators=(",", ":")) + "\n")
    if head is not None:
        (out / "head.json").write_text(json.dumps(head, indent=2) + "\n")
    cdir = out / "certs"
    cdir.mkdir(exist_ok=True)
    for fp, pem in certs.items():
        (cdir / f"{fp}.pem").write_text(pem)
    here = Path(v.__file__).resolve()
    shutil.copyfile(here, out / "verify_ledger.py")
    shutil.copyfile(here.parent.parent / "crypto" / "sm2_pure.py", out / "sm2_pure.py")
    (out / "README.txt").write_text(
        f"Ledger of Rainbridge node {node}: {len(entries)} entries.\n"
        "Check it with only Python 3.11 and the `cryptography` package, version "
        f"{'.'.join(map(str, v.MIN_CRYPTOGRAPHY))} or later (Debian 12's "
        "python3-cryptography will do):\n\n"
        "    python verify_ledger.py . --fingerprint <the node's pinned fingerprint>\n"
    )
    return out


def _open_directory(directory: str | Path) -> tuple[Storage, Path, str]:
    from rainbridge.node.config import NodeConfig

    cfg = NodeConfig.load(directory)
    return Storage(cfg.database_url), cfg.path, cfg.name


def _read_head(directory: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads((directory / HEAD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def known_certificates(directory: Path, storage: Storage) -> tuple[dict[str, str], list[str]]:
    """The node's certificates (``certs/`` and the database) by the fingerprint of their content.

    Neither the file names nor the database's fingerprint column are trusted: whoever can
    write them could file a certificate of his own under the pinned fingerprint. A
    certificate filed under a fingerprint that is not its own is reported (tampering).
    """
    recorded = [
        (f"certificate file certs/{fp}.pem", fp, pem)
        for fp, pem in certificate_history(directory).items()
    ]
    recorded += [
        ("certificate in the node's database", fp, pem)
        for fp, pem in storage.certificates().items()
    ]
    return v.index_certificates(recorded)


def verify_directory(directory: str | Path, expected_fingerprint: str | None = None) -> v.Report:
    """Verify a node's ledger from its directory, without its keys (read-only)."""
    storage, path, _ = _open_directory(directory)
    certs, substituted = known_certificates(path, storage)
    head = _read_head(path)
    rep = v.verify_entries(storage.ledger_rows(), certs, head or {}, expected_fingerprint)
    rep.problems[:0] = substituted
    if head is None:
        rep.problems.append(f"no signed head ({HEAD_FILE}) in the node directory")
    return rep


def export_directory(directory: str | Path, out: Path) -> tuple[Path, int]:
    """Export a node's ledger bundle from its directory (read-only); returns path and size."""
    storage, path, name = _open_directory(directory)
    entries = storage.ledger_rows()
    certs, _ = known_certificates(path, storage)  # a bundle names certificates by content
    return export_bundle(out, entries, certs, _read_head(path), name), len(entries)
