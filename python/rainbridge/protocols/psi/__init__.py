"""Private set intersection protocols (sans-I/O roles over :class:`~rainbridge.net.Channel`)."""

from rainbridge.protocols.psi.ecdh import EcdhPsiParams, PsiResult, run_role
from rainbridge.protocols.psi.rr22 import IdBatches, Rr22PsiParams, run_rr22

__all__ = ["EcdhPsiParams", "IdBatches", "PsiResult", "Rr22PsiParams", "run_role", "run_rr22"]
