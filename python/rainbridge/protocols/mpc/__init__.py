"""Two-party MPC over additive shares in Z_2^64 (see :mod:`.engine` for the security model).

Dependency order: :mod:`.ring` (encoding) → :mod:`.prg` → :mod:`.correlated` (the dealer's
triples) → :mod:`.engine` (shares, arithmetic, comparison, products of private matrices) →
:mod:`.functions` (reciprocal, sqrt, exp, log, sigmoid), :mod:`.sort` (oblivious sort,
top-k), :mod:`.stats` (joint statistics), :mod:`.dp` (differential privacy).
"""

from rainbridge.protocols.mpc.correlated import (
    DealerClient,
    Provider,
    SeedProvider,
    receive_seed,
    run_dealer,
)
from rainbridge.protocols.mpc.engine import Mpc, OneHot, Secret
from rainbridge.protocols.mpc.ring import DEFAULT_FRAC_BITS, decode, encode

__all__ = [
    "DEFAULT_FRAC_BITS",
    "DealerClient",
    "Mpc",
    "OneHot",
    "Provider",
    "Secret",
    "SeedProvider",
    "decode",
    "encode",
    "receive_seed",
    "run_dealer",
]
