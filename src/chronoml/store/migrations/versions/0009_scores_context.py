"""Class scores and context of decisions, the class order of each model version, and
context that arrives after the decision.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("scores", sa.LargeBinary, nullable=True))
    op.add_column("decisions", sa.Column("context", sa.Text, nullable=True))
    op.create_table(
        "model_classes",
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("classes", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model_name", "model_version"),
    )
    op.create_table(
        "decision_context",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_decision_context_decision", "decision_context", ["decision_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_decision_context_decision", "decision_context")
    op.drop_table("decision_context")
    op.drop_table("model_classes")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("context")
        batch.drop_column("scores")
