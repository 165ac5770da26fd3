"""PostgreSQL: decision ids as 16-byte ``uuid`` values instead of 36-character text.

``decisions.id`` and ``request_id`` and the columns joined to them (feedback,
explanations, context) become ``uuid`` when every stored value is canonical UUID
text; otherwise they all stay text, and the log says which value kept them
(``chronoml.store.id_convert``). Reads hand back the same text either way. SQLite
keeps text: nothing changes there.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

from chronoml.store import id_convert

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        id_convert.convert(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        id_convert.unconvert(bind)
