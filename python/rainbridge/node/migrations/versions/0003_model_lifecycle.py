"""models: retirement (``retired_at``, ``retired_by``), every party's features
(``features_by_party``, from the training job) for batch scoring, and the training's
headline metrics (``metrics``)

Revision ID: 0003_model_lifecycle
Revises: 0002_dataset_source
Create Date: 2026-12-07 08:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_model_lifecycle"
down_revision = "0002_dataset_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("features_by_party", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retired_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("retired_by")
        batch_op.drop_column("retired_at")
        batch_op.drop_column("metrics")
        batch_op.drop_column("features_by_party")
