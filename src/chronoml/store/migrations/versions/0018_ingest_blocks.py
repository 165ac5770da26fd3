"""Ingest blocks: a request of many rows logged as one row, its evidence as one item.

The evidence items' guard lets erasure rewrite the salts of a ``decision_block``
item (the salts of all its rows end to end, same length): erasing one row blanks
its 16 bytes. Everything else about an item stays append-only.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_SQLITE_GUARD = (
    "CREATE TRIGGER evidence_items_no_update BEFORE UPDATE ON evidence_items "
    "WHEN NEW.kind IS NOT OLD.kind OR NEW.ref IS NOT OLD.ref "
    "OR NEW.log_index IS NOT OLD.log_index OR NEW.position IS NOT OLD.position "
    "OR NEW.leaf IS NOT OLD.leaf OR NEW.commitment IS NOT OLD.commitment "
    "OR (NEW.salt IS NOT NULL AND (OLD.kind != 'decision_block' "
    "OR length(NEW.salt) != length(OLD.salt))) "
    "BEGIN SELECT RAISE(ABORT, 'evidence_items is append-only'); END"
)
_SQLITE_GUARD_BEFORE = (
    "CREATE TRIGGER evidence_items_no_update BEFORE UPDATE ON evidence_items "
    "WHEN NEW.kind IS NOT OLD.kind OR NEW.ref IS NOT OLD.ref "
    "OR NEW.log_index IS NOT OLD.log_index OR NEW.position IS NOT OLD.position "
    "OR NEW.leaf IS NOT OLD.leaf OR NEW.commitment IS NOT OLD.commitment "
    "OR NEW.salt IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'evidence_items is append-only'); END"
)


def _pg_guard(salt_rule: str) -> str:
    return (
        "CREATE OR REPLACE FUNCTION chronoml_evidence_items_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' OR NEW.kind IS DISTINCT FROM OLD.kind "
        "OR NEW.ref IS DISTINCT FROM OLD.ref OR NEW.log_index IS DISTINCT FROM OLD.log_index "
        "OR NEW.position IS DISTINCT FROM OLD.position OR NEW.leaf IS DISTINCT FROM OLD.leaf "
        f"OR NEW.commitment IS DISTINCT FROM OLD.commitment OR {salt_rule} THEN "
        "RAISE EXCEPTION 'evidence_items is append-only'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql"
    )


def upgrade() -> None:
    op.create_table(
        "ingest_blocks",
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
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("num", sa.LargeBinary, nullable=False),
        sa.Column("txt", sa.Text, nullable=True),
        sa.Column("outputs", sa.Text, nullable=False),
        sa.Column("output_num", sa.LargeBinary, nullable=False),
        sa.Column("output_none", sa.LargeBinary, nullable=True),
        sa.Column("scores", sa.LargeBinary, nullable=True),
        sa.Column("context", sa.Text, nullable=True),
        sa.Column("erased", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_ingest_blocks_endpoint_ts", "ingest_blocks", ["endpoint", "ts"])
    op.create_index("ix_ingest_blocks_unit", "ingest_blocks", ["unit"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS evidence_items_no_update")
        op.execute(_SQLITE_GUARD)
    else:
        rule = (
            "(NEW.salt IS NOT NULL AND (OLD.kind <> 'decision_block' "
            "OR length(NEW.salt) <> length(OLD.salt)))"
        )
        op.execute(_pg_guard(rule))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS evidence_items_no_update")
        op.execute(_SQLITE_GUARD_BEFORE)
    else:
        op.execute(_pg_guard("NEW.salt IS NOT NULL"))
    op.drop_index("ix_ingest_blocks_unit", "ingest_blocks")
    op.drop_index("ix_ingest_blocks_endpoint_ts", "ingest_blocks")
    op.drop_table("ingest_blocks")
