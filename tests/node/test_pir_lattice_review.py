"""Review case of the lattice mode at the node: a table update whose rows the lattice layout
cannot take (its columns at the parameters' limit) must not leave lattice answers behind the
table (a new row absent, an old label), not even after a restart: lattice mode is withdrawn
and refused, private mode answers the new version."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from inprocess_plane import Plane

from rainbridge.errors import RainbridgeError
from rainbridge.node import pir_server
from rainbridge.node.service import NodeService


def _publish(bureau: NodeService, folder: Path, name: str, n: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(name)
    truth: dict[str, dict[str, Any]] = {}
    lines = ["customer_id,level"]
    for _ in range(n):
        ident = f"{rng.randrange(10**17, 10**18)}"
        truth[ident] = {"level": rng.randrange(10**6)}
        lines.append(f"{ident},{truth[ident]['level']}")
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    bureau.owners.add_dataset(name, str(path), "customer_id")
    bureau.pir.publish_pir(
        name=name,
        dataset=name,
        labels=["level"],
        modes=["private", "lattice"],
        rate_per_s=1000.0,
        burst=1000,
    )
    bureau.owners.add_grant(
        dataset=name, peer="bank", columns=["*"], components=["pir"], receivers=["bank"]
    )
    return truth


def _lattice_or_refused(bank: NodeService, ids: list[str]) -> list[dict[str, Any]] | None:
    try:
        out = asyncio.run(bank.pir.pir_query("bureau", "full", ids, "lattice"))
    except RainbridgeError:
        return None
    return list(out["results"])


def test_an_update_the_layout_cannot_take_withdraws_lattice_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rainbridge.protocols.pir import lattice

    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    truth = _publish(bureau, tmp_path, "full", 50)
    old = list(truth)
    assert _lattice_or_refused(bank, old[:2]) is not None
    db = bureau.pir.server._lattice["full"][1]
    monkeypatch.setattr(lattice, "MAX_COLS", db.layout.cols)  # no room to grow
    spc = db.layout.slots_per_col
    new = [f"{900_000_000_000 + i}" for i in range(3 * spc * db.layout.cols)]
    upsert = [{"customer_id": i, "level": 7} for i in new]
    upsert.append({"customer_id": old[0], "level": -1})
    out = bureau.pir.update_pir("full", upsert, [old[1]])  # the table's new version holds
    assert "lattice_withdrawn" in out and "lattice" not in out
    truth.update({i: {"level": 7} for i in new})
    truth[old[0]] = {"level": -1}
    del truth[old[1]]
    ids = [new[0], new[-1], old[0], old[1], old[2]]
    want = [{"id": i, "found": i in truth, "label": truth.get(i)} for i in ids]
    assert list(asyncio.run(bank.pir.pir_query("bureau", "full", ids, "private"))["results"]) == (
        want
    )
    assert _lattice_or_refused(bank, ids) in (None, want), "lattice answers behind the table"
    plane.node(tmp_path, "bureau")  # the same node directory opened again
    assert _lattice_or_refused(bank, ids) in (None, want), "lattice answers behind the table"


def test_concurrent_updates_reach_the_layout_in_the_tables_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two updates of one ID at once (REST handlers run in threads): the first is held after
    its table version, the second completes. The lattice layout must end at the table's last
    version, not the first update's rows applied over the second's."""
    import threading

    from rainbridge.protocols.pir.table import PirTable

    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    truth = _publish(bureau, tmp_path, "full", 30)
    ident = next(iter(truth))
    second_done = threading.Event()
    save = PirTable.save
    calls: list[int] = []

    def held_save(self: PirTable, folder: Path) -> None:
        calls.append(self.version)
        if len(calls) == 1:
            second_done.wait(1.0)  # held; nothing to wait for once updates are serialised
        save(self, folder)

    monkeypatch.setattr(PirTable, "save", held_save)
    first = threading.Thread(
        target=bureau.pir.update_pir, args=("full", [{"customer_id": ident, "level": 1}], [])
    )
    first.start()
    while not calls:
        threading.Event().wait(0.01)
    second = threading.Thread(
        target=bureau.pir.update_pir, args=("full", [{"customer_id": ident, "level": 2}], [])
    )
    second.start()
    second.join(2.0)
    second_done.set()
    first.join()
    second.join()
    private = asyncio.run(bank.pir.pir_query("bureau", "full", [ident], "private"))["results"]
    assert private[0]["label"] == {"level": 2}
    lattice_got = asyncio.run(bank.pir.pir_query("bureau", "full", [ident], "lattice"))["results"]
    assert lattice_got == private, "the lattice layout is not at the table's version"


def test_concurrent_hint_saves_leave_one_consistent_copy(tmp_path: Path) -> None:
    """Two queries syncing one service's hint at once (each saves it from a worker thread):
    no save fails, and the copy on disk is one hint whole, its version with its rows."""
    import json
    import threading
    from types import SimpleNamespace

    import numpy as np

    from rainbridge.node.pir_client import PirClient
    from rainbridge.protocols.pir import lattice_wire
    from rainbridge.protocols.pir.lattice import LatticeDb

    rng = np.random.default_rng(3)
    tags = rng.integers(1, 256, (40, 16), dtype=np.uint8)
    db = LatticeDb.build(tags, np.zeros((40, 9), np.uint8), max_hint_bytes=4 * 1024 * 25 * 20)
    hints = [lattice_wire.Hint(db.layout, v, None, np.full_like(db.hint, v)) for v in (1, 2, 3, 4)]
    client = PirClient(SimpleNamespace(path=tmp_path), None, None)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def saves(hint: lattice_wire.Hint) -> None:
        for _ in range(15):
            try:
                client._save_hint("bureau", "svc", hint)
            except BaseException as exc:  # any failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=saves, args=(h,)) for h in hints]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    folder = client.root / "bureau" / "svc"
    version = json.loads((folder / "hint.json").read_text())["version"]
    assert (np.load(folder / "hint.npy") == version).all()


def test_a_layout_saved_behind_its_table_is_not_served_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's new version is saved, the lattice layout's is not (a full disk, a crash
    between the two): the restarted node must not answer from the older layout."""
    from rainbridge.protocols.pir.lattice import LatticeDb

    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    truth = _publish(bureau, tmp_path, "full", 40)
    old = list(truth)
    save = LatticeDb.save

    def full_disk(self: LatticeDb, folder: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LatticeDb, "save", full_disk)
    with pytest.raises(OSError):
        bureau.pir.update_pir("full", [{"customer_id": "777", "level": 5}], [old[0]])
    monkeypatch.setattr(LatticeDb, "save", save)
    truth["777"] = {"level": 5}
    del truth[old[0]]
    ids = ["777", old[0], old[1]]
    want = [{"id": i, "found": i in truth, "label": truth.get(i)} for i in ids]
    plane.node(tmp_path, "bureau")  # restarted
    assert asyncio.run(bank.pir.pir_query("bureau", "full", ids, "private"))["results"] == want
    assert _lattice_or_refused(bank, ids) in (None, want), "lattice answers behind the table"


def test_a_publication_during_an_update_is_not_overwritten_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update holds the earlier table while the service is published again: the update
    must neither save the earlier table over the new files nor apply to the new table
    unchecked; the new publication is what the node serves, now and after a restart."""
    import threading

    from rainbridge.errors import DataError
    from rainbridge.protocols.pir.table import PirTable

    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    truth = _publish(bureau, tmp_path, "pub", 30)
    ident = next(iter(truth))
    reached, published = threading.Event(), threading.Event()
    real_labels = pir_server.labels_of
    errors: list[Exception] = []

    def held_labels(*a: Any, **k: Any) -> Any:
        reached.set()  # the update has read the earlier table: held until republished
        published.wait(5.0)
        return real_labels(*a, **k)

    monkeypatch.setattr(pir_server, "labels_of", held_labels)

    def update() -> None:
        try:
            bureau.pir.update_pir("pub", [{"customer_id": ident, "level": -1}], [])
        except DataError as exc:
            errors.append(exc)

    t = threading.Thread(target=update)
    t.start()
    assert reached.wait(5.0)
    bureau.pir.publish_pir(name="pub", dataset="pub", labels=["level"],
                           modes=["private", "lattice"], rate_per_s=1000.0, burst=1000)  # fmt: skip
    key = bureau.pir.pir_services()[0]["key_id"]
    published.set()
    t.join()
    assert errors and "published again" in str(errors[0])
    saved = PirTable.load(tmp_path / "bureau" / "pir" / "pub")
    assert saved.key_id == key and saved.version == 1
    asyncio.run(bank.pir.pir_sync("bureau", "pub"))
    for mode in ("private", "lattice"):
        got = asyncio.run(bank.pir.pir_query("bureau", "pub", [ident], mode))["results"]
        assert got[0]["label"] == truth[ident], mode
