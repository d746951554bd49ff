"""The batch kernels of the dealer-free OT source (:mod:`.ot`): the IKNP expansion and its
bit transposition, the fixed-key-AES correlation-robust hash, Gilboa's sums and trimmed
corrections, and the 128-bit arithmetic of wide products.

Each kernel comes twice: in the core (rust/src/gilboa.rs, rust/src/bits.rs), which the
protocol runs by default, and here in numpy, the reference the core is tested against
(``OtExtension(kernels="numpy")`` runs it): both give byte-identical messages and shares on
the same inputs, so the wire format does not depend on which a party runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.protocols.mpc.ring import Ring, byte_view

KAPPA = 128
_FIXED_KEY = hashlib.sha256(b"rainbridge/ot/tccr/v1").digest()[:16]
_ZERO_IV = bytes(16)


class _Streams:
    """KAPPA AES-CTR streams, one per base-OT key, read in lockstep."""

    def __init__(self, keys: bytes) -> None:
        if len(keys) != 16 * KAPPA:
            raise ProtocolViolationError("an OT extension needs 128 base keys")
        self._enc = [
            Cipher(algorithms.AES(keys[16 * j : 16 * j + 16]), modes.CTR(_ZERO_IV)).encryptor()
            for j in range(KAPPA)
        ]
        self._zeros = bytearray()

    def read(self, nbytes: int) -> npt.NDArray[np.uint8]:
        if len(self._zeros) < nbytes:
            self._zeros = bytearray(nbytes)
        out = np.empty((KAPPA, nbytes + 16), dtype=np.uint8)  # update_into wants spare room
        src = memoryview(self._zeros)[:nbytes]
        for j, enc in enumerate(self._enc):
            enc.update_into(src, out[j].data)
        return out[:, :nbytes]


def _transpose(mat: npt.NDArray[np.uint8], m: int) -> npt.NDArray[np.uint64]:
    """(KAPPA, m/8) bit matrix, column i = OT i → (m, 2) words: row i's 128 bits (core)."""
    flat = np.ascontiguousarray(mat)
    rows = _core.transpose_128(flat, flat.shape[1], m)
    return np.frombuffer(rows, dtype=np.uint64).reshape(m, 2)


class _Hash:
    """Tweakable correlation-robust hash from fixed-key AES: H(i, x) = π(π(x) ⊕ i) ⊕ π(x)."""

    def __init__(self) -> None:
        self._pi = Cipher(algorithms.AES(_FIXED_KEY), modes.ECB()).encryptor()

    def _perm(self, x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        out = np.empty(x.size + 2, dtype=np.uint64)
        self._pi.update_into(byte_view(x), out.data.cast("B"))
        return out[: x.size].reshape(x.shape)

    def __call__(self, x: npt.NDArray[np.uint64], first: int, words: int) -> Ring:
        """``words`` 64-bit words of H for each row of x (OT indices first, first+1, …)."""
        px = self._perm(x)
        m = x.shape[0]
        index = np.arange(first, first + m, dtype=np.uint64)
        out = np.empty((m, 2 * ((words + 1) // 2)), dtype=np.uint64)
        for j in range((words + 1) // 2):
            t = px.copy()
            t[:, 0] ^= index
            t[:, 1] ^= np.uint64(j)
            out[:, 2 * j : 2 * j + 2] = self._perm(t) ^ px
        return out[:, :words]


class _CoreHash:
    """:class:`_Hash` computed by the core (same outputs)."""

    def __call__(self, x: npt.NDArray[np.uint64], first: int, words: int) -> Ring:
        out = _core.ot_hash(byte_view(x), first, words)
        return np.frombuffer(out, dtype=np.uint64).reshape(x.shape[0], words)


def choice_bits_reference(x: Ring, bits: int) -> npt.NDArray[np.uint8]:
    """The receiver's packed choice bits: bit ``k`` of ``x[i]`` for OT ``i * bits + k``."""
    shifts = np.arange(bits, dtype=np.uint64)
    choice = ((x[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(-1)
    return np.packbits(choice, bitorder="little")


class _IknpReceiverReference:
    """The IKNP receiver's streams G(k0), G(k1) in numpy (the reference of the core's)."""

    def __init__(self, k0: bytes, k1: bytes) -> None:
        self._g = (_Streams(k0), _Streams(k1))

    def choose(self, r: npt.NDArray[np.uint8], m: int) -> tuple[Any, Any]:
        """u = G(k0) ⊕ G(k1) ⊕ r (128 rows) and the rows t (the columns of G(k0))."""
        nbytes = (m + 7) // 8
        t = self._g[0].read(nbytes)
        return t ^ self._g[1].read(nbytes) ^ r[None, :], _transpose(t, m)


class _IknpSenderReference:
    """The IKNP sender's streams G(k_s) and choices s in numpy."""

    def __init__(self, keys: bytes, s_bits: npt.NDArray[np.uint8]) -> None:
        self._g = _Streams(keys)
        self._s = s_bits

    def rows(self, u: npt.NDArray[np.uint8], m: int) -> Any:
        """q = the columns of G(k_s) ⊕ s·u."""
        q = self._g.read(u.shape[1])
        q ^= u * self._s[:, None]
        return _transpose(q, m)


class _IknpReceiverCore:
    def __init__(self, k0: bytes, k1: bytes) -> None:
        self._r = _core.IknpReceiver(k0, k1)

    def choose(self, r: npt.NDArray[np.uint8], m: int) -> tuple[Any, Any]:
        u, t = self._r.choose(np.ascontiguousarray(r).data, m)
        u_rows = np.frombuffer(u, dtype=np.uint8).reshape(KAPPA, (m + 7) // 8)
        return u_rows, np.frombuffer(t, dtype=np.uint64).reshape(m, 2)


class _IknpSenderCore:
    def __init__(self, keys: bytes, s_bits: npt.NDArray[np.uint8]) -> None:
        delta = np.packbits(s_bits, bitorder="little").tobytes()
        self._s = _core.IknpSender(keys, delta)

    def rows(self, u: npt.NDArray[np.uint8], m: int) -> Any:
        return np.frombuffer(self._s.rows(np.ascontiguousarray(u).data, m), np.uint64).reshape(m, 2)


def gilboa_send_reference(
    q_rows: Ring,
    delta: Ring,
    first: int,
    y: Ring,
    bits: int,
    words: int,
    gf2: bool,
) -> tuple[Any, Ring]:
    """Gilboa's sender for ``len(y)`` values of the other party, from its rows ``q_rows``
    (``bits`` per value, OT indices from ``first``): (the corrections to send, its shares)."""
    their = len(y)
    hash_ = _Hash()
    m0 = hash_(q_rows, first, 1 if gf2 else words)
    m1 = hash_(q_rows ^ delta[None, :], first, 1 if gf2 else words)
    if gf2:
        # (their, words, bits): bit w of OT k's hash pads bit k of word w
        ks = np.arange(bits, dtype=np.uint64)[None, None, :]
        ws = np.arange(words, dtype=np.uint64)[None, :, None]
        ybits = (y[:, :, None] >> ks) & np.uint64(1)
        lo0 = (m0[:, 0].reshape(their, 1, bits) >> ws) & np.uint64(1)
        lo1 = (m1[:, 0].reshape(their, 1, bits) >> ws) & np.uint64(1)
        d_gf2 = _pack_bits((lo0 ^ lo1 ^ ybits).reshape(-1, bits))
        return d_gf2, _pack_bits(lo0.reshape(-1, bits)).reshape(their, words)
    # bit k's messages differ by y modulo 2^(64-k); both shares are scaled by 2^k, so only
    # the correction's low 64-k bits travel
    shifts = np.arange(bits, dtype=np.uint64)[None, :, None]
    m0 = m0.reshape(their, bits, words)
    d = _trim(m0 + y[:, None, :] - m1.reshape(their, bits, words))
    return d, -(m0 << shifts).sum(axis=1, dtype=np.uint64)


def gilboa_receive_reference(
    t_rows: Ring,
    first: int,
    x: Ring,
    d: Any,
    bits: int,
    words: int,
    gf2: bool,
) -> Ring:
    """Gilboa's receiver for its values ``x`` from its rows ``t_rows`` and the sender's
    corrections ``d``: its shares."""
    n = len(x)
    mc = _Hash()(t_rows, first, 1 if gf2 else words)
    xb = (x[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    if gf2:
        ws = np.arange(words, dtype=np.uint64)[None, :, None]
        lo = (mc[:, 0].reshape(n, 1, bits) >> ws) & np.uint64(1)
        dw = np.asarray(d, dtype=np.uint64).reshape(n, words, 1)
        dbits = (dw >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
        return _pack_bits((lo ^ (xb[:, None, :] & dbits)).reshape(-1, bits)).reshape(n, words)
    shifts = np.arange(bits, dtype=np.uint64)[None, :, None]
    mc = mc.reshape(n, bits, words)
    full = _untrim(d, n, bits, words)
    return ((mc + xb[:, :, None] * full) << shifts).sum(axis=1, dtype=np.uint64)


def _u64(a: Ring) -> memoryview:
    """The bytes of a uint64 array (the core reads little-endian words)."""
    return byte_view(np.asarray(a, dtype=np.uint64))


def _gilboa_send_core(
    q_rows: Ring, delta: Ring, first: int, y: Ring, bits: int, words: int, gf2: bool
) -> tuple[Any, Ring]:
    their = len(y)
    d, v = _core.gilboa_send(byte_view(q_rows), delta.tobytes(), first, _u64(y), bits, words, gf2)
    d_arr = np.frombuffer(d, dtype=np.uint64 if gf2 else np.uint8)
    return d_arr, np.frombuffer(v, dtype=np.uint64).reshape(their, words)


def _gilboa_receive_core(
    t_rows: Ring, first: int, x: Ring, d: Any, bits: int, words: int, gf2: bool
) -> Ring:
    u = _core.gilboa_receive(byte_view(t_rows), first, _u64(x), byte_view(d), bits, words, gf2)
    return np.frombuffer(u, dtype=np.uint64).reshape(len(x), words)


def _choice_bits_core(x: Ring, bits: int) -> npt.NDArray[np.uint8]:
    out = _core.ot_choice_bits(_u64(x), bits)
    return np.frombuffer(out, dtype=np.uint8)


def add128(a: Ring, b: Ring) -> Ring:
    """a + b modulo 2^128 for arrays whose last axis is (low word, high word)."""
    lo = a[..., 0] + b[..., 0]
    carry = (lo < a[..., 0]).astype(np.uint64)
    return np.stack([lo, a[..., 1] + b[..., 1] + carry], axis=-1)


def neg128(a: Ring) -> Ring:
    """-a modulo 2^128 (two's complement across the two words)."""
    lo = ~a[..., 0] + np.uint64(1)
    carry = (a[..., 0] == 0).astype(np.uint64)
    return np.stack([lo, ~a[..., 1] + carry], axis=-1)


def sub128(a: Ring, b: Ring) -> Ring:
    return add128(a, neg128(b))


def _trimmed_bytes(bits: int) -> int:
    """Bytes of the corrections of one word's bits 0..bits-1: ceil((64-k)/8) for bit k."""
    return sum(-(-(64 - k) // 8) for k in range(bits))


def _trim(d: Ring) -> npt.NDArray[np.uint8]:
    """(N, bits, words) corrections → their low ceil((64-k)/8) bytes for bit k, flat."""
    n, bits, words = d.shape
    b = np.ascontiguousarray(d).view(np.uint8).reshape(n, bits, words, 8)
    # explicit row lengths: reshape(n, -1) cannot infer one when n is 0
    parts = [
        b[:, k0 : min(bits, k0 + 8), :, : 8 - k0 // 8].reshape(
            n, (min(bits, k0 + 8) - k0) * words * (8 - k0 // 8)
        )
        for k0 in range(0, bits, 8)
    ]
    return np.concatenate(parts, axis=1).reshape(-1)


def _untrim(buf: npt.NDArray[np.uint8], n: int, bits: int, words: int) -> Ring:
    """The inverse of :func:`_trim`, the dropped high bytes zero."""
    out = np.zeros((n, bits, words, 8), dtype=np.uint8)
    flat = buf.reshape(n, words * _trimmed_bytes(bits))
    at = 0
    for k0 in range(0, bits, 8):
        kk = min(bits, k0 + 8) - k0
        w = 8 - k0 // 8
        out[:, k0 : k0 + kk, :, :w] = flat[:, at : at + kk * words * w].reshape(n, kk, words, w)
        at += kk * words * w
    return out.view(np.uint64).reshape(n, bits, words)


def _pack_bits(b: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """(N, 64) bits → (N,) words."""
    return (b << np.arange(b.shape[1], dtype=np.uint64)[None, :]).sum(axis=1, dtype=np.uint64)
