"""The client half of keyword PIR at a node: querying a peer's service.

``query`` blinds the IDs, asks the peer, and opens the answers from this node's replica of
the peer's sealed table (``DIR/pir-replicas/<peer>/<service>/``, synced first when missing
or behind) in private mode, or, in bucket mode, from the rows returned (read in pages). In
lattice mode it keeps the service's hint instead (``hint.npy`` beside the replicas, caught up
by its changed rows) and reads each ID's two columns by lattice PIR. Its own ledger records
each query with the IDs hashed.

Every answer is checked against the peer's OPRF key as this node pinned it (``pin.json``
beside the replica): the key a sync copied, or in bucket mode the one the service's info
named at first use. A verifiable service's evaluations must carry a proof under that key
(:class:`~rainbridge.errors.ProofError` otherwise); an answer under another key is refused
(:class:`~rainbridge.protocols.pir.wire.KeyChangedError`) until an explicit ``sync`` pins
the service's new key. The automatic catch-up of a replica never changes its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rainbridge.data import write_json_atomic
from rainbridge.errors import ConfigError, DataError
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.storage import Storage
from rainbridge.protocols.pir import lattice_wire, replica_sync, wire
from rainbridge.protocols.pir.client import Answer, PinnedKey, Replica
from rainbridge.protocols.pir.lattice import LatticeLayout
from rainbridge.protocols.pir.table import split_outputs

#: the modes a client may query in
MODES = (*wire.MODES, "lattice")
#: bytes of lattice query vectors a query holds at once (its IDs go in chunks)
QUERY_BYTES = 64 << 20

#: a PIR service's own refusals, as the client raises them
_REFUSALS = {
    "reply_too_large": lambda peer, reason, _r: wire.ReplyTooLargeError(
        f"{peer!r} refused: {reason}"
    ),
    "rebucketed": lambda peer, reason, _r: wire.RebucketedError(f"{peer!r} refused: {reason}"),
    "stale_hint": lambda peer, reason, _r: lattice_wire.StaleHintError(
        f"{peer!r} refused: {reason}"
    ),
    "ticket": lambda peer, reason, _r: lattice_wire.TicketError(f"{peer!r} refused: {reason}"),
}


class PirClient:
    """Queries of peers' PIR services; owns this node's replicas of their tables and the
    bucket sizes they told it.

    Parameters
    ----------
    config : NodeConfig
        The node's configuration; replicas lie under ``DIR/pir-replicas/``.
    storage : Storage
        The ledger each query and sync is recorded in.
    dataplane : DataPlane
        How the peers are asked.
    """

    def __init__(self, config: NodeConfig, storage: Storage, dataplane: DataPlane) -> None:
        self.root = Path(config.path) / "pir-replicas"
        self.storage = storage
        self.dataplane = dataplane
        self._replicas: dict[tuple[str, str], Replica] = {}  # (peer, service) -> replica
        self._bits: dict[tuple[str, str], int] = {}  # (peer, service) -> bucket bits
        self._pins: dict[tuple[str, str], PinnedKey] = {}  # (peer, service) -> its OPRF key
        self._hints: dict[tuple[str, str], lattice_wire.Hint] = {}  # (peer, service) -> hint
        # one hint save at a time: its rows and its version are written as a pair
        self._saving = threading.Lock()

    # -- replicas ----------------------------------------------------------------------------

    def _replica(self, peer: str, service: str) -> Replica | None:
        key = (peer, service)
        if key in self._replicas:
            return self._replicas[key]
        folder = self.root / peer / service
        if not (folder / "replica.json").is_file():
            return None
        try:
            meta = json.loads((folder / "replica.json").read_text())
            with np.load(folder / "rows.npz") as z:
                arrays = {k: z[k].tobytes() for k in ("tags", "versions", "buckets", "sealed")}
        except (OSError, ValueError, KeyError):
            return None  # a damaged copy is copied again
        rep = Replica.from_parts(meta, arrays, f"replica of {peer}/{service}")
        self._replicas[key] = rep
        return rep

    def _save_replica(self, peer: str, service: str, rep: Replica) -> None:
        folder = self.root / peer / service
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "rows.npz.tmp"
        arrays = rep.to_arrays()
        with open(tmp, "wb") as f:
            np.savez(
                f,
                tags=arrays["tags"],
                versions=arrays["versions"],
                buckets=arrays["buckets"],
                sealed=arrays["sealed"],
            )
        tmp.replace(folder / "rows.npz")
        write_json_atomic(rep.meta(), folder / "replica.json")

    def _pinned(self, peer: str, service: str) -> PinnedKey | None:
        key = (peer, service)
        if key not in self._pins:
            path = self.root / peer / service / "pin.json"
            try:
                self._pins[key] = PinnedKey.from_header(
                    json.loads(path.read_text()), f"pinned key of {peer}/{service}"
                )
            except (OSError, ValueError):
                return None
        return self._pins[key]

    def _pin(self, peer: str, service: str, pin: PinnedKey) -> None:
        folder = self.root / peer / service
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(pin.to_json(), folder / "pin.json")
        self._pins[(peer, service)] = pin

    async def sync(
        self, peer: str, service: str, actor: str = "node", *, repin: bool = True
    ) -> dict[str, Any]:
        """Bring this node's replica of ``peer``'s ``service`` up to date, pinning the key
        the service names now (``repin``; a bucket-only service is only pinned). Without
        ``repin`` (the automatic catch-up before a query) a service under another key than
        the pinned one is refused, the replica unchanged."""
        t0 = time.perf_counter()
        rep = self._replica(peer, service)
        pin = rep.pinned if rep is not None else self._pinned(peer, service)
        if repin or pin is None:
            info = await self._call(peer, {"type": "pir_info", "service": service})
            pin = PinnedKey.from_header(info, f"{peer}'s PIR info")
            self._pin(peer, service, pin)
            self._bits.pop((peer, service), None)
            if "private" not in (info.get("modes") or []):
                out = {"peer": peer, "service": service, **pin.to_json(), "messages": 1}
                out.update({k: info.get(k) for k in ("version", "rows", "bucket_bits")})
                self.storage.log("pir_key_pinned", out, actor=actor)
                return {**out, "seconds": round(time.perf_counter() - t0, 3)}
        have = {"key_id": rep.key_id, "version": rep.version} if rep else None
        req: dict[str, Any] = {
            "type": "pir_sync",
            "service": service,
            "have": have,
            "snapshot": None,
        }
        pages = 0
        while True:
            reply = await self._call(peer, req)
            if reply.get("key_id") != pin.key_id:
                raise wire.KeyChangedError(
                    f"{peer!r} serves {service!r} under another key than the pinned "
                    f"{pin.key_id!r}: sync it to pin the new key"
                )
            rep, nxt = await asyncio.to_thread(replica_sync.apply_sync, rep, reply, peer)
            pages += 1
            if nxt is None:
                break
            req = {**req, "have": None, "snapshot": nxt}
        assert rep is not None
        self._replicas[(peer, service)] = rep
        await asyncio.to_thread(self._save_replica, peer, service, rep)
        out = {
            "peer": peer,
            "service": service,
            **rep.meta(),
            "messages": pages,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        self.storage.log(
            "pir_replica_synced", {k: out[k] for k in out if k != "layout"}, actor=actor
        )
        return out

    # -- the lattice mode's hint ---------------------------------------------------------------

    def _hint(self, peer: str, service: str) -> lattice_wire.Hint | None:
        key = (peer, service)
        if key in self._hints:
            return self._hints[key]
        folder = self.root / peer / service
        if not (folder / "hint.json").is_file():
            return None
        try:
            meta = json.loads((folder / "hint.json").read_text())
            layout = LatticeLayout.from_json(meta["layout"], f"hint of {peer}/{service}")
            values = np.load(folder / "hint.npy")
            version = int(meta["version"])
        except (OSError, ValueError, KeyError, TypeError, DataError):
            return None  # a damaged copy is copied again
        if values.dtype != np.uint32 or values.shape != (layout.rows, lattice_wire.LWE_N):
            return None
        hint = lattice_wire.Hint(layout, version, meta.get("labels"), values)
        self._hints[key] = hint
        return hint

    def _save_hint(self, peer: str, service: str, hint: lattice_wire.Hint) -> None:
        folder = self.root / peer / service
        with self._saving:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "hint.npy.tmp"
            with open(tmp, "wb") as f:
                np.save(f, hint.values)
            tmp.replace(folder / "hint.npy")
            write_json_atomic(hint.meta(), folder / "hint.json")

    async def sync_hint(
        self, peer: str, service: str, actor: str = "node", *, repin: bool = True
    ) -> dict[str, Any]:
        """Bring this node's lattice hint of ``peer``'s ``service`` up to date: copied whole,
        or caught up by the rows changed since its version. An explicit sync (``repin``)
        also pins the OPRF key the service names now; the automatic one before a query
        never changes the pinned key."""
        t0 = time.perf_counter()
        if repin:
            info = await self._call(peer, {"type": "pir_info", "service": service})
            self._pin(peer, service, PinnedKey.from_header(info, f"{peer}'s PIR info"))
        before = self._hint(peer, service)
        sync = lattice_wire.HintSync(service, before, peer)
        req: dict[str, Any] | None = sync.request()
        kind = "current"
        while req is not None:
            reply = await self._call(peer, req)
            if reply.get("offset") == 0:
                kind = str(reply.get("kind"))
            req = await asyncio.to_thread(sync.take, reply)
        hint = sync.hint
        assert hint is not None
        self._hints[(peer, service)] = hint
        if before is None or (hint.layout, hint.version) != (before.layout, before.version):
            await asyncio.to_thread(self._save_hint, peer, service, hint)
        out = {
            "peer": peer,
            "service": service,
            "mode": "lattice",
            "layout_id": hint.layout.layout_id,
            "version": hint.version,
            "kind": kind,
            "hint_bytes": int(hint.values.nbytes),
            "bytes": sync.bytes,
            "messages": sync.messages,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        self.storage.log("pir_hint_synced", out, actor=actor)
        return out

    # -- queries -----------------------------------------------------------------------------

    async def _call(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A PIR request to ``peer``; a refusal becomes the typed error it names."""
        return await self.dataplane.call(peer, msg, _REFUSALS)

    async def query(
        self, peer: str, service: str, ids: list[str], mode: str = "private", actor: str = "node"
    ) -> dict[str, Any]:
        """Look ``ids`` up in ``peer``'s service; the peer learns nothing about them (private
        mode) or only their buckets (bucket mode, whose answer is read in pages)."""
        t0 = time.perf_counter()
        if mode not in MODES:
            raise ConfigError(f"PIR mode {mode!r}: use {', '.join(MODES)}")
        if not ids or len(ids) > wire.MAX_BATCH:
            raise DataError(f"a PIR query asks 1 to {wire.MAX_BATCH} IDs")
        traffic: dict[str, int] = {}
        if mode == "private":
            answers, version = await self._private(peer, service, ids, actor, traffic)
        elif mode == "lattice":
            try:
                answers, version = await self._lattice(peer, service, ids, actor, traffic)
            except lattice_wire.StaleHintError:
                # the service changed between the ticket and the vectors: sync, ask once more
                # (a new query, metered as one)
                await self.sync_hint(peer, service, actor)
                answers, version = await self._lattice(peer, service, ids, actor, traffic)
        else:
            try:
                answers, version = await self._bucket(peer, service, ids)
            except wire.RebucketedError:
                self._bits.pop((peer, service), None)  # republished: ask once more
                answers, version = await self._bucket(peer, service, ids)
        self.storage.log(
            "pir_queried",
            {
                "peer": peer,
                "service": service,
                "mode": mode,
                "ids": len(ids),
                "ids_sha256": [hashlib.sha256(i.encode()).hexdigest() for i in ids[:16]],
            },
            actor=actor,
        )
        out = {
            "peer": peer,
            "service": service,
            "mode": mode,
            "version": version,
            "results": [{"id": a.id, "found": a.found, "label": a.label} for a in answers],
            "milliseconds": round((time.perf_counter() - t0) * 1000, 2),
        }
        if traffic:
            out["traffic"] = traffic
        return out

    async def _lattice(
        self, peer: str, service: str, ids: list[str], actor: str, traffic: dict[str, int]
    ) -> tuple[list[Answer], Any]:
        """Blind, have the OPRF evaluated (the metered step, with a ticket), read each ID's two
        columns by lattice PIR under the ticket, open the rows found.

        ``traffic`` gathers the bytes of the query's messages (JSON, both ways) and their
        count."""
        what = f"{peer}'s PIR answer"
        pin = await self._first_pin(peer, service)
        hint = self._hint(peer, service)
        if hint is None:
            await self.sync_hint(peer, service, actor, repin=False)
            hint = self._hint(peer, service)
        q, msg = wire.make_query(service, ids, "lattice", oprf_mode=pin.oprf_mode)
        reply = await self._counted(peer, msg, traffic)
        lat = reply.get("lattice")
        if not isinstance(lat, dict) or not isinstance(lat.get("ticket"), dict):
            raise DataError(f"{what}: no lattice ticket")
        if hint is None or (lat.get("layout_id"), lat.get("version")) != (
            hint.layout.layout_id,
            hint.version,
        ):
            # the service changed since the copy
            await self.sync_hint(peer, service, actor, repin=False)
            hint = self._hint(peer, service)
            assert hint is not None
            if (lat.get("layout_id"), lat.get("version")) != (hint.layout.layout_id, hint.version):
                raise lattice_wire.StaleHintError(f"{what}: the service changed during the query")
        outputs = await asyncio.to_thread(wire.finalize, pin, q, reply, what)
        tags, _ = split_outputs(outputs)
        client = hint.client()
        payloads: list[bytes | None] = []
        # IDs a chunk at a time: the vectors in memory stay within QUERY_BYTES
        chunk = max(1, QUERY_BYTES // (2 * 4 * hint.layout.cols))
        for lo in range(0, len(tags), chunk):
            part_tags = tags[lo : lo + chunk]
            vectors, state = await asyncio.to_thread(client.queries, part_tags)
            answers = np.zeros((len(vectors), hint.layout.rows), np.uint32)
            for m, first, count in lattice_wire.vector_messages(
                service, lat["ticket"], vectors, hint.layout
            ):
                got = await self._counted(peer, m, traffic)
                part = lattice_wire.read_answers(got, count, hint.layout, what)
                answers[first : first + count] += part  # slices of one vector add up
            payloads += await asyncio.to_thread(client.read, state, answers, part_tags)
        labels = reply.get("labels", hint.labels)
        opened = lattice_wire.open_payloads(labels, outputs, ids, payloads, what)
        return opened, hint.version

    async def _counted(
        self, peer: str, msg: dict[str, Any], traffic: dict[str, int]
    ) -> dict[str, Any]:
        reply = await self._call(peer, msg)
        traffic["bytes_up"] = traffic.get("bytes_up", 0) + len(json.dumps(msg))
        traffic["bytes_down"] = traffic.get("bytes_down", 0) + len(json.dumps(reply))
        traffic["messages"] = traffic.get("messages", 0) + 1
        return reply

    async def _private(
        self, peer: str, service: str, ids: list[str], actor: str, traffic: dict[str, int]
    ) -> tuple[list[Answer], Any]:
        rep = self._replica(peer, service)
        if rep is None:
            await self.sync(peer, service, actor, repin=self._pinned(peer, service) is None)
            rep = self._replica(peer, service)
        assert rep is not None
        q, msg = wire.make_query(service, ids, "private", oprf_mode=rep.oprf_mode)
        reply = await self._counted(peer, msg, traffic)
        if reply.get("key_id") == rep.key_id and reply.get("version") != rep.version:
            # the table changed since the last copy (under the same key: another key is
            # refused by read_answer, until an explicit sync)
            await self.sync(peer, service, actor, repin=False)
            rep = self._replica(peer, service)
        answers = await asyncio.to_thread(wire.read_answer, q, reply, rep, peer)
        return answers, reply.get("version")

    async def _bucket(self, peer: str, service: str, ids: list[str]) -> tuple[list[Answer], Any]:
        bits = await self._bucket_bits(peer, service)
        pin = self._pinned(peer, service)
        assert pin is not None  # pinned with the bucket bits at the latest
        q, msg = wire.make_query(service, ids, "bucket", bits, oprf_mode=pin.oprf_mode)
        reply = await self._call(peer, msg)
        if reply.get("key_id") == pin.key_id and reply.get("bucket_bits") != bits:
            raise wire.RebucketedError(f"{peer!r} re-bucketed {service!r}: ask again")
        got = await asyncio.to_thread(wire.BucketAnswer, q, reply, peer, pin)
        while got.next is not None:
            page = await self._call(
                peer, {"type": "pir_query", "service": service, "page": got.next}
            )
            if page.get("key_id") != reply.get("key_id"):
                raise DataError(f"{peer!r} republished {service!r} during the answer: ask again")
            await asyncio.to_thread(got.take, page)
        return await asyncio.to_thread(got.answers), got.version

    async def _first_pin(self, peer: str, service: str) -> PinnedKey:
        """The key pinned for ``peer``'s ``service``, pinned now from its info at first use."""
        pin = self._pinned(peer, service)
        if pin is None:
            info = await self._call(peer, {"type": "pir_info", "service": service})
            pin = PinnedKey.from_header(info, f"{peer}'s PIR info")
            self._pin(peer, service, pin)
        return pin

    async def _bucket_bits(self, peer: str, service: str) -> int:
        key = (peer, service)
        if key not in self._bits:
            info = await self._call(peer, {"type": "pir_info", "service": service})
            bits = info.get("bucket_bits")
            if not isinstance(bits, int) or not 0 <= bits <= 24:
                raise DataError(f"{peer!r} sent no bucket size for {service!r}")
            if self._pinned(peer, service) is None:  # first use: pin the key it names
                self._pin(peer, service, PinnedKey.from_header(info, f"{peer}'s PIR info"))
            self._bits[key] = bits
        return self._bits[key]
