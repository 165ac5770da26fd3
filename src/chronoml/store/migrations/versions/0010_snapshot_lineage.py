"""Snapshots: who took each one, what it was built from, and a name-and-time index.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("actor", sa.String(200), nullable=True))
        batch.add_column(sa.Column("lineage", sa.Text, nullable=True))
    op.create_index("ix_snapshots_name_created", "snapshots", ["name", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_name_created", "snapshots")
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("lineage")
        batch.drop_column("actor")
