"""Cryptography: the typed face of the native core, certificates and keys."""

from rainbridge.crypto.groups import (
    DEFAULT_SUITE,
    PSI_DST,
    Curve25519Suite,
    GroupSuite,
    Ristretto255Suite,
    backend,
    build_info,
    get_suite,
    suite_names,
)

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
