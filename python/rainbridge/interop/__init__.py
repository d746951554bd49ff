"""Interconnection (互联互通) with other platforms: the open standard's transport, handshake
and ECDH-PSI (PPCA 9—2023), so a Rainbridge party can intersect with another platform's."""

from rainbridge.interop.ecdh_psi import IcPsiParams, InterconnectionError, run_ic_ecdh_psi
from rainbridge.interop.link import IcLink, IcTls, MessageRefusedError

__all__ = [
    "IcLink",
    "IcPsiParams",
    "IcTls",
    "InterconnectionError",
    "MessageRefusedError",
    "run_ic_ecdh_psi",
]
