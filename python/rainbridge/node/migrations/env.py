"""Alembic's environment for the node's tables: always run on a connection it is handed.

:mod:`rainbridge.node.migrations` configures Alembic in code (no ``alembic.ini``) and passes
the open connection in ``config.attributes["connection"]``, so the same transaction checks,
migrates and stamps the database.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from rainbridge.node.tables import Base, UtcDateTime


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # revisions name the column type the database has, not the row's Python conversion
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the node's migrations through rainbridge.node.migrations")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it: revisions written in batch mode work on both
    render_as_batch=True,
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
