"""PostgreSQL: the decision log partitioned by time (one partition per UTC day).

Every existing row is copied into its day's partition; the primary key
becomes (id, ts). SQLite keeps its one table: nothing changes there.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from chronoml.store import partition_convert
from chronoml.timeutil import now_us

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        partition_convert.convert(bind, now_us())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        partition_convert.unconvert(bind)
