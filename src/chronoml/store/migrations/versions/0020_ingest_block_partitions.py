"""PostgreSQL: ingest blocks partitioned by time like the decision rows (one per UTC day).

Every existing block is copied into its day's partition; the primary key
becomes (id, ts). SQLite keeps its one table: nothing changes there.

Revision ID: 0020
Revises: 0018
"""

from alembic import op

from chronoml.store import partition_convert
from chronoml.store.partitions import BLOCKS
from chronoml.timeutil import now_us

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        partition_convert.convert(bind, now_us(), parent=BLOCKS)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        partition_convert.unconvert(bind, parent=BLOCKS)
