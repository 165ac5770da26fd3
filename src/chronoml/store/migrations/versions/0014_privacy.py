"""Privacy: a per-endpoint input policy, an index on the unit key for erasure, and the
rows of each columnar block whose inputs were erased.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_policies",
        sa.Column("endpoint", sa.String(200), primary_key=True),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    # erasing one subject is an index seek, not a scan of the log
    op.create_index("ix_decisions_unit", "decisions", ["unit"])
    with op.batch_alter_table("decision_blocks") as batch:
        # one byte per row of the block, 1 where its inputs were erased
        batch.add_column(sa.Column("erased", sa.LargeBinary, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # uncompressed TOAST: erasure reads and overwrites one row of a block, not all of it
        op.execute("ALTER TABLE decision_blocks ALTER COLUMN num SET STORAGE EXTERNAL")


def downgrade() -> None:
    with op.batch_alter_table("decision_blocks") as batch:
        batch.drop_column("erased")
    op.drop_index("ix_decisions_unit", "decisions")
    op.drop_table("privacy_policies")
