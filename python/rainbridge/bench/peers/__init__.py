"""Peer runners: stand-alone scripts run with the peer environment's Python (.venv-peers).

They never import rainbridge; they make the same ID strings as ``bench.common.make_ids``.
"""
