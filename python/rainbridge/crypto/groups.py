"""Prime-order-group suites for ECDH-style protocols: the typed face of the native core.

Two suites share one small interface (:class:`GroupSuite`):

* ``curve25519`` — X25519 (RFC 7748) with SHA-256(item) taken directly as the u-coordinate:
  the ``<Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X>`` suite of China's privacy-computing
  interconnection standard, also SecretFlow's. Computed by an 8-lane AVX-512 IFMA ladder where
  the CPU has it, by curve25519-dalek's ladder elsewhere (``RAINBRIDGE_DISABLE_IFMA=1`` forces
  the portable path; :func:`backend` says which runs).
* ``ristretto255`` — RFC 9496 on curve25519-dalek, hash-to-group by ``from_uniform_bytes``
  over ``expand_message_xmd``/SHA-512 with a domain-separation tag, as RFC 9497 does.

Every received element is validated by the core before use: invalid or non-canonical
encodings, the identity, and all-zero X25519 results (low-order inputs) raise
:class:`~rainbridge.errors.InvalidElementError` naming the index in the batch. Items are
passed Arrow-style (one data buffer, ``n + 1`` int64 offsets) so no Python object is made per
item, and the GIL is released while the core works.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from rainbridge import _core
from rainbridge.errors import ConfigError, InvalidElementError

Buffer = Any  # any C-contiguous bytes-like object: bytes, memoryview, numpy array, pa.Buffer

#: domain-separation tag for hashing PSI items to ristretto255
PSI_DST = b"rainbridge-v1-psi-ristretto255-SHA512"

__all__ = [
    "PSI_DST",
    "Curve25519Suite",
    "GroupSuite",
    "Ristretto255Suite",
    "backend",
    "build_info",
    "get_suite",
    "suite_names",
]


def _offsets(offsets: Any) -> np.ndarray:
    return np.ascontiguousarray(offsets, dtype=np.int64)


class GroupSuite(abc.ABC):
    """A group with hash-to-group, as an ECDH-style protocol needs it."""

    name: ClassVar[str]
    element_size: ClassVar[int] = 32

    @abc.abstractmethod
    def random_scalar(self) -> bytes:
        """A fresh secret scalar from the operating system's randomness."""

    @abc.abstractmethod
    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        """``H(item)`` for every item, ``32 * n`` bytes."""

    @abc.abstractmethod
    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        """``H(item)^k`` for every item (one pass: hash then multiply)."""

    @abc.abstractmethod
    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        """``P^k`` for every received element ``P``, validating each first."""


class Curve25519Suite(GroupSuite):
    """X25519 with SHA-256 direct hash as the u-coordinate."""

    name = "curve25519"

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def random_scalar(self) -> bytes:
        return bytes(_core.x25519_random_scalar())

    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        try:
            return bytes(_core.x25519_hash_to_point(data, _offsets(offsets)))
        except ValueError as exc:
            raise ConfigError(f"x25519 hash: {exc}") from None

    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        try:
            return bytes(_core.x25519_hash_mul(scalar, data, _offsets(offsets), self.backend))
        except _core.InvalidElementError as exc:
            raise InvalidElementError(f"curve25519: {exc}") from None

    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        try:
            return bytes(_core.x25519_mul(scalar, points, self.backend))
        except _core.InvalidElementError as exc:
            raise InvalidElementError(f"curve25519: {exc}") from None
        except ValueError as exc:
            raise InvalidElementError(f"curve25519: {exc}") from None


class Ristretto255Suite(GroupSuite):
    """ristretto255 with hash-to-group over expand_message_xmd/SHA-512."""

    name = "ristretto255"

    def __init__(self, dst: bytes = PSI_DST) -> None:
        if not 1 <= len(dst) <= 255:
            raise ConfigError("a domain-separation tag must be 1 to 255 bytes")
        self.dst = dst

    def random_scalar(self) -> bytes:
        return bytes(_core.ristretto_random_scalar())

    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        try:
            return bytes(_core.ristretto_hash_to_group(data, _offsets(offsets), self.dst))
        except ValueError as exc:
            raise ConfigError(f"ristretto255 hash: {exc}") from None

    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        try:
            return bytes(_core.ristretto_hash_mul(scalar, data, _offsets(offsets), self.dst))
        except _core.InvalidElementError as exc:
            raise InvalidElementError(f"ristretto255: {exc}") from None

    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        try:
            return bytes(_core.ristretto_mul(scalar, points))
        except _core.InvalidElementError as exc:
            raise InvalidElementError(f"ristretto255: {exc}") from None
        except ValueError as exc:
            raise InvalidElementError(f"ristretto255: {exc}") from None


_SUITES: dict[str, type[GroupSuite]] = {
    Curve25519Suite.name: Curve25519Suite,
    Ristretto255Suite.name: Ristretto255Suite,
}


def suite_names() -> list[str]:
    return sorted(_SUITES)


def get_suite(name: str) -> GroupSuite:
    """The suite called ``name`` (``curve25519`` or ``ristretto255``)."""
    try:
        return _SUITES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown curve suite {name!r} (use one of: {', '.join(suite_names())})"
        ) from None


def backend() -> str:
    """Which X25519 back end runs here: ``avx512ifma`` or ``portable``."""
    return str(_core.x25519_backend())


def build_info() -> dict[str, Any]:
    """Version and detected CPU features of the native core (for bug reports)."""
    return dict(_core.build_info())
