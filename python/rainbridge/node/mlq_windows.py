"""A lender's frozen windows of the multi-lender count.

When a lender masks its window for a build it freezes it: the window's distinct IDs under
``DIR/mlq/<service>/windows/<build>.parquet`` and, beside them, the window's end, size and
digest (the digest the merger records with the build). A count on that build reads the
frozen IDs to subtract the lender's own presence, and checks that the lender's data for the
window's dates is still what it froze: the check rereads the dataset only when its stamp
(registration, file size, inode and times) changed. Only the windows of the latest builds
are kept.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rainbridge.data import read_columns, write_json_atomic
from rainbridge.errors import DataError
from rainbridge.node.mlq_files import BUILD_ID, MlqFiles
from rainbridge.node.storage import Storage
from rainbridge.protocols import mlq

#: frozen windows a lender keeps (the latest builds it took part in)
KEEP_WINDOWS = 4
#: a file modified less than this long ago is read again rather than trusted by its times
_RACY_NS = 2_000_000_000

Stamp = tuple[Any, ...]


class FrozenWindows:
    """A lender's windows as frozen for each build; owns the digests of its current windows
    (by service and end date), kept while its dataset's stamp holds.

    Parameters
    ----------
    name : str
        This node's name, as refusals name the lender.
    storage : Storage
        Where the lender's datasets are registered.
    files : MlqFiles
        The services' folders and keys.
    """

    def __init__(self, name: str, storage: Storage, files: MlqFiles) -> None:
        self.name = name
        self.storage = storage
        self.files = files
        self._digests: dict[tuple[str, str], tuple[Stamp | None, str]] = {}

    def folder(self, service: str) -> Path:
        """Where ``service``'s frozen windows lie."""
        return self.files.folder(service) / "windows"

    def _window(self, conf: dict[str, Any], end: str) -> pa.Array:
        """The IDs of the lender's applications in the window ending ``end``."""
        ref = self.storage.dataset_refs().get(conf["dataset"])
        if ref is None:
            raise DataError(f"dataset {conf['dataset']!r} of {conf['name']!r} is gone")
        t = read_columns(ref, [conf["id_column"], conf["date_column"]])
        ids = t.column(conf["id_column"]).combine_chunks().cast(pa.string())
        dates = t.column(conf["date_column"]).combine_chunks()
        try:
            return mlq.window_ids(ids, dates, np.datetime64(end, "D"), conf["window_days"])
        except (pa.ArrowInvalid, ValueError) as exc:
            raise DataError(f"column {conf['date_column']!r} holds no dates: {exc}") from None

    def _stamp(self, conf: dict[str, Any]) -> Stamp | None:
        """What says that a lender's dataset is unchanged: its registration and its file's
        size, inode and modification times (None: always reread — no file to look at, or
        one modified so recently that a second write could leave the same times, as file
        times are coarser than nanoseconds)."""
        ref = self.storage.dataset_refs().get(conf["dataset"])
        if ref is None:
            raise DataError(f"dataset {conf['dataset']!r} of {conf['name']!r} is gone")
        try:
            st = os.stat(ref.path)
        except OSError:
            return None
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
            return None  # written just now: a later write could leave the same times
        reg = json.dumps(ref.to_dict(), sort_keys=True, default=str)
        return (reg, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def freeze(
        self, service: str, conf: dict[str, Any], build: str, end: str
    ) -> tuple[pa.Array, str]:
        """Freeze this lender's window for ``build``: its distinct IDs and digest, kept here."""
        stamp = self._stamp(conf)
        window = self._window(conf, end)
        ids, digest = mlq.window_digest(self.files.key(service), window)
        folder = self.folder(service)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{build}.parquet.tmp"
        pq.write_table(pa.table({"id": ids}), tmp)
        os.replace(tmp, folder / f"{build}.parquet")
        write_json_atomic(
            {"build": build, "end": end, "digest": digest, "ids": len(ids)},
            folder / f"{build}.json",
        )
        self._digests[(service, end)] = (stamp, digest)
        return ids, digest

    def frozen(self, service: str, build: Any) -> dict[str, Any] | None:
        """This lender's frozen window of ``build`` (its metadata), or None."""
        if not isinstance(build, str) or not BUILD_ID.match(build):
            return None
        path = self.folder(service) / f"{build}.json"
        if not path.is_file():
            return None
        return dict(json.loads(path.read_text()))

    def frozen_ids(self, service: str, build: str) -> pa.Array:
        """The distinct IDs of this lender's frozen window of ``build``."""
        table = pq.read_table(self.folder(service) / f"{build}.parquet")
        return table.column("id").combine_chunks()

    def prune(self, service: str) -> None:
        """Keep the frozen windows of the latest builds only."""
        folder = self.folder(service)
        if not folder.is_dir():
            return
        metas = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in metas[:-KEEP_WINDOWS]:
            for p in (old, old.with_suffix(".parquet")):
                p.unlink(missing_ok=True)

    def check(self, service: str, conf: dict[str, Any], frozen: dict[str, Any]) -> None:
        """Refuse (:class:`~rainbridge.protocols.mlq.WindowChangedError`) when this lender's
        data for the frozen window's dates is no longer what it froze."""
        end = str(frozen["end"])
        stamp = self._stamp(conf)
        cached = self._digests.get((service, end))
        if stamp is not None and cached is not None and cached[0] == stamp:
            digest = cached[1]
        else:
            _, digest = mlq.window_digest(self.files.key(service), self._window(conf, end))
            self._digests[(service, end)] = (stamp, digest)
        if digest != frozen["digest"]:
            raise mlq.WindowChangedError(
                f"lender {self.name!r}: its applications in the {conf['window_days']}-day "
                f"window ending {end} changed since build {frozen['build']}, so that build's "
                f"counts no longer hold; rebuild (`rainbridge mlq build {service} --end {end}` "
                f"at {conf['merger']!r}) and count again",
                lender=self.name,
                build=str(frozen["build"]),
                end=end,
            )
