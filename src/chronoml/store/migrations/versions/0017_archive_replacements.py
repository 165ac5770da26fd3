"""Archive files rewritten without erased inputs: which file replaced which (append-only),
and when the replaced object was deleted from its store; and up to when retention found
a file's inputs already erased (so it is not read again).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_replacements",
        sa.Column("old_sha256", sa.String(64), primary_key=True),
        sa.Column("new_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("erased_before", sa.BigInteger, nullable=True),
        sa.Column("replaced_at", sa.BigInteger, nullable=False),
        sa.Column("old_deleted_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_archive_replacements_new", "archive_replacements", ["new_sha256"])
    op.create_table(
        "archive_cleared",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("erased_before", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_cleared")
    op.drop_index("ix_archive_replacements_new", "archive_replacements")
    op.drop_table("archive_replacements")
