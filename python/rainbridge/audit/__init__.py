"""Audit: the stand-alone verifier of exported ledger bundles (see :mod:`.verify_ledger`)."""
