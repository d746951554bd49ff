"""The OPRF of RFC 9497 (mode 0x00, ``ristretto255-SHA512``) over the core's group.

A server holds a key ``sk``; a client learns ``F(sk, x) = SHA-512(len(x) ‖ x ‖ len(N) ‖ N ‖
"Finalize")`` with ``N = sk·HashToGroup(x)`` for inputs of its choice, one interaction each,
and nothing else; the server learns nothing about ``x`` (it sees ``r·HashToGroup(x)`` for a
fresh random ``r``, a uniformly random element). Checked against the RFC's test vectors.

Security model: the client is protected unconditionally (blinding); the server's outputs
are pseudorandom under the one-more gap Diffie–Hellman assumption, with SHA-512 and
hash-to-group as random oracles. Each evaluation is one guess a client can test: RFC 9497
§7.2 (static DH) asks servers to rate-limit evaluations and rotate keys, which the PIR
service does. Received elements are validated (canonical, not the identity).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rainbridge import _core
from rainbridge.crypto.groups import Ristretto255Suite
from rainbridge.errors import ConfigError, InvalidElementError

MODE_OPRF = 0
SUITE_ID = b"ristretto255-SHA512"


def context_string(mode: int) -> bytes:
    """RFC 9497 §3.1 contextString of ``ristretto255-SHA512`` in ``mode`` (0 OPRF, 1 VOPRF):
    every hash of the protocol is domain-separated by it."""
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE_ID


CONTEXT = context_string(MODE_OPRF)
#: The group order of ristretto255 (RFC 9496 §4).
ORDER = 2**252 + 27742317777372353535851937790883648493
#: RFC 9497 §Input Limits: an input and a key info stay below 2^16 - 1 bytes.
MAX_INPUT = (1 << 16) - 2
OUTPUT_SIZE = 64
ELEMENT_SIZE = 32


@functools.cache
def group(context: bytes = CONTEXT) -> Ristretto255Suite:
    """The group with the HashToGroup of ``context``."""
    return Ristretto255Suite(dst=b"HashToGroup-" + context)


_GROUP = group(CONTEXT)


def _scalar_bytes(k: int) -> bytes:
    return k.to_bytes(32, "little")


def hash_to_scalar(data: bytes, dst: bytes = b"HashToScalar-" + CONTEXT) -> int:
    """RFC 9380 hash_to_field for ristretto255: 64 uniform bytes, little-endian, mod the order."""
    wide = _core.expand_message_xmd_sha512(data, dst, 64)
    return int.from_bytes(wide, "little") % ORDER


def derive_key(seed: bytes, info: bytes, context: bytes = CONTEXT) -> bytes:
    """RFC 9497 DeriveKeyPair: the secret scalar for ``seed`` (32 bytes) and ``info`` (in the
    mode ``context`` names)."""
    if len(seed) != 32:
        raise ConfigError("an OPRF seed is 32 bytes")
    if len(info) > MAX_INPUT:
        raise ConfigError("an OPRF key info is at most 65534 bytes")
    derive_input = seed + struct.pack(">H", len(info)) + info
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + context)
        if sk:
            return _scalar_bytes(sk)
    raise ConfigError("DeriveKeyPair: no key found")  # probability 2^-252 per counter


def random_key() -> bytes:
    """A fresh secret key (a uniform non-zero scalar)."""
    return bytes(_core.ristretto_random_scalar())


def public_key(sk: bytes) -> bytes:
    return bytes(_core.ristretto_base_mul(sk))


def _offsets(items: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    for x in items:
        if len(x) > MAX_INPUT:
            raise ConfigError("an OPRF input is at most 65534 bytes")
    lens = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return b"".join(items), offsets


def _finalize_hash(x: bytes, element: bytes) -> bytes:
    h = hashlib.sha512()
    h.update(struct.pack(">H", len(x)))
    h.update(x)
    h.update(struct.pack(">H", len(element)))
    h.update(element)
    h.update(b"Finalize")
    return h.digest()


@dataclass(frozen=True)
class Blinded:
    """A client's pending query: its inputs, their blinds, and the elements to send."""

    inputs: tuple[bytes, ...]
    blinds: tuple[bytes, ...]
    elements: bytes  # 32 bytes per input, in order


def blind(
    inputs: Sequence[bytes], blinds: Sequence[bytes] | None = None, *, context: bytes = CONTEXT
) -> Blinded:
    """RFC 9497 Blind for each input: ``r·HashToGroup(x)``, ``r`` fresh (or given, for tests),
    HashToGroup in the mode ``context`` names.

    Raises
    ------
    ConfigError
        An input is too long, or hashes to the identity (RFC 9497 ``InvalidInputError``,
        probability 2^-252).
    """
    xs = tuple(bytes(x) for x in inputs)
    rs = tuple(bytes(r) for r in blinds) if blinds is not None else None
    if rs is not None and len(rs) != len(xs):
        raise ConfigError("one blind per OPRF input")
    data, offsets = _offsets(xs)  # length checks
    chosen = rs if rs is not None else tuple(random_blinds(len(xs)))
    dst = b"HashToGroup-" + context
    try:  # one core call for the batch, each input with its own blind
        out = _core.ristretto_hash_mul_each(b"".join(chosen), data, offsets, dst)
    except _core.InvalidElementError:
        raise ConfigError("an OPRF blind is not a canonical non-zero 32-byte scalar") from None
    except ValueError as exc:
        raise ConfigError(f"OPRF blinds: {exc}") from None
    return Blinded(inputs=xs, blinds=chosen, elements=bytes(out))


def evaluate(sk: bytes, blinded: bytes) -> bytes:
    """RFC 9497 BlindEvaluate on a batch of received elements (each validated).

    Raises
    ------
    InvalidElementError
        A batch that is not whole elements, a non-canonical encoding or the identity.
    """
    if len(blinded) % ELEMENT_SIZE:
        raise InvalidElementError("an OPRF query is a whole number of 32-byte elements")
    return _GROUP.mul(sk, blinded)


def finalize(query: Blinded, evaluated: bytes) -> list[bytes]:
    """RFC 9497 Finalize: the 64-byte PRF output of each of the query's inputs.

    Raises
    ------
    InvalidElementError
        The server's answer is not one valid element per input.
    """
    n = len(query.inputs)
    if len(evaluated) != n * ELEMENT_SIZE:
        raise InvalidElementError(
            f"an OPRF answer of {len(evaluated)} bytes for {n} inputs (want {n * ELEMENT_SIZE})"
        )
    if not n:
        return []
    try:  # each element times the inverse of its blind, in one core call
        unblinded = _core.ristretto_mul_each(b"".join(query.blinds), evaluated, invert=True)
    except (_core.InvalidElementError, ValueError) as exc:
        raise InvalidElementError(f"an OPRF answer: {exc}") from None
    return [
        _finalize_hash(x, unblinded[i * ELEMENT_SIZE : (i + 1) * ELEMENT_SIZE])
        for i, x in enumerate(query.inputs)
    ]


def evaluate_direct(sk: bytes, inputs: Sequence[bytes], *, context: bytes = CONTEXT) -> list[bytes]:
    """The server's own PRF outputs (RFC 9497 Evaluate), batched: what a client's
    :func:`finalize` yields for the same inputs (blinded in the same mode)."""
    data, offsets = _offsets(inputs)
    elements = group(context).hash_mul(sk, data, offsets) if inputs else b""
    return [
        _finalize_hash(x, elements[i * ELEMENT_SIZE : (i + 1) * ELEMENT_SIZE])
        for i, x in enumerate(inputs)
    ]


def random_blinds(n: int) -> list[bytes]:
    """``n`` fresh blinds (exposed so callers can reuse :func:`blind` deterministically)."""
    return [_scalar_bytes(secrets.randbelow(ORDER - 1) + 1) for _ in range(n)]
