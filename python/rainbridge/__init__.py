"""Rainbridge: an open privacy-computing platform.

Layers, bottom up (each imports only those before it): ``_core`` (native kernels),
``crypto``, ``net``, ``protocols``, ``data``, ``components``, ``jobs``, ``node``, ``cli``.
"""

from rainbridge.errors import RainbridgeError

__all__ = ["RainbridgeError", "__version__"]
__version__ = "0.1.0"
