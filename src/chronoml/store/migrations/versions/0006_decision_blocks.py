"""Columnar blocks of the decision log, and each endpoint's compaction watermark.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_blocks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("layout", sa.String(16), nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("ts_min", sa.BigInteger, nullable=False),
        sa.Column("ts_max", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("ts", sa.LargeBinary, nullable=False),
        sa.Column("num", sa.LargeBinary, nullable=False),
        sa.Column("txt", sa.Text, nullable=True),
        sa.Column("codes", sa.LargeBinary, nullable=True),
        sa.Column("outputs", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_decision_blocks_endpoint", "decision_blocks", ["endpoint", "ts_max"])
    op.create_table(
        "block_watermarks",
        sa.Column("endpoint", sa.String(200), primary_key=True),
        sa.Column("compacted_to", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("block_watermarks")
    op.drop_index("ix_decision_blocks_endpoint", "decision_blocks")
    op.drop_table("decision_blocks")
