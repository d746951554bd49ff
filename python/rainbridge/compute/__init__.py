"""Where a party's work runs: ``local`` (this process and the core's threads) or ``ray``
(a cluster inside the party); PSI by bucket pairs with checkpoints for resume."""

from rainbridge.compute.engine import (
    ENGINES,
    ComputeEngine,
    ComputeSettings,
    LocalEngine,
    RayEngine,
    check_ray_address,
    make_engine,
)

__all__ = [
    "ENGINES",
    "ComputeEngine",
    "ComputeSettings",
    "LocalEngine",
    "RayEngine",
    "check_ray_address",
    "make_engine",
]
