"""Cryptography: the typed face of the native core, certificates and keys."""

from rainbridge.crypto.groups import GroupSuite, build_info, get_suite

__all__ = ["GroupSuite", "build_info", "get_suite"]
