"""Outcome blocks keep their rows' packed class scores, for estimated quality over large
windows (a block built before has none: readers take its rows).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outcome_blocks") as batch:
        batch.add_column(sa.Column("scores", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("score_lengths", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outcome_blocks") as batch:
        batch.drop_column("score_lengths")
        batch.drop_column("scores")
