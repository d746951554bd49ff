"""ECDH-PSI for two or more parties (Diffie-Hellman-style commutative masking).

Each party ``p`` draws a fresh secret scalar ``k_p`` per session. An item ``x`` is hashed to a
group element ``H(x)`` and masked by every party in turn; because scalar multiplication
commutes, ``H(x)^{k_1 k_2 ... k_n}`` is the same value whichever party holds ``x``, and equal
values reveal common items while everything else stays a pseudo-random group element.

Topology: a star around the *leader*, the first of the parties that receive the result. Every
other party sends its own set, masked by its key and in a secret random order, to the leader;
the leader masks each set with its key and routes it through the remaining parties (each adds
its key) until it carries all ``n`` keys. The party adding the last key truncates the values
to ``t`` bytes, ``t*8 >= log2(n_leader) + log2(n_other) + 40`` as the interconnection standard
allows. The leader intersects the fully masked sets and tells each receiver which of the
positions *it* sent are common; a party that is not a receiver learns only the size.

*Cardinality only* (``cardinality_only=True``): nobody learns the members, everyone learns
the size. The first party the leader's own set passes through collects that whole set and
masks it back in a secret random order, so the leader can no longer tell which of its own
values is which; the other sets arrive in their owners' secret orders as always. The leader
counts the common values and tells everyone the count, nothing else (the PSI-CA of De
Cristofaro, Gasti and Tsudik, 2012, in this star topology). That party holds the leader's
masked set whole (32 bytes per item) while it shuffles.

Suites: ``curve25519`` (X25519 over SHA-256(item) taken directly as the u-coordinate, the
``<Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X>`` suite of the interconnection standard and
SecretFlow) and ``ristretto255`` (RFC 9496, hash-to-group over expand_message_xmd/SHA-512).

Security model
--------------
Semi-honest (honest-but-curious) parties, under the decisional Diffie-Hellman assumption
with ``H`` modelled as a random oracle; no collusion between parties when ``n >= 3``.
Every received element is decoded and validated (invalid encodings, the identity and
low-order X25519 results are refused), and the parties agree on every parameter before any
data moves.

What it reveals
---------------
* to every party: every party's number of distinct items, and the intersection size;
* to the receivers: the intersection itself (their own rows that are common to all), unless
  ``cardinality_only``: then to nobody;
* to the leader, when ``n >= 3``: also how many items each other party shares with the
  leader and with the intersection of the rest (it holds every fully masked set), as
  SecretFlow's 3-party ECDH-PSI does;
* nothing about non-common items, and nothing about row order (sets travel in a random
  order).

It does not protect against a malicious party (one could, for instance, send the masked set
of someone else's guesses); a later issue adds the malicious variant.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge.crypto import groups as _groups
from rainbridge.errors import ParameterMismatchError, ProtocolViolationError, RainbridgeError
from rainbridge.net.channel import Channel
from rainbridge.protocols.psi.intersect import match, truncation_bytes
from rainbridge.protocols.psi.items import as_items, distinct_ids, to_large_string
from rainbridge.protocols.psi.phases import Phases

PROTOCOL = "ecdh-psi"
VERSION = 1
# Every batch carries (kind, set index, batch index, hop index). Followers send their own set
# and their masking replies on one ordered stream, so the leader reads it with one task.
_HDR = struct.Struct("<BIII")
_OWN, _MASKED, _ROUTED = 0, 1, 2
_ELEMENT = 32


@dataclass(frozen=True)
class EcdhPsiParams:
    """Parameters every party must agree on (checked before any data moves).

    Attributes
    ----------
    curve : str
        ``"curve25519"`` (default) or ``"ristretto255"``.
    receivers : tuple of str, optional
        Parties that learn the intersection; the first is the leader. Default: all parties.
    truncate : bool
        Truncate fully masked values to the standard's bound (default) or keep 32 bytes.
    batch_size : int
        Items per message; bounds the memory in flight.
    cardinality_only : bool
        Every party learns the intersection's size and nobody its members; ``receivers``
        then only picks the leader (the party that counts).
    """

    curve: str = "curve25519"
    receivers: tuple[str, ...] | None = None
    truncate: bool = True
    batch_size: int = 1 << 16
    cardinality_only: bool = False


@dataclass
class PsiResult:
    """What one party learns.

    Attributes
    ----------
    size : int
        Number of distinct items common to all parties.
    indices : numpy.ndarray or None
        Ascending int64 row indices of this party's input whose ID is common (every row of a
        duplicated ID); ``None`` at a party that is not a receiver.
    stats : dict
        Sizes, truncation, bytes and seconds, for reports and benchmarks.
    payload : pyarrow.Table or None
        At the receiver of a payload (RR22): the other party's payload columns, one row per
        entry of ``indices``, aligned to it.
    """

    size: int
    indices: np.ndarray | None
    stats: dict[str, Any] = field(default_factory=dict)
    payload: pa.Table | None = None


ProgressFn = Callable[[float], None]


@dataclass
class _Plan:
    party: str
    parties: list[str]
    leader: str
    receivers: list[str]
    sizes: dict[str, int]
    batch: int
    t: int
    cardinality_only: bool = False

    def learns_members(self, p: str) -> bool:
        return p in self.receivers and not self.cardinality_only

    @property
    def others(self) -> list[str]:
        return [p for p in self.parties if p != self.leader]

    def chain(self, s: str) -> list[str]:
        return [p for p in self.others if p != s]

    def nbatches(self, s: str) -> int:
        return math.ceil(self.sizes[s] / self.batch)

    def batch_len(self, s: str, b: int) -> int:
        return min(self.batch, self.sizes[s] - b * self.batch)

    def set_order(self) -> list[str]:
        return [self.leader, *self.others]


def _config(party: str, peers: Sequence[str], params: EcdhPsiParams) -> dict[str, Any]:
    parties = sorted({party, *peers})
    receivers = list(params.receivers) if params.receivers else parties
    unknown = [r for r in receivers if r not in parties]
    if unknown:
        raise ParameterMismatchError(
            f"PSI receivers {unknown} are not parties of this PSI ({', '.join(parties)})"
        )
    if not 1 <= params.batch_size <= 1 << 22:
        raise ParameterMismatchError("PSI batch_size must be between 1 and 4194304")
    _groups.get_suite(params.curve)  # refuses an unknown curve before anything is sent
    return {
        "protocol": PROTOCOL,
        "version": VERSION,
        "curve": params.curve,
        "parties": parties,
        "receivers": receivers,
        "leader": receivers[0],
        "truncate": bool(params.truncate),
        "batch_size": int(params.batch_size),
        "cardinality_only": bool(params.cardinality_only),
    }


def _compare(mine: dict[str, Any], theirs: Any, peer: str) -> None:
    if not isinstance(theirs, dict):
        raise ProtocolViolationError(f"peer {peer!r} sent a malformed PSI hello")
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        detail = "; ".join(f"{k}: ours {mine.get(k)!r}, theirs {theirs.get(k)!r}" for k in diff)
        raise ParameterMismatchError(f"PSI parameters differ from peer {peer!r}: {detail}")


async def run_role(
    party: str,
    channels: Mapping[str, Channel],
    ids: pa.Array | pa.ChunkedArray,
    params: EcdhPsiParams | None = None,
    *,
    progress: ProgressFn | None = None,
) -> PsiResult:
    """Run this party's role of ECDH-PSI.

    Parameters
    ----------
    party : str
        This party's name.
    channels : Mapping[str, Channel]
        One channel per other party of the PSI, keyed by its name.
    ids : pyarrow string array
        This party's IDs (any UTF-8, up to 256 bytes; duplicates allowed).
    params : EcdhPsiParams
        Must be equal at every party.
    progress : callable, optional
        Called with the fraction of this party's work done.

    Returns
    -------
    PsiResult
    """
    params = params or EcdhPsiParams()
    if not channels:
        raise ParameterMismatchError("PSI needs at least two parties")
    t0 = time.perf_counter()
    ph = Phases()
    config = _config(party, list(channels), params)
    with ph("group"):
        ids = to_large_string(ids)
        grouped = distinct_ids(ids)  # duplicates count once and travel once
    uniq = grouped.values
    leader = config["leader"]
    if party != leader and leader not in channels:
        raise ParameterMismatchError(f"PSI leader {leader!r} has no channel at {party!r}")

    t_hello = time.perf_counter()
    if party == leader:
        sizes = {party: len(uniq)}
        for peer, ch in channels.items():
            hello = await ch.recv_json("psi/hello")
            _compare(config, hello.get("config") if isinstance(hello, dict) else None, peer)
            n = hello.get("n")
            if not isinstance(n, int) or n < 0 or n > 1 << 40:
                raise ProtocolViolationError(f"peer {peer!r} sent an invalid PSI set size")
            sizes[peer] = n
        for ch in channels.values():
            await ch.send_json("psi/plan", {"config": config, "sizes": sizes})
    else:
        ch = channels[leader]
        await ch.send_json("psi/hello", {"config": config, "n": len(uniq)})
        plan_msg = await ch.recv_json("psi/plan")
        _compare(config, plan_msg.get("config") if isinstance(plan_msg, dict) else None, leader)
        sizes = plan_msg.get("sizes")
        if (
            not isinstance(sizes, dict)
            or sorted(sizes) != config["parties"]
            or not all(isinstance(v, int) and 0 <= v <= 1 << 40 for v in sizes.values())
            or sizes[party] != len(uniq)
        ):
            raise ProtocolViolationError(f"leader {leader!r} sent an invalid PSI plan")

    ph.add("hello", time.perf_counter() - t_hello)
    others_max = max(v for k, v in sizes.items() if k != leader)
    t = truncation_bytes(sizes[leader], others_max) if config["truncate"] else _ELEMENT
    plan = _Plan(
        party=party,
        parties=config["parties"],
        leader=leader,
        receivers=config["receivers"],
        sizes=sizes,
        batch=config["batch_size"],
        t=t,
        cardinality_only=config["cardinality_only"],
    )
    suite = _groups.get_suite(config["curve"])
    key = suite.random_scalar()
    total_work = max(1, sum(sizes.values()))
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(1.0, done[0] / total_work))

    runner = _Leader if party == leader else _Follower
    role = runner(plan, channels, suite, key, uniq, advance)
    role.phases = ph
    try:
        with ph("stream (all of the below, overlapped)"):
            size, common = await role.run()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    with ph("rows"):
        indices = grouped.rows(common) if common is not None else None
    if config["cardinality_only"]:
        indices = None
    return PsiResult(
        size=size,
        indices=indices,
        stats={
            "protocol": PROTOCOL,
            "curve": config["curve"],
            "party": party,
            "leader": leader,
            "rows": len(ids),
            "distinct": len(uniq),
            "sizes": sizes,
            "truncation_bytes": t,
            "intersection": size,
            "bytes_sent": sum(c.bytes_sent for c in channels.values()),
            "bytes_received": sum(c.bytes_received for c in channels.values()),
            "seconds": round(time.perf_counter() - t0, 3),
            "phases": ph.as_dict(),
        },
    )


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed task group: the first typed one, else the first."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    typed = [e for e in leaves if isinstance(e, RainbridgeError)]
    return (typed or leaves)[0]


class _Role:
    def __init__(
        self,
        plan: _Plan,
        channels: Mapping[str, Channel],
        suite: Any,
        key: bytes,
        uniq: pa.Array,
        advance: Callable[[int], None],
    ) -> None:
        self.plan = plan
        self.channels = channels
        self.suite = suite
        self.key = key
        self.uniq = uniq
        self.advance = advance
        # Frames of two messages must not interleave on one channel.
        self.send_locks = {p: asyncio.Lock() for p in channels}
        self.phases = Phases()

    async def send(self, peer: str, tag: str, payload: bytes | memoryview) -> None:
        async with self.send_locks[peer]:
            await self.channels[peer].send(tag, payload)

    async def hash_mul(self, arr: pa.Array) -> bytes:
        items = as_items(arr)
        out: bytes = await asyncio.to_thread(
            self.phases.timed,
            "core hash+mul",
            self.suite.hash_mul,
            self.key,
            items.data,
            items.offsets,
        )
        self.advance(len(arr))
        return out

    async def mul(self, points: bytes | memoryview) -> bytes:
        out: bytes = await asyncio.to_thread(
            self.phases.timed, "core mul", self.suite.mul, self.key, points
        )
        self.advance(len(points) // _ELEMENT)
        return out

    def truncate(self, values: bytes) -> bytes:
        if self.plan.t == _ELEMENT:
            return values
        with self.phases("truncate"):
            arr = np.frombuffer(values, dtype=np.uint8).reshape(-1, _ELEMENT)
            return np.ascontiguousarray(arr[:, : self.plan.t]).tobytes()

    def check_len(self, peer: str, what: str, got: int, count: int, width: int) -> None:
        if got != count * width:
            raise ProtocolViolationError(
                f"peer {peer!r} sent a {what} batch of {got} bytes; expected {count * width}"
            )

    async def run(self) -> tuple[int, np.ndarray | None]:
        raise NotImplementedError


class _Leader(_Role):
    """Routes every set through every party, then intersects."""

    async def run(self) -> tuple[int, np.ndarray | None]:
        plan = self.plan
        order = plan.set_order()
        self.full = {s: np.empty((plan.sizes[s], plan.t), dtype=np.uint8) for s in order}
        # hop queues: (set, hop) -> batches coming back from chain[hop]
        self.queues: dict[tuple[str, int], asyncio.Queue[tuple[int, bytes]]] = {
            (s, h): asyncio.Queue() for s in order for h in range(len(plan.chain(s)))
        }
        # Bounded: a follower's own set arrives faster than the leader masks it; the bound
        # keeps memory flat (back pressure reaches the follower through the socket).
        self.own: dict[str, asyncio.Queue[tuple[int, bytes]]] = {
            c: asyncio.Queue(maxsize=4) for c in plan.others
        }
        async with asyncio.TaskGroup() as tg:
            for c in plan.others:
                tg.create_task(self.demux(c))
            for s in order:
                tg.create_task(self.route_set(s))
        return await self.finish()

    async def demux(self, c: str) -> None:
        """Read everything follower ``c`` sends: its own set, then replies, interleaved."""
        plan = self.plan
        expect = {s: plan.nbatches(s) for s in plan.set_order() if c in plan.chain(s)}
        seen = dict.fromkeys(expect, 0)
        own_seen = 0
        for _ in range(sum(expect.values()) + plan.nbatches(c)):
            msg = await self.channels[c].recv("psi/up")
            if len(msg) < _HDR.size:
                raise ProtocolViolationError(f"peer {c!r} sent a truncated PSI batch")
            kind, si, b, hop = _HDR.unpack_from(msg)
            body = memoryview(msg)[_HDR.size :]
            if kind == _OWN:
                if si != plan.parties.index(c) or b != own_seen or hop != 0:
                    raise ProtocolViolationError(f"peer {c!r} sent an unexpected PSI batch")
                own_seen += 1
                self.check_len(c, "masked", len(body), plan.batch_len(c, b), _ELEMENT)
                await self.own[c].put((b, bytes(body)))
                continue
            s = plan.parties[si] if si < len(plan.parties) else None
            if (
                kind != _MASKED
                or s not in expect
                or seen[s] != b
                or plan.chain(s)[hop : hop + 1] != [c]
            ):
                raise ProtocolViolationError(f"peer {c!r} sent an unexpected PSI batch")
            seen[s] += 1
            final = hop == len(plan.chain(s)) - 1
            width = plan.t if final else _ELEMENT
            self.check_len(c, "masked", len(body), plan.batch_len(s, b), width)
            await self.queues[(s, hop)].put((b, bytes(body)))

    async def source(self, s: str) -> Any:
        """Batches of set ``s`` carrying the leader's key (and the owner's)."""
        plan = self.plan
        if s == plan.leader:
            for b in range(plan.nbatches(s)):
                lo = b * plan.batch
                yield b, await self.hash_mul(self.uniq.slice(lo, plan.batch_len(s, b)))
        else:
            for _ in range(plan.nbatches(s)):
                b, values = await self.own[s].get()
                yield b, await self.mul(values)

    async def route_set(self, s: str) -> None:
        plan = self.plan
        chain = plan.chain(s)
        si = plan.parties.index(s)
        if not chain:
            async for b, values in self.source(s):
                self.store(s, b, self.truncate(values))
            return

        async def feed_first() -> None:
            async for b, values in self.source(s):
                await self.send(chain[0], "psi/mask", _HDR.pack(_ROUTED, si, b, 0) + values)

        async def forward(hop: int) -> None:
            q = self.queues[(s, hop)]
            for _ in range(plan.nbatches(s)):
                b, values = await q.get()
                if hop + 1 < len(chain):
                    nxt = chain[hop + 1]
                    await self.send(nxt, "psi/mask", _HDR.pack(_ROUTED, si, b, hop + 1) + values)
                else:
                    self.store(s, b, values)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed_first())
            for hop in range(len(chain)):
                tg.create_task(forward(hop))

    def store(self, s: str, b: int, values: bytes) -> None:
        lo = b * self.plan.batch
        arr = np.frombuffer(values, dtype=np.uint8).reshape(-1, self.plan.t)
        self.full[s][lo : lo + len(arr)] = arr

    async def finish(self) -> tuple[int, np.ndarray | None]:
        plan = self.plan
        mine = self.full[plan.leader]
        in_all = np.ones(len(mine), dtype=bool)
        pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for s in plan.others:
            ii, jj = await asyncio.to_thread(self.phases.timed, "match", match, mine, self.full[s])
            # distinct IDs have distinct masked values: a value matched twice was repeated
            # by a peer, and would count (or name) one common ID as several
            if (len(ii) > 1 and bool((ii[1:] == ii[:-1]).any())) or len(np.unique(jj)) != len(jj):
                raise ProtocolViolationError(
                    f"the masked values of {s!r}'s or this party's set repeat: a peer deviated"
                )
            pairs[s] = (ii, jj)
            hit = np.zeros(len(mine), dtype=bool)
            hit[ii] = True
            in_all &= hit
        size = int(in_all.sum())
        for s in plan.others:
            ii, jj = pairs[s]
            positions = np.sort(jj[in_all[ii]]) if plan.learns_members(s) else np.zeros(0, np.int64)
            payload = struct.pack("<Q", size) + positions.astype("<i8").tobytes()
            await self.send(s, "psi/result", payload)
        # cardinality only: in_all is over positions the leader cannot link to its rows
        return size, (in_all if plan.learns_members(plan.leader) else None)


class _Follower(_Role):
    """Sends its own set in a secret random order and adds its key to routed sets."""

    async def run(self) -> tuple[int, np.ndarray | None]:
        n = len(self.uniq)
        # A secret random order: positions the leader later names reveal nothing about rows.
        self.perm = np.random.default_rng(secrets.randbits(128)).permutation(n)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.send_own())
            tg.create_task(self.serve())
        return await self.result()

    async def send_own(self) -> None:
        plan = self.plan
        me = plan.party
        for b in range(plan.nbatches(me)):
            lo = b * plan.batch
            # Taken batch by batch, so the shuffled set is never held whole.
            with self.phases("shuffle (take)"):
                rows = pa.array(self.perm[lo : lo + plan.batch_len(me, b)])
                batch = self.uniq.take(rows)
            values = await self.hash_mul(batch)
            header = _HDR.pack(_OWN, plan.parties.index(me), b, 0)
            await self.send(plan.leader, "psi/up", header + values)

    async def serve(self) -> None:
        plan = self.plan
        me = plan.party
        ch = self.channels[plan.leader]
        expect = {s: plan.nbatches(s) for s in plan.set_order() if me in plan.chain(s)}
        seen = dict.fromkeys(expect, 0)
        # cardinality only: the leader's own set, first hop, is held whole and shuffled
        shuffle = plan.cardinality_only and plan.chain(plan.leader)[:1] == [me]
        held: list[bytes] = []
        for _ in range(sum(expect.values())):
            msg = await ch.recv("psi/mask")
            if len(msg) < _HDR.size:
                raise ProtocolViolationError(f"leader {plan.leader!r} sent a truncated batch")
            kind, si, b, hop = _HDR.unpack_from(msg)
            s = plan.parties[si] if si < len(plan.parties) else None
            if (
                kind != _ROUTED
                or s not in expect
                or seen[s] != b
                or plan.chain(s)[hop : hop + 1] != [me]
            ):
                raise ProtocolViolationError(f"leader {plan.leader!r} sent an unexpected batch")
            seen[s] += 1
            body = memoryview(msg)[_HDR.size :]
            self.check_len(plan.leader, "routed", len(body), plan.batch_len(s, b), _ELEMENT)
            if shuffle and s == plan.leader:
                held.append(bytes(body))
                if seen[s] == expect[s]:
                    await self.shuffle_back(si, b"".join(held))
                    held = []
                continue
            await self.reply(s, si, b, hop, body)

    async def reply(self, s: str, si: int, b: int, hop: int, body: bytes | memoryview) -> None:
        values = await self.mul(body)
        if hop == len(self.plan.chain(s)) - 1:
            values = self.truncate(values)
        await self.send(self.plan.leader, "psi/up", _HDR.pack(_MASKED, si, b, hop) + values)

    async def shuffle_back(self, si: int, whole: bytes) -> None:
        """Mask the leader's whole set and return it in a secret random order."""
        plan = self.plan
        arr = np.frombuffer(whole, dtype=np.uint8).reshape(-1, _ELEMENT)
        perm = np.random.default_rng(secrets.randbits(128)).permutation(len(arr))
        arr = arr[perm]
        for b in range(plan.nbatches(plan.leader)):
            lo = b * plan.batch
            chunk = arr[lo : lo + plan.batch_len(plan.leader, b)].tobytes()
            await self.reply(plan.leader, si, b, 0, chunk)

    async def result(self) -> tuple[int, np.ndarray | None]:
        plan = self.plan
        with self.phases("wait result"):
            msg = await self.channels[plan.leader].recv("psi/result")
        n = len(self.uniq)
        if len(msg) < 8 or (len(msg) - 8) % 8:
            raise ProtocolViolationError(f"leader {plan.leader!r} sent a malformed PSI result")
        (size,) = struct.unpack_from("<Q", msg)
        positions = np.frombuffer(msg, dtype="<i8", offset=8)
        receiver = plan.learns_members(plan.party)
        if size > n or (receiver and len(positions) != size) or (not receiver and len(positions)):
            raise ProtocolViolationError(f"leader {plan.leader!r} sent an inconsistent result")
        if len(positions) and (
            positions.min() < 0 or positions.max() >= n or np.any(np.diff(positions) <= 0)
        ):
            raise ProtocolViolationError(f"leader {plan.leader!r} sent invalid result positions")
        if not receiver:
            return int(size), None
        common = np.zeros(n, dtype=bool)
        common[self.perm[positions.astype(np.int64)]] = True
        return int(size), common
