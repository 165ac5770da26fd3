"""Late labels (feedback, append-only with history) and stored explanations.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("label_num", sa.Float, nullable=True),
        sa.Column("observed_at", sa.BigInteger, nullable=True),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_feedback_decision", "feedback", ["decision_id", "id"])
    op.create_table(
        "explanations",
        sa.Column("decision_id", sa.String(36), primary_key=True),
        sa.Column("explainer", sa.String(64), nullable=False),
        sa.Column("output_scale", sa.String(32), nullable=False),
        sa.Column("base_value", sa.Float, nullable=False),
        sa.Column("contributions", sa.Text, nullable=False),
        sa.Column("background", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("explanations")
    op.drop_index("ix_feedback_decision", "feedback")
    op.drop_table("feedback")
