"""Alembic's environment for the node's tables: always run on a connection it is handed.

:mod:`rainbridge.node.migrations` configures Alembic in code (no ``alembic.ini``) and passes
the open connection in ``config.attributes["connection"]``, so the same transaction checks,
migrates and stamps the database.
"""

from __future__ import annotations

from alembic import context

from rainbridge.node.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the node's migrations through rainbridge.node.migrations")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it: revisions written in batch mode work on both
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
