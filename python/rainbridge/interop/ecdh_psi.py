"""ECDH-PSI of the interconnection standard (PPCA 9—2023), two parties, over :class:`IcLink`.

Handshake (§7): the party of rank 1 sends a ``HandshakeRequest`` (version 2, ECDH-PSI, the
ECC protocol family with its proposed suites, point formats and whether it can truncate,
and a ``PsiDataIoProposal`` with its item count and who receives the result) to rank 0,
which decides and answers a ``HandshakeResponse``: either ``OK`` with the chosen suite,
point format, truncation length and result receiver, or the standard's refusal code
(``UNSUPPORTED_VERSION``, ``UNSUPPORTED_ALGO``, ``UNSUPPORTED_PARAMS``,
``HANDSHAKE_REFUSED``). Both messages travel as P2P messages on the main channel.

Body (§5, as the deployed implementation orders it): each party masks its distinct IDs in
batches (``enc``, ``EcdhPsiCipherBatch`` on the main channel, ending with an empty batch
flagged last); each masks the other's batches again (``dual.enc``), truncated to the agreed
length, and sends them back on sub-channel ``{channel}-0`` when the other party receives
the result; a receiver compares its own dual-masked values with the other's.

Suites, both mandatory in the standard: ``<CURVE25519, SHA_256, DIRECT_HASH_AS_POINT_X>``
with the x-only point format (the core's X25519 over SHA-256(ID) as the u-coordinate), and
``<SM2, SM3, TRY_AND_INCREMENT>`` with X9.62 compressed points (the core's SM2, hashing as
the deployed implementation does: SM3 of the ID as x, re-hashed until a point with even y
exists). The second-stage values are cut to the last ``bits/8`` bytes of the serialised
point, as the deployed implementation does (the standard's text says "from the low bits";
for little-endian X25519 coordinates the last bytes are the high ones, for SM2's
big-endian X the low ones — see docs/interop.md).

Security model and what it reveals: as native ECDH-PSI (semi-honest, DDH, SHA-256 as a
random oracle): each party learns the other's number of distinct IDs; the receivers learn
which of their own rows are common; a party that does not receive learns nothing else, not
even the size. Our own IDs are sent in a secret random order, so the positions a receiver
can match say nothing about our row order.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge import _core
from rainbridge.crypto import groups as _groups
from rainbridge.errors import InvalidElementError, ProtocolViolationError
from rainbridge.interop import messages as m
from rainbridge.interop.link import IcLink
from rainbridge.interop.pb import decode, encode, pack_any, unpack_any
from rainbridge.protocols.psi.ecdh import PsiResult
from rainbridge.protocols.psi.intersect import match
from rainbridge.protocols.psi.items import as_items, distinct_ids, to_large_string

#: The suites this side speaks, by name, with their handshake triple and point format.
SUITES: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "curve25519": (
        (
            m.CURVE_TYPE_CURVE25519,
            m.HASH_TYPE_SHA_256,
            m.HASH_TO_CURVE_STRATEGY_DIRECT_HASH_AS_POINT_X,
        ),
        m.POINT_OCTET_FORMAT_UNCOMPRESSED,
        32,
    ),
    "sm2": (
        (m.CURVE_TYPE_SM2, m.HASH_TYPE_SM3, m.HASH_TO_CURVE_STRATEGY_TRY_AND_INCREMENT),
        m.POINT_OCTET_FORMAT_X962_COMPRESSED,
        33,
    ),
}


class _Sm2:
    """SM2 in the shape of :class:`~rainbridge.crypto.groups.GroupSuite` (33-byte points)."""

    name = "sm2"

    def random_scalar(self) -> bytes:
        return bytes(_core.sm2_ecdh_random_scalar())

    def hash_mul(self, scalar: bytes, data: Any, offsets: Any) -> bytes:
        return bytes(_core.sm2_ecdh_hash_mul(scalar, data, offsets))

    def mul(self, scalar: bytes, points: Any) -> bytes:
        try:
            return bytes(_core.sm2_ecdh_mul(scalar, points))
        except (_core.InvalidElementError, ValueError) as exc:
            raise InvalidElementError(f"sm2: {exc}") from None


def _suite(name: str) -> Any:
    return _Sm2() if name == "sm2" else _groups.get_suite(name)


_CODES = {v: k for k, v in vars(m).items() if isinstance(v, int) and v >= 31100000}


class InterconnectionError(ProtocolViolationError):
    """The peer broke the interconnection protocol, or refused ours; ``ic_code`` is the
    standard's error code (31100xxx)."""

    def __init__(self, ic_code: int, message: str) -> None:
        super().__init__(f"{_CODES.get(ic_code, ic_code)} ({ic_code}): {message}")
        self.ic_code = ic_code


@dataclass(frozen=True)
class IcPsiParams:
    """This side's proposal.

    Attributes
    ----------
    result_to_rank : int
        ``-1``: both parties learn the intersection; else the rank that does. Must match
        the other party's.
    suites : tuple of str
        Suites this side accepts, most preferred first (``curve25519``, ``sm2``).
    truncation : bool
        Whether this side can truncate second-stage values.
    batch_size : int
        IDs per ``enc`` batch (SecretFlow's default is 4096).
    """

    result_to_rank: int = -1
    suites: tuple[str, ...] = ("curve25519", "sm2")
    truncation: bool = True
    batch_size: int = 4096


@dataclass(frozen=True)
class Agreement:
    suite: str
    point_format: int
    bits: int  # -1: no truncation
    result_to_rank: int

    def width(self) -> int:
        return SUITES[self.suite][2] if self.bits < 0 else self.bits // 8


def _request(rank: int, n: int, params: IcPsiParams) -> dict[str, Any]:
    suits = [SUITES[s][0] for s in params.suites]
    formats = sorted({SUITES[s][1] for s in params.suites})
    ecc = {
        "supported_versions": [1],
        "ec_suits": [{"curve": c, "hash": h, "hash2curve_strategy": s} for c, h, s in suits],
        "point_octet_formats": formats,
        "support_point_truncation": params.truncation,
    }
    io = {"supported_versions": [1], "item_num": n, "result_to_rank": params.result_to_rank}
    return {
        "version": m.HANDSHAKE_VERSION,
        "requester_rank": rank,
        "supported_algos": [m.ALGO_TYPE_ECDH_PSI],
        "protocol_families": [m.PROTOCOL_FAMILY_ECC],
        "protocol_family_params": [pack_any(m.ECC_PROTOCOL_PROPOSAL, ecc)],
        "io_param": pack_any(m.PSI_DATA_IO_PROPOSAL, io),
    }


def truncation_bits(n0: int, n1: int) -> int:
    """Bits kept of a second-stage value: ⌈log2 n0⌉ + ⌈log2 n1⌉ + 40, in whole bytes.

    The standard asks for at least 30 bits of false-positive margin; we keep our 40."""
    need = math.ceil(math.log2(max(n0, 2))) + math.ceil(math.log2(max(n1, 2))) + 40
    return min(256, 8 * math.ceil(need / 8))


def decide(request: dict[str, Any], n_self: int, params: IcPsiParams) -> Agreement:
    """Rank 0's decision on a request (raises :class:`InterconnectionError` to refuse)."""
    if request.get("version") != m.HANDSHAKE_VERSION:
        raise InterconnectionError(
            m.UNSUPPORTED_VERSION, f"handshake version {request.get('version')}, we speak 2"
        )
    if m.ALGO_TYPE_ECDH_PSI not in request.get("supported_algos", []):
        raise InterconnectionError(m.UNSUPPORTED_ALGO, "the request does not offer ECDH-PSI")
    families = request.get("protocol_families", [])
    if m.PROTOCOL_FAMILY_ECC not in families:
        raise InterconnectionError(m.UNSUPPORTED_PARAMS, "the request offers no ECC family")
    fam = families.index(m.PROTOCOL_FAMILY_ECC)
    params_list = request.get("protocol_family_params", [])
    if fam >= len(params_list):
        raise InterconnectionError(m.INVALID_REQUEST, "ECC family without its parameters")
    try:
        ecc = unpack_any(m.ECC_PROTOCOL_PROPOSAL, params_list[fam], "ECC proposal")
        io = unpack_any(m.PSI_DATA_IO_PROPOSAL, request.get("io_param"), "PSI data proposal")
    except ProtocolViolationError as exc:
        raise InterconnectionError(m.INVALID_REQUEST, str(exc)) from None
    if 1 not in ecc["supported_versions"] or 1 not in io["supported_versions"]:
        raise InterconnectionError(
            m.UNSUPPORTED_VERSION, "ECC or PSI parameter version 1 not offered"
        )
    theirs = [
        (s.get("curve"), s.get("hash"), s.get("hash2curve_strategy")) for s in ecc["ec_suits"]
    ]
    ours = {SUITES[s][0]: s for s in params.suites}
    chosen = next((ours[t] for t in theirs if t in ours), None)
    if chosen is None:
        raise InterconnectionError(
            m.UNSUPPORTED_PARAMS, f"no common suite: they offer {theirs}, we speak {sorted(ours)}"
        )
    fmt = SUITES[chosen][1]
    if fmt not in ecc["point_octet_formats"]:
        raise InterconnectionError(m.UNSUPPORTED_PARAMS, f"point format {fmt} not offered")
    if io["result_to_rank"] != params.result_to_rank or io["result_to_rank"] not in (-1, 0, 1):
        raise InterconnectionError(
            m.UNSUPPORTED_PARAMS,
            f"result receivers differ: theirs {io['result_to_rank']}, ours {params.result_to_rank}",
        )
    n_peer = io["item_num"]
    if not 0 <= n_peer < 1 << 40:
        raise InterconnectionError(m.INVALID_REQUEST, f"item count {n_peer}")
    trunc = ecc["support_point_truncation"] and params.truncation
    bits = truncation_bits(n_self, n_peer) if trunc else -1
    return Agreement(chosen, fmt, bits, params.result_to_rank)


def _response(agreed: Agreement) -> dict[str, Any]:
    c, h, s = SUITES[agreed.suite][0]
    ecc = {
        "version": 1,
        "ec_suit": {"curve": c, "hash": h, "hash2curve_strategy": s},
        "point_octet_format": agreed.point_format,
        "bit_length_after_truncated": agreed.bits,
    }
    return {
        "header": {"error_code": m.OK},
        "algo": m.ALGO_TYPE_ECDH_PSI,
        "protocol_families": [m.PROTOCOL_FAMILY_ECC],
        "protocol_family_params": [pack_any(m.ECC_PROTOCOL_RESULT, ecc)],
        "io_param": pack_any(
            m.PSI_DATA_IO_RESULT, {"version": 1, "result_to_rank": agreed.result_to_rank}
        ),
    }


def read_response(resp: dict[str, Any], params: IcPsiParams) -> Agreement:
    """Rank 1's reading of rank 0's answer (a refusal raises with its code)."""
    header = resp.get("header") or {}
    code = header.get("error_code", 0)
    if code != m.OK:
        raise InterconnectionError(code, f"the peer refused: {header.get('error_msg', '')}")
    try:
        fams = resp.get("protocol_families", [])
        ecc = unpack_any(
            m.ECC_PROTOCOL_RESULT,
            resp["protocol_family_params"][fams.index(m.PROTOCOL_FAMILY_ECC)],
            "ECC result",
        )
        io = unpack_any(m.PSI_DATA_IO_RESULT, resp.get("io_param"), "PSI data result")
    except (ValueError, IndexError, KeyError, ProtocolViolationError) as exc:
        raise InterconnectionError(
            m.INVALID_REQUEST, f"malformed handshake response: {exc}"
        ) from None
    suit = ecc.get("ec_suit") or {}
    triple = (suit.get("curve"), suit.get("hash"), suit.get("hash2curve_strategy"))
    names = {SUITES[s][0]: s for s in params.suites}
    if resp.get("algo") != m.ALGO_TYPE_ECDH_PSI or triple not in names:
        raise InterconnectionError(
            m.UNSUPPORTED_PARAMS, f"the peer chose {triple}, which we did not offer"
        )
    suite = names[triple]
    bits = ecc.get("bit_length_after_truncated", -1)
    size = SUITES[suite][2] * 8
    if ecc.get("point_octet_format") != SUITES[suite][1] or not (
        bits == -1 or (params.truncation and 0 < bits <= size and bits % 8 == 0)
    ):
        raise InterconnectionError(
            m.UNSUPPORTED_PARAMS,
            f"point format {ecc.get('point_octet_format')} or truncation {bits}",
        )
    if io.get("result_to_rank") != params.result_to_rank:
        raise InterconnectionError(m.UNSUPPORTED_PARAMS, "the peer chose other receivers")
    return Agreement(suite, SUITES[suite][1], bits, params.result_to_rank)


async def handshake(link: IcLink, n_self: int, params: IcPsiParams) -> Agreement:
    """Rank 0 decides; rank 1 proposes and reads the decision."""
    if link.rank == 1:
        await link.send(0, encode(m.HANDSHAKE_REQUEST, _request(1, n_self, params)))
        resp = decode(m.HANDSHAKE_RESPONSE, await link.recv(0))
        return read_response(resp, params)
    raw = await link.recv(1)
    try:
        agreed = decide(decode(m.HANDSHAKE_REQUEST, raw), n_self, params)
    except InterconnectionError as exc:
        refusal = {"header": {"error_code": exc.ic_code, "error_msg": str(exc)[:500]}}
        await link.send(1, encode(m.HANDSHAKE_RESPONSE, refusal))
        raise
    except ProtocolViolationError as exc:
        refusal = {"header": {"error_code": m.INVALID_REQUEST, "error_msg": str(exc)[:500]}}
        await link.send(1, encode(m.HANDSHAKE_RESPONSE, refusal))
        raise InterconnectionError(m.INVALID_REQUEST, str(exc)) from None
    await link.send(1, encode(m.HANDSHAKE_RESPONSE, _response(agreed)))
    return agreed


def _batch(kind: str, index: int, values: bytes, count: int) -> bytes:
    return encode(
        m.ECDH_PSI_CIPHER_BATCH,
        {
            "type": kind,
            "batch_index": index,
            "is_last_batch": count == 0,
            "count": count,
            "ciphertext": values,
        },
    )


def _read_batch(raw: bytes, kind: str, index: int, width: int) -> tuple[bytes, bool]:
    try:
        b = decode(m.ECDH_PSI_CIPHER_BATCH, raw)
    except ProtocolViolationError as exc:
        raise InterconnectionError(m.INVALID_REQUEST, str(exc)) from None
    if b["type"] != kind or b["batch_index"] != index:
        raise InterconnectionError(
            m.INVALID_REQUEST,
            f"expected {kind} batch {index}, got {b['type']!r} batch {b['batch_index']}",
        )
    count, data = b["count"], b["ciphertext"]
    if count < 0 or len(data) != count * width or (b["is_last_batch"] != (count == 0)):
        raise InterconnectionError(
            m.INVALID_REQUEST,
            f"{kind} batch {index}: {count} items in {len(data)} bytes, last={b['is_last_batch']}",
        )
    return data, b["is_last_batch"]


async def run_ic_ecdh_psi(
    link: IcLink,
    ids: pa.Array | pa.ChunkedArray,
    params: IcPsiParams | None = None,
) -> PsiResult:
    """Run this party's role (its rank is ``link.rank``, 0 or 1) and return what it learns.

    ``size`` is ``-1`` at a party that does not receive the result (the protocol tells it
    nothing); ``indices`` are its common rows at a receiver.
    """
    params = params or IcPsiParams()
    if link.rank not in (0, 1) or set(link.peers) != {1 - link.rank}:
        raise ValueError("interconnection ECDH-PSI runs between ranks 0 and 1")
    t0 = time.perf_counter()
    grouped = distinct_ids(to_large_string(ids))
    uniq = grouped.values
    n = len(uniq)
    await link.connect()
    agreed = await handshake(link, n, params)
    peer = 1 - link.rank
    me_gets = agreed.result_to_rank in (-1, link.rank)
    peer_gets = agreed.result_to_rank in (-1, peer)
    suite = _suite(agreed.suite)
    key = suite.random_scalar()
    elem = SUITES[agreed.suite][2]
    width = agreed.width()
    perm = np.random.default_rng(secrets.randbits(128)).permutation(n)
    dual_sub = link.sub(0)
    peer_dual: list[np.ndarray] = []
    mine_dual: list[np.ndarray] = []

    async def mask_self() -> None:
        b = 0
        for lo in range(0, n, params.batch_size):
            rows = pa.array(perm[lo : lo + params.batch_size])
            items = as_items(to_large_string(uniq.take(rows)))
            masked = await asyncio.to_thread(suite.hash_mul, key, items.data, items.offsets)
            await link.send(peer, _batch("enc", b, masked, len(rows)))
            b += 1
        await link.send(peer, _batch("enc", b, b"", 0))

    async def mask_peer() -> None:
        b = 0
        while True:
            data, last = _read_batch(await link.recv(peer), "enc", b, elem)
            try:
                dual = await asyncio.to_thread(suite.mul, key, data) if data else b""
            except InvalidElementError as exc:
                raise InterconnectionError(m.INVALID_REQUEST, f"enc batch {b}: {exc}") from None
            cut = np.frombuffer(dual, np.uint8).reshape(-1, elem)[:, elem - width :]
            if me_gets:
                peer_dual.append(np.ascontiguousarray(cut))
            if peer_gets:
                await link.send(peer, _batch("dual.enc", b, cut.tobytes(), len(cut)), dual_sub)
            if last:
                return
            b += 1

    async def recv_dual_self() -> None:
        b = 0
        while True:
            data, last = _read_batch(await link.recv(peer, dual_sub), "dual.enc", b, width)
            mine_dual.append(np.frombuffer(data, np.uint8).reshape(-1, width))
            if last:
                return
            b += 1

    tasks = [mask_self(), mask_peer()] + ([recv_dual_self()] if me_gets else [])
    await asyncio.gather(*tasks)
    size, indices = -1, None
    if me_gets:
        mine = np.concatenate(mine_dual) if mine_dual else np.zeros((0, width), np.uint8)
        theirs = np.concatenate(peer_dual) if peer_dual else np.zeros((0, width), np.uint8)
        if len(mine) != n:
            raise InterconnectionError(
                m.INVALID_REQUEST, f"{len(mine)} second-stage values for our {n} items"
            )
        if width < 8:  # the matcher keys on 8 bytes: pad short values with zeros
            mine = np.pad(mine, ((0, 0), (0, 8 - width)))
            theirs = np.pad(theirs, ((0, 0), (0, 8 - width)))
        ii, _ = await asyncio.to_thread(match, mine, theirs)
        common = np.zeros(n, dtype=bool)
        common[perm[ii]] = True
        size = int(common.sum())
        indices = grouped.rows(common)
    stats: Mapping[str, Any] = {
        "protocol": "interconnection-ecdh-psi",
        "suite": agreed.suite,
        "rank": link.rank,
        "truncation_bits": agreed.bits,
        "result_to_rank": agreed.result_to_rank,
        "distinct": n,
        "intersection": size,
        "bytes_sent": link.bytes_sent,
        "bytes_received": link.bytes_received,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return PsiResult(size=size, indices=indices, stats=dict(stats))
