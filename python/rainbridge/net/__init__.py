"""Channels between the parties of a session: :class:`Channel` and its implementations.

``rainbridge.net.tls`` (mutual TLS) is imported on demand: it pulls in ``ssl`` and
``cryptography``, which in-process simulations do not need.
"""

from rainbridge.net.channel import Channel
from rainbridge.net.local import LocalChannel

__all__ = ["Channel", "LocalChannel"]
