"""Archived decisions: content-addressed Parquet files, each endpoint's archive mark,
and the archiver's state.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_files",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("layout", sa.String(16), nullable=False),
        sa.Column("ts_min", sa.BigInteger, nullable=False),
        sa.Column("ts_max", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("min_id", sa.String(36), nullable=False),
        sa.Column("max_id", sa.String(36), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_archive_files_endpoint", "archive_files", ["endpoint", "ts_max"])
    op.create_index("ix_archive_files_ids", "archive_files", ["min_id", "max_id"])
    op.create_table(
        "archive_marks",
        sa.Column("endpoint", sa.String(200), primary_key=True),
        sa.Column("archived_to", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "archive_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_attempt_at", sa.BigInteger, nullable=True),
        sa.Column("last_success_at", sa.BigInteger, nullable=True),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("archive_state")
    op.drop_table("archive_marks")
    op.drop_index("ix_archive_files_ids", "archive_files")
    op.drop_index("ix_archive_files_endpoint", "archive_files")
    op.drop_table("archive_files")
