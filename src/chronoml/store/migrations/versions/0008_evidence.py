"""The evidence log: entries, subtree nodes, head, batched items, signed checkpoints.

Also guards ``ledger_head`` (no delete, no rewind) and commits everything
already stored (ledger events, decisions, feedback, explanations) to the log,
so that a store upgraded from 0006 is covered from its first row.

Revision ID: 0008
Revises: 0007
"""

import secrets

import sqlalchemy as sa
from alembic import op

from chronoml.store import evidence_backfill

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APPEND_ONLY = ("evidence_log", "evidence_nodes", "checkpoints")


def _sqlite_triggers() -> list[str]:
    out = []
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            out.append(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    for table in ("evidence_items", "evidence_head", "ledger_head"):
        out.append(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )
    # erasure may clear a decision's salt (with its inputs); nothing else changes
    out.append(
        "CREATE TRIGGER evidence_items_no_update BEFORE UPDATE ON evidence_items "
        "WHEN NEW.kind IS NOT OLD.kind OR NEW.ref IS NOT OLD.ref "
        "OR NEW.log_index IS NOT OLD.log_index OR NEW.position IS NOT OLD.position "
        "OR NEW.leaf IS NOT OLD.leaf OR NEW.commitment IS NOT OLD.commitment "
        "OR NEW.salt IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'evidence_items is append-only'); END"
    )
    out.append(
        "CREATE TRIGGER evidence_head_no_rewind BEFORE UPDATE ON evidence_head "
        "WHEN NEW.size < OLD.size OR NEW.origin IS NOT OLD.origin "
        "BEGIN SELECT RAISE(ABORT, 'evidence_head is append-only'); END"
    )
    out.append(
        "CREATE TRIGGER ledger_head_no_rewind BEFORE UPDATE ON ledger_head "
        "WHEN NEW.seq < OLD.seq "
        "BEGIN SELECT RAISE(ABORT, 'ledger_head is append-only'); END"
    )
    return out


def _pg_triggers() -> list[str]:
    out = [
        "CREATE FUNCTION chronoml_evidence_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql",
        "CREATE FUNCTION chronoml_evidence_items_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' OR NEW.kind IS DISTINCT FROM OLD.kind "
        "OR NEW.ref IS DISTINCT FROM OLD.ref OR NEW.log_index IS DISTINCT FROM OLD.log_index "
        "OR NEW.position IS DISTINCT FROM OLD.position OR NEW.leaf IS DISTINCT FROM OLD.leaf "
        "OR NEW.commitment IS DISTINCT FROM OLD.commitment OR NEW.salt IS NOT NULL THEN "
        "RAISE EXCEPTION 'evidence_items is append-only'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql",
        "CREATE FUNCTION chronoml_ledger_head_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq THEN "
        "RAISE EXCEPTION 'ledger_head is append-only'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql",
        "CREATE FUNCTION chronoml_evidence_head_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' OR NEW.size < OLD.size OR NEW.origin IS DISTINCT FROM OLD.origin "
        "THEN RAISE EXCEPTION 'evidence_head is append-only'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql",
    ]
    for table in APPEND_ONLY:
        out.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION chronoml_evidence_append_only()"
        )
    out.append(
        "CREATE TRIGGER evidence_items_append_only BEFORE UPDATE OR DELETE ON evidence_items "
        "FOR EACH ROW EXECUTE FUNCTION chronoml_evidence_items_guard()"
    )
    for table in ("ledger_head", "evidence_head"):
        out.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION chronoml_{table}_guard()"
        )
    return out


def upgrade() -> None:
    op.create_table(
        "evidence_log",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.BigInteger, nullable=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=True),
        sa.Column("committed_at", sa.BigInteger, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_evidence_log_kind", "evidence_log", ["kind", "ref"])
    op.create_table(
        "evidence_nodes",
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    head = op.create_table(
        "evidence_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("peaks", sa.LargeBinary, nullable=False),
    )
    # the log's name in its checkpoints: unique per store, so two stores' checkpoints never mix
    origin = f"chronoml.log/{secrets.token_hex(8)}"
    op.bulk_insert(head, [{"id": 1, "origin": origin, "size": 0, "peaks": b""}])
    op.create_table(
        "evidence_items",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=True),
        sa.Column("commitment", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("kind", "ref"),
    )
    op.create_index("ix_evidence_items_log", "evidence_items", ["log_index", "position"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    evidence_backfill.backfill(op.get_bind())
    bind = op.get_bind()
    statements = _sqlite_triggers() if bind.dialect.name == "sqlite" else _pg_triggers()
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in ("ledger_head", "evidence_head"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS chronoml_ledger_head_guard() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS chronoml_evidence_head_guard() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS chronoml_evidence_items_guard() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS chronoml_evidence_append_only() CASCADE")
    else:
        for name in ("ledger_head_no_rewind", "ledger_head_no_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in ("checkpoints", "evidence_items", "evidence_head", "evidence_nodes"):
        op.drop_table(table)
    op.drop_index("ix_evidence_log_kind", "evidence_log")
    op.drop_table("evidence_log")
