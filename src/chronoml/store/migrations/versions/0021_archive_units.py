"""The unit index of archive files: which unit keys each file holds (hashed), so that
erasing one subject opens only the files that may hold it. The file's evidence leaf
commits the index's digest.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_units",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("units", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_units")
