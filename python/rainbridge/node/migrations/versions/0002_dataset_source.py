"""datasets: the source of a SQL dataset (``source``: None for a file)

Revision ID: 0002_dataset_source
Revises: 0001_baseline
Create Date: 2026-12-07 02:45:13.969512
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_dataset_source"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("source")
