"""Private set intersection protocols (sans-I/O roles over :class:`~rainbridge.net.Channel`)."""

from rainbridge.protocols.psi.ecdh import EcdhPsiParams, PsiResult, run_role

__all__ = ["EcdhPsiParams", "PsiResult", "run_role"]
