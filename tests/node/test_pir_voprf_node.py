"""The PIR service's verifiable OPRF between two nodes in one process: the client pins the
service's key (the ledger's ``pk_sha256`` matches it), every answer's proof is checked, a
republished (re-keyed) service is refused until an explicit sync pins its new key, a forged
evaluation is refused with the replica intact, and a table of mode 0 still answers, listed
as unverifiable."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from inprocess_plane import Plane

from rainbridge.crypto import oprf, voprf
from rainbridge.errors import ProofError
from rainbridge.node.service import NodeService
from rainbridge.protocols.pir import wire
from rainbridge.protocols.pir.table import PirTable

IDS = [f"c{i:03d}" for i in range(60)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture()
def nodes(tmp_path: Path) -> tuple[NodeService, NodeService, Path]:
    plane = Plane()
    bureau, bank = plane.node(tmp_path, "bureau"), plane.node(tmp_path, "bank")
    path = tmp_path / "table.csv"
    path.write_text("customer_id,score\n" + "".join(f"{x},{i}\n" for i, x in enumerate(IDS)))
    bureau.owners.add_dataset("scores", str(path), "customer_id")
    bureau.owners.add_grant(
        dataset="scores", peer="bank", columns=["*"], components=["pir"], receivers=["bank"]
    )
    bureau.pir.publish_pir(name="svc", dataset="scores", labels=["score"], k=8)
    return bureau, bank, tmp_path


def ask(bank: NodeService, ids: list[str], mode: str) -> dict[str, Any]:
    out = run(bank.pir.pir_query("bureau", "svc", ids, mode))
    return {r["id"]: r["label"] for r in out["results"] if r["found"]}


def replica_files(base: Path) -> tuple[str, bytes]:
    folder = base / "bank" / "pir-replicas" / "bureau" / "svc"
    return (folder / "replica.json").read_text(), (folder / "rows.npz").read_bytes()


def test_pinned_key_proofs_and_a_republished_service(
    nodes: tuple[NodeService, NodeService, Path],
) -> None:
    bureau, bank, base = nodes
    assert ask(bank, ["c007", "zzz"], "private") == {"c007": {"score": 7}}
    assert ask(bank, ["c008"], "bucket") == {"c008": {"score": 8}}
    (published,) = [e for e in bureau.storage.events() if e["kind"] == "pir_published"]
    meta = json.loads(replica_files(base)[0])
    assert meta["oprf_mode"] == 1
    assert (
        published["detail"]["pk_sha256"]
        == hashlib.sha256(bytes.fromhex(meta["public_key"])).hexdigest()
    )
    (listed,) = bureau.pir.pir_services()
    assert listed["verifiable"] is True and listed["oprf_mode"] == 1

    # a republished service has a new key: refused in both modes until an explicit sync
    bureau.pir.publish_pir(name="svc", dataset="scores", labels=["score"], k=8)
    before = replica_files(base)
    for mode in ("private", "bucket"):
        with pytest.raises(wire.KeyChangedError, match="sync it"):
            ask(bank, ["c007"], mode)
    assert replica_files(base) == before
    run(bank.pir.pir_sync("bureau", "svc"))
    assert ask(bank, ["c007"], "private") == {"c007": {"score": 7}}
    assert ask(bank, ["c009"], "bucket") == {"c009": {"score": 9}}


def test_a_forged_evaluation_is_refused_and_loses_nothing(
    nodes: tuple[NodeService, NodeService, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bank, base = nodes
    assert ask(bank, ["c001"], "private") == {"c001": {"score": 1}}
    before = replica_files(base)
    other = voprf.random_key()

    def under_another_key(table: PirTable, elements: bytes) -> dict[str, str]:
        ev = voprf.evaluate(other, elements)
        return {"evaluated": wire.b64(ev.elements), "proof": wire.b64(ev.proof)}

    monkeypatch.setattr(wire, "evaluate", under_another_key)
    for mode in ("private", "bucket"):
        with pytest.raises(ProofError):
            ask(bank, ["c001"], mode)
    assert replica_files(base) == before
    monkeypatch.undo()
    assert ask(bank, ["c001"], "private") == {"c001": {"score": 1}}


def test_a_mode_0_table_still_answers(nodes: tuple[NodeService, NodeService, Path]) -> None:
    bureau, bank, base = nodes
    folder = base / "bureau" / "pir" / "svc"
    published = PirTable.load(folder)
    # the same rows sealed as before the verifiable OPRF, its metadata without a mode
    old = PirTable.build(
        pa.array(IDS),
        pa.table({"score": list(range(len(IDS)))}),
        key=published.key,
        k=8,
        oprf_mode=oprf.MODE_OPRF,
    )
    old.save(folder)
    meta = json.loads((folder / "table.json").read_text())
    for k in ("oprf_mode", "verifiable", "public_key", "pk_sha256"):
        meta.pop(k, None)
    (folder / "table.json").write_text(json.dumps(meta))
    bureau.pir.server._tables.clear()  # as a node started on the old table
    (listed,) = bureau.pir.pir_services()
    assert listed["verifiable"] is False and "public_key" not in listed
    assert ask(bank, ["c004", "nope"], "private") == {"c004": {"score": 4}}
    assert ask(bank, ["c005"], "bucket") == {"c005": {"score": 5}}
    assert json.loads(replica_files(base)[0])["oprf_mode"] == 0
