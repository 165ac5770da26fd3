"""Initial schema: ledger, head, snapshots, input layouts, decisions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "ledger_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("effective_at", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("back", sa.BigInteger, nullable=True),
        sa.Column("sets_state", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_ledger_state", "ledger_events", ["endpoint", "sets_state", "effective_at", "seq"]
    )
    op.create_index("ix_ledger_endpoint_seq", "ledger_events", ["endpoint", "seq"])
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(71), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=True),
    )
    op.create_table(
        "input_layouts",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("columns", sa.Text, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("unit", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("layout", sa.String(16), nullable=False),
        sa.Column("num", sa.LargeBinary, nullable=False),
        sa.Column("txt", sa.Text, nullable=True),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("output_num", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_decisions_endpoint_ts", "decisions", ["endpoint", "ts"])

    # The ledger is append-only at the database level too. Someone with the
    # power to drop these triggers can still edit rows; `audit verify` is
    # what catches that.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_no_{verb.lower()} BEFORE {verb} ON ledger_events "
                "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END"
            )
    elif bind.dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION chronoml_ledger_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'ledger_events is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_events "
            "FOR EACH ROW EXECUTE FUNCTION chronoml_ledger_append_only()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_append_only ON ledger_events")
        op.execute("DROP FUNCTION IF EXISTS chronoml_ledger_append_only()")
    for table in ("decisions", "input_layouts", "snapshots", "ledger_head", "ledger_events"):
        op.drop_table(table)
