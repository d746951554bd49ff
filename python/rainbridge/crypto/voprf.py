"""The verifiable OPRF of RFC 9497 (mode 0x01, ``ristretto255-SHA512``) over the core's group.

As the OPRF of :mod:`rainbridge.crypto.oprf` (the same Blind and Finalize, with its own
context string), and the server also proves, with one batched DLEQ proof per evaluation
(RFC 9497 §2.2), that every element it returned is its input multiplied by the secret key
behind its public key ``pkS = sk·G``. A client that holds ``pkS`` (a key it pinned) verifies
the proof before it finalizes, so a server cannot answer one client, or one query, under
another key (to tag or track it) without the client noticing.

Cost: the server computes the composite ``M = Σ dᵢ·Cᵢ`` (one multi-scalar multiplication of
``n`` points, ``ComputeCompositesFast``) and three single multiplications; the client
computes ``M`` and ``Z = Σ dᵢ·Dᵢ`` (two of ``n`` points) and two of two points. Each batch is
one core call, whatever its size.

Security model: as mode 0 (the client is protected unconditionally; outputs pseudorandom
under one-more gap Diffie–Hellman, hashes as random oracles), plus soundness of the proof:
a server that passes verification used the key behind ``pkS`` for every element of the
batch, except with negligible probability. What a proof does not give: it says nothing
about which key is the *right* one (the client must obtain ``pkS`` authentically and pin
it), nor about what the server does with the table it seals under that key. The proof is
zero-knowledge: it reveals nothing about ``sk`` beyond ``pkS``. Received elements, proof
scalars and the composites are validated (canonical, not the identity).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rainbridge import _core
from rainbridge.crypto import oprf
from rainbridge.crypto.oprf import ELEMENT_SIZE, ORDER, Blinded
from rainbridge.errors import InvalidElementError, ProofError

MODE_VOPRF = 1
CONTEXT = oprf.context_string(MODE_VOPRF)
#: a proof: the challenge ``c`` and the response ``s``, each a 32-byte scalar
PROOF_SIZE = 64
#: RFC 9497 indexes a batch's elements with 2 bytes
MAX_BATCH = (1 << 16) - 1
#: the encoded generator of ristretto255 (RFC 9496 §4.4)
GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")

_SCALAR_DST = b"HashToScalar-" + CONTEXT
_SEED_DST = b"Seed-" + CONTEXT
_GROUP = oprf.group(CONTEXT)


def _i2osp2(n: int) -> bytes:
    return struct.pack(">H", n)


def _scalar(k: int) -> bytes:
    return k.to_bytes(32, "little")


def derive_key(seed: bytes, info: bytes) -> bytes:
    """RFC 9497 DeriveKeyPair in mode 1: the secret scalar for ``seed`` and ``info``."""
    return oprf.derive_key(seed, info, CONTEXT)


random_key = oprf.random_key
public_key = oprf.public_key


def blind(inputs: Sequence[bytes], blinds: Sequence[bytes] | None = None) -> Blinded:
    """RFC 9497 Blind in mode 1 (see :func:`rainbridge.crypto.oprf.blind`)."""
    return oprf.blind(inputs, blinds, context=CONTEXT)


def evaluate_direct(sk: bytes, inputs: Sequence[bytes]) -> list[bytes]:
    """The server's own PRF outputs in mode 1: what :func:`finalize` yields for ``inputs``."""
    return oprf.evaluate_direct(sk, inputs, context=CONTEXT)


@dataclass(frozen=True)
class Evaluation:
    """A server's answer: the evaluated elements (32 bytes each, in order) and their proof."""

    elements: bytes
    proof: bytes


def _count(blinded: bytes, what: str) -> int:
    n, rest = divmod(len(blinded), ELEMENT_SIZE)
    if rest or not 1 <= n <= MAX_BATCH:
        raise InvalidElementError(
            f"{what}: a VOPRF batch is 1 to {MAX_BATCH} whole 32-byte elements"
        )
    return n


def _composite_scalars(pk: bytes, cs: bytes, ds: bytes) -> bytes:
    """RFC 9497 ComputeComposites' ``dᵢ``, all in one core call (32 bytes each)."""
    seed = hashlib.sha512(_i2osp2(len(pk)) + pk + _i2osp2(len(_SEED_DST)) + _SEED_DST).digest()
    n = len(cs) // ELEMENT_SIZE
    head = np.frombuffer(_i2osp2(len(seed)) + seed, np.uint8)
    size = ELEMENT_SIZE.to_bytes(2, "big")
    # each transcript: len(seed) ‖ seed ‖ i ‖ len(C) ‖ Cᵢ ‖ len(D) ‖ Dᵢ ‖ "Composite"
    width = len(head) + 2 + 2 + ELEMENT_SIZE + 2 + ELEMENT_SIZE + len(b"Composite")
    t = np.empty((n, width), np.uint8)
    at = len(head)
    t[:, :at] = head
    t[:, at : at + 2] = np.arange(n, dtype=">u2").view(np.uint8).reshape(n, 2)
    at += 2
    for part in (cs, ds):
        t[:, at : at + 2] = np.frombuffer(size, np.uint8)
        t[:, at + 2 : at + 2 + ELEMENT_SIZE] = np.frombuffer(part, np.uint8).reshape(n, -1)
        at += 2 + ELEMENT_SIZE
    t[:, at:] = np.frombuffer(b"Composite", np.uint8)
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return bytes(_core.ristretto_hash_to_scalar(t, offsets, _SCALAR_DST))


def _challenge(pk: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes) -> int:
    transcript = b"".join(_i2osp2(len(x)) + x for x in (pk, m, z, t2, t3)) + b"Challenge"
    wide = _core.expand_message_xmd_sha512(transcript, _SCALAR_DST, 64)
    return int.from_bytes(wide, "little") % ORDER


def _msm(scalars: bytes, points: bytes) -> bytes:
    return bytes(_core.ristretto_msm_vartime(scalars, points))


def evaluate(sk: bytes, blinded: bytes, *, r: bytes | None = None) -> Evaluation:
    """RFC 9497 BlindEvaluate in mode 1: each received element times ``sk``, and the batch's
    proof (GenerateProof with ComputeCompositesFast; ``r`` fresh, or given for tests).

    Raises
    ------
    InvalidElementError
        An empty or ragged batch, more than :data:`MAX_BATCH` elements, or an element that
        is non-canonical or the identity.
    """
    _count(blinded, "a VOPRF query")
    evaluated = _GROUP.mul(sk, blinded)  # validates every element
    pk = public_key(sk)
    d = _composite_scalars(pk, blinded, evaluated)
    m = _msm(d, blinded)
    # Z = sk·M: the server knows sk, so the second composite costs one multiplication
    z = _GROUP.mul(sk, m)
    rb = r if r is not None else oprf.random_key()
    t2 = _GROUP.mul(rb, GENERATOR)
    t3 = _GROUP.mul(rb, m)
    c = _challenge(pk, m, z, t2, t3)
    # s = r - c·sk, in the core's constant-time arithmetic (r and sk are secret)
    s = bytes(_core.ristretto_scalar_muladd(_scalar(-c % ORDER), sk, rb))
    return Evaluation(evaluated, _scalar(c) + s)


def verify(pk: bytes, blinded: bytes, evaluated: bytes, proof: bytes) -> None:
    """RFC 9497 VerifyProof: ``evaluated`` is ``blinded`` times the key behind ``pk``.

    Raises
    ------
    ProofError
        The proof is missing, malformed (not 64 bytes, a scalar out of range) or does not
        verify.
    InvalidElementError
        The answer does not hold one valid element per query element, or ``pk`` is not a
        valid element.
    """
    n = _count(blinded, "a VOPRF query")
    if len(pk) != ELEMENT_SIZE:
        raise InvalidElementError(f"a VOPRF public key is {ELEMENT_SIZE} bytes (got {len(pk)})")
    if len(evaluated) != n * ELEMENT_SIZE:
        raise InvalidElementError(
            f"a VOPRF answer of {len(evaluated)} bytes for {n} elements (want {n * ELEMENT_SIZE})"
        )
    if len(proof) != PROOF_SIZE:
        raise ProofError(f"a VOPRF proof is {PROOF_SIZE} bytes (got {len(proof)})")
    c_b, s_b = proof[:32], proof[32:]
    c, s = int.from_bytes(c_b, "little"), int.from_bytes(s_b, "little")
    if c >= ORDER or s >= ORDER:
        raise ProofError("a VOPRF proof's scalar is not canonical")
    try:
        d = _composite_scalars(pk, blinded, evaluated)
        m = _msm(d, blinded)
        z = _msm(d, evaluated)
        t2 = _msm(s_b + c_b, GENERATOR + pk)
        t3 = _msm(s_b + c_b, m + z)
    except _core.InvalidElementError as exc:
        raise InvalidElementError(f"a VOPRF answer or key: {exc}") from None
    if _challenge(pk, m, z, t2, t3) != c:
        raise ProofError(
            "the VOPRF proof does not verify: the answer was not computed under the pinned key"
        )


def finalize(query: Blinded, answer: Evaluation, pk: bytes) -> list[bytes]:
    """RFC 9497 Finalize in mode 1: verify the answer's proof under ``pk``, then the 64-byte
    PRF output of each of the query's inputs.

    Raises
    ------
    ProofError, InvalidElementError
        As :func:`verify`; nothing is finalized.
    """
    verify(pk, query.elements, answer.elements, answer.proof)
    return oprf.finalize(query, answer.elements)
