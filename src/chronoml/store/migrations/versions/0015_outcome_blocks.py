"""Outcome blocks: what fairness reads of a compacted block (ids, model names, outputs,
context and the latest labels), dictionary-coded.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcome_blocks",
        sa.Column("block_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ids", sa.LargeBinary, nullable=False),
        sa.Column("id_min", sa.String(64), nullable=False),
        sa.Column("id_max", sa.String(64), nullable=False),
        sa.Column("names", sa.Text, nullable=False),
        sa.Column("name_codes", sa.LargeBinary, nullable=False),
        sa.Column("outputs", sa.Text, nullable=False),
        sa.Column("output_codes", sa.LargeBinary, nullable=False),
        sa.Column("contexts", sa.Text, nullable=False),
        sa.Column("context_codes", sa.LargeBinary, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("label_codes", sa.LargeBinary, nullable=False),
        sa.Column("labels_to", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outcome_blocks")
