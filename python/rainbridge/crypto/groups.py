"""Prime-order-group suites for ECDH-style protocols: the typed face of the native core.

Two suites share one small interface (:class:`GroupSuite`):

* ``curve25519`` (the default) — X25519 (RFC 7748) with SHA-256(item) taken directly as the
  u-coordinate: the ``<Curve25519, SHA-256, DIRECT_HASH_AS_POINT_X>`` suite of China's
  privacy-computing interconnection standard, also SecretFlow's ECDH-PSI. Computed by an 8-lane
  AVX-512 IFMA ladder where the CPU has it, by a portable radix-2^64 ladder elsewhere
  (``RAINBRIDGE_DISABLE_IFMA=1``, read at every call, forces the portable path; :func:`backend`
  says which runs). Both are constant time and checked against curve25519-dalek.
* ``ristretto255`` — RFC 9496 on curve25519-dalek, hashing to the group as RFC 9497's
  ``HashToGroup`` does: ``from_uniform_bytes(expand_message_xmd(item, dst, 64))`` with SHA-512
  and a domain-separation tag.

Every received element is validated by the core before use: non-canonical encodings,
non-points, the identity, and all-zero X25519 results (low-order inputs) raise
:class:`~rainbridge.errors.InvalidElementError` naming the index of the first bad element in
the batch. Items are passed Arrow-style (one data buffer, ``n + 1`` int64 offsets) so no Python
object is made per item, and the GIL is released while the core works (rayon inside).

Scalars are 32 bytes, secret, and never appear in error messages.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from rainbridge import _core
from rainbridge.errors import ConfigError, InvalidElementError

#: any C-contiguous bytes-like object: bytes, bytearray, memoryview, numpy array, pyarrow Buffer
Buffer = Any

#: domain-separation tag for hashing PSI items to ristretto255 (RFC 9380 §3.1: versioned)
PSI_DST = b"rainbridge-v1-psi-ristretto255-SHA512"

#: the suite :func:`get_suite` returns when no name is given
DEFAULT_SUITE = "curve25519"

__all__ = [
    "DEFAULT_SUITE",
    "PSI_DST",
    "Curve25519Suite",
    "GroupSuite",
    "Ristretto255Suite",
    "backend",
    "build_info",
    "get_suite",
    "suite_names",
]


def _offsets(offsets: Any) -> Any:
    """Offsets as the core takes them: numpy arrays made int64 and contiguous (a no-op copy
    for the usual int64 array); bytes-like objects (little-endian int64) passed through."""
    if isinstance(offsets, bytes | bytearray | memoryview):
        return offsets
    return np.ascontiguousarray(offsets, dtype=np.int64)


@contextmanager
def _typed_errors(suite: str, *, received: bool) -> Iterator[None]:
    """Turns the core's errors into the Rainbridge family.

    A bad element or scalar is always :class:`InvalidElementError`. A malformed buffer is
    :class:`InvalidElementError` when it came from a peer (``received``: a batch that is not a
    whole number of elements is an invalid element) and :class:`ConfigError` when it is the
    caller's own items (offsets outside the data, decreasing, wrong dtype).
    """
    try:
        yield
    except _core.InvalidElementError as exc:
        raise InvalidElementError(f"{suite}: {exc}") from None
    except ValueError as exc:
        if received:
            raise InvalidElementError(f"{suite}: {exc}") from None
        raise ConfigError(f"{suite}: {exc}") from None


class GroupSuite(abc.ABC):
    """A prime-order group with hash-to-group, as an ECDH-style protocol needs it.

    Attributes
    ----------
    name : str
        The suite's name, as :func:`get_suite` takes it.
    element_size : int
        Bytes per encoded element (32 for both suites).
    """

    name: ClassVar[str]
    element_size: ClassVar[int] = 32

    @abc.abstractmethod
    def random_scalar(self) -> bytes:
        """A fresh secret scalar from the operating system's randomness.

        Returns
        -------
        bytes
            32 bytes, valid for :meth:`mul` and :meth:`hash_mul` of this suite.
        """

    @abc.abstractmethod
    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        """Hash every item to the group.

        Parameters
        ----------
        data : bytes-like
            All items concatenated.
        offsets : numpy.ndarray or bytes-like
            ``n + 1`` non-decreasing int64 offsets into ``data``; item ``i`` is
            ``data[offsets[i]:offsets[i + 1]]``. Bytes-like offsets hold little-endian int64.

        Returns
        -------
        bytes
            ``n * element_size`` bytes: ``H(item)`` for every item, in order.

        Raises
        ------
        ConfigError
            The offsets do not describe items inside ``data``.
        """

    @abc.abstractmethod
    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        """``H(item)^k`` for every item, in one pass (hash then multiply).

        Parameters
        ----------
        scalar : bytes
            The 32-byte secret scalar ``k``.
        data, offsets
            The items, as for :meth:`hash_to_group`.

        Returns
        -------
        bytes
            ``n * element_size`` bytes, in item order.

        Raises
        ------
        InvalidElementError
            The scalar is invalid for this suite.
        ConfigError
            The offsets do not describe items inside ``data``.
        """

    @abc.abstractmethod
    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        """``P^k`` for every received element ``P``, validating each first.

        Parameters
        ----------
        scalar : bytes
            The 32-byte secret scalar ``k``.
        points : bytes-like
            ``n * element_size`` bytes of encoded elements (typically from a peer).

        Returns
        -------
        bytes
            ``n * element_size`` bytes, in order.

        Raises
        ------
        InvalidElementError
            An element is invalid (the message names the index of the first one), the buffer
            is not a whole number of elements, or the scalar is invalid. Nothing is returned
            for the rest of the batch.
        """


class Curve25519Suite(GroupSuite):
    """X25519 (RFC 7748) with SHA-256(item) taken directly as the u-coordinate.

    Parameters
    ----------
    backend : {None, "avx512ifma", "portable"}
        ``None`` picks the fastest back end this CPU runs (unless ``RAINBRIDGE_DISABLE_IFMA=1``);
        a name forces one, for benchmarks and cross-checks.

    Notes
    -----
    Any 32 bytes are a scalar (clamped as RFC 7748 says). Received u-coordinates are taken as
    RFC 7748 does: the top bit ignored, values ``>= p`` reduced; a u whose product is all zero
    (a low-order point) is refused.
    """

    name = "curve25519"

    def __init__(self, backend: str | None = None) -> None:
        if backend not in (None, "avx512ifma", "portable"):
            raise ConfigError(f"unknown X25519 backend {backend!r} (avx512ifma or portable)")
        self.backend = backend

    def random_scalar(self) -> bytes:
        return bytes(_core.x25519_random_scalar())

    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        with _typed_errors(self.name, received=False):
            return bytes(_core.x25519_hash_to_point(data, _offsets(offsets)))

    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        with _typed_errors(self.name, received=False):
            return bytes(_core.x25519_hash_mul(scalar, data, _offsets(offsets), self.backend))

    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        with _typed_errors(self.name, received=True):
            return bytes(_core.x25519_mul(scalar, points, self.backend))

    def public_key(self, scalar: bytes) -> bytes:
        """X25519(scalar, 9): the RFC 7748 public key of ``scalar`` (32 bytes)."""
        with _typed_errors(self.name, received=False):
            return bytes(_core.x25519_base(scalar))


class Ristretto255Suite(GroupSuite):
    """ristretto255 (RFC 9496) with RFC 9497's hash-to-group over SHA-512.

    Parameters
    ----------
    dst : bytes
        Domain-separation tag, 1 to 255 bytes (RFC 9380 §3.1); defaults to :data:`PSI_DST`.

    Notes
    -----
    Scalars must be canonical (below the group order) and non-zero: they are refused, never
    reduced. Received elements must be canonical encodings of a non-identity element.
    """

    name = "ristretto255"

    def __init__(self, dst: bytes = PSI_DST) -> None:
        if not 1 <= len(dst) <= 255:
            raise ConfigError("a domain-separation tag must be 1 to 255 bytes")
        self.dst = bytes(dst)

    def random_scalar(self) -> bytes:
        return bytes(_core.ristretto_random_scalar())

    def hash_to_group(self, data: Buffer, offsets: Any) -> bytes:
        with _typed_errors(self.name, received=False):
            return bytes(_core.ristretto_hash_to_group(data, _offsets(offsets), self.dst))

    def hash_mul(self, scalar: bytes, data: Buffer, offsets: Any) -> bytes:
        with _typed_errors(self.name, received=False):
            return bytes(_core.ristretto_hash_mul(scalar, data, _offsets(offsets), self.dst))

    def mul(self, scalar: bytes, points: Buffer) -> bytes:
        with _typed_errors(self.name, received=True):
            return bytes(_core.ristretto_mul(scalar, points))

    def validate(self, points: Buffer) -> None:
        """Check received elements without multiplying.

        Raises
        ------
        InvalidElementError
            As :meth:`mul` would.
        """
        with _typed_errors(self.name, received=True):
            _core.ristretto_validate(points)


_SUITES: dict[str, type[GroupSuite]] = {
    Curve25519Suite.name: Curve25519Suite,
    Ristretto255Suite.name: Ristretto255Suite,
}


def suite_names() -> list[str]:
    """The names :func:`get_suite` accepts, sorted."""
    return sorted(_SUITES)


def get_suite(name: str = DEFAULT_SUITE) -> GroupSuite:
    """The suite called ``name``.

    Parameters
    ----------
    name : {"curve25519", "ristretto255"}
        The suite; ``curve25519`` by default.

    Returns
    -------
    GroupSuite
        A suite with its defaults (the fastest X25519 back end; :data:`PSI_DST` for
        ristretto255).

    Raises
    ------
    ConfigError
        No suite has that name.
    """
    try:
        return _SUITES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown curve suite {name!r} (use one of: {', '.join(suite_names())})"
        ) from None


def backend() -> str:
    """Which X25519 back end runs by default here: ``avx512ifma`` or ``portable``."""
    return str(_core.x25519_backend())


def build_info() -> dict[str, Any]:
    """Version, detected CPU features and back ends of the native core (for bug reports)."""
    return dict(_core.build_info())
