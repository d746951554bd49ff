"""A cryptographic pseudo-random generator: AES-128 in counter mode, keyed by a 16-byte seed.

Correlated randomness is expanded from short seeds so a dealer sends each party a seed once
and then only the corrections a party cannot derive (see :mod:`.correlated`).
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rainbridge.protocols.mpc.ring import Ring

SEED_BYTES = 16


def new_seed() -> bytes:
    return os.urandom(SEED_BYTES)


class Prg:
    """An AES-CTR stream; ``words(n)`` returns the next n uniform 64-bit words."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError("a PRG seed is 16 bytes")
        self._enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytearray()

    def words(self, n: int) -> Ring:
        # encrypt zeros straight into the result: no temporary plaintext or ciphertext copy
        if len(self._zeros) < 8 * n:
            self._zeros = bytearray(8 * n)
        out = np.empty(n + 2, dtype=np.uint64)  # update_into wants 15 spare bytes
        written = self._enc.update_into(memoryview(self._zeros)[: 8 * n], out.data.cast("B"))
        assert written == 8 * n
        return out[:n]

    def ring(self, shape: tuple[int, ...]) -> Ring:
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        return self.words(n).reshape(shape)


def random_ring(shape: tuple[int, ...]) -> Ring:
    """Fresh uniform ring elements from the OS (a party's own masks)."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy().reshape(shape)
