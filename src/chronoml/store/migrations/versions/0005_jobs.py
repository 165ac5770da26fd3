"""Retraining: per-endpoint configuration, durable jobs and their steps.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrain_configs",
        sa.Column("endpoint", sa.String(200), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("next_run_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        # the endpoint while the job is unfinished, NULL after: UNIQUE makes
        # "at most one job per endpoint at a time" a database rule
        sa.Column("active", sa.String(200), nullable=True, unique=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("step_state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.BigInteger, nullable=True),
        sa.Column("snapshot_id", sa.String(71), nullable=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("champion", sa.String(200), nullable=True),
        sa.Column("challenger", sa.String(200), nullable=True),
        sa.Column("deploy_seq", sa.BigInteger, nullable=True),
        sa.Column("verdict_seq", sa.BigInteger, nullable=True),
        sa.Column("final_seq", sa.BigInteger, nullable=True),
        sa.Column("evaluation", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("log", sa.Text, nullable=True),
    )
    op.create_index("ix_jobs_endpoint", "jobs", ["endpoint", "id"])
    op.create_table(
        "job_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("ledger_seq", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_job_steps_job", "job_steps", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_steps_job", "job_steps")
    op.drop_table("job_steps")
    op.drop_index("ix_jobs_endpoint", "jobs")
    op.drop_table("jobs")
    op.drop_table("retrain_configs")
