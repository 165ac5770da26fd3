"""Principals: API tokens (hashes only) and the log of reads of raw decision inputs.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        # names are never reused, so "token:NAME" on the ledger names one token forever
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("endpoints", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
    )
    op.create_table(
        "input_reads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
    )
    op.create_index("ix_input_reads_decision", "input_reads", ["decision_id"])
    op.create_index("ix_input_reads_ts", "input_reads", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_input_reads_ts", "input_reads")
    op.drop_index("ix_input_reads_decision", "input_reads")
    op.drop_table("input_reads")
    op.drop_table("api_tokens")
