"""Decision ids as 16-byte ``uuid`` values on PostgreSQL (migration 0022), text elsewhere.

The ids chronoml makes are canonical UUID text (``chronoml.ids``): lowercase hex in
8-4-4-4-12 groups. On PostgreSQL the live columns that hold a decision id and are
joined to one another (:data:`COLUMNS`) become ``uuid``, 16 bytes against 37 as text.
SQLite keeps text: its driver has no per-column loader, so a BLOB id would need
converting at every read that takes the driver's own rows.

Every reader keeps seeing the same text as before, because a loader registered on
each PostgreSQL connection (:func:`register_loaders`) hands a ``uuid`` value back as
PostgreSQL writes it, which is the canonical text. That is done at the driver and
not with a SQLAlchemy type because many reads run text SQL or the driver's own
cursor (verify, the archive, the log writer), which a column type never sees.

A store whose columns held a value that is not canonical UUID text when it migrated
(a row written outside chronoml) keeps all of them as text, so the columns joined to
one another always have one type; the code works on both (:func:`uuid_ids`).
"""

from __future__ import annotations

import re
import uuid
import weakref
from typing import Any

from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy import ColumnElement, Engine, String, Uuid, cast, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

# (table, column): every live column that holds a decision id and is joined to another.
# Not converted: ``evidence_items.ref`` (every kind of evidence's key), ``input_reads``
# (the access log keeps the id as asked for), the ingest blocks (two ids per block of
# many decisions, and read in binary by the archive), the archive's tables.
COLUMNS = (
    ("decisions", "id"),
    ("decisions", "request_id"),
    ("feedback", "decision_id"),
    ("explanations", "decision_id"),
    ("decision_context", "decision_id"),
)
CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# the same test in PostgreSQL's regular expressions, over a column's text
CANONICAL_SQL = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def is_canonical(value: str) -> bool:
    """Whether ``value`` is a UUID written as chronoml and PostgreSQL write one."""
    return len(value) == 36 and CANONICAL.fullmatch(value) is not None


class _Untyped(UserDefinedType[str]):
    """Text bound with no type named: PostgreSQL takes the column's, uuid or text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "VARCHAR(36)"

    def literal_processor(self, dialect: Dialect) -> Any:
        def quoted(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        return quoted


class DecisionId(TypeDecorator[str]):
    """The type of a column holding a decision id (see the module's text).

    SQLAlchemy's PostgreSQL driver would cast a text value to VARCHAR, and ``uuid =
    varchar`` has no operator: the value goes untyped instead, so one statement
    compares on the column's own index whichever type the store has.
    """

    impl = String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return _Untyped()
        return dialect.type_descriptor(String(36))


class _UuidText(Loader):
    def load(self, data: Any) -> str:
        return bytes(data).decode("ascii")


class _UuidBinary(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> str:
        return str(uuid.UUID(bytes=bytes(data)))


def register_loaders(dbapi_conn: Any) -> None:
    """``uuid`` values come back as their canonical text on this connection."""
    dbapi_conn.adapters.register_loader("uuid", _UuidText)
    dbapi_conn.adapters.register_loader("uuid", _UuidBinary)


# Whether each engine's store has uuid ids: a fact of its schema, read once per engine
# (a store has two: writes and lookups) and forgotten when the schema changes.
_KNOWN: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()

_TYPE_SQL = text(
    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = to_regclass('decisions') AND attname = 'id'"
)


def uuid_ids(conn: Any) -> bool:
    """Whether the store of ``conn`` (a SQLAlchemy connection) holds ids as ``uuid``."""
    if conn.dialect.name != "postgresql":
        return False
    engine = conn.engine
    got = _KNOWN.get(engine)
    if got is None:
        got = conn.execute(_TYPE_SQL).scalar() == "uuid"
        _KNOWN[engine] = got
    return got


def engine_uuid_ids(engine: Engine) -> bool:
    """:func:`uuid_ids` for code that holds an engine (and the driver's connections)."""
    if engine.dialect.name != "postgresql":
        return False
    got = _KNOWN.get(engine)
    if got is None:
        with engine.connect() as conn:
            got = uuid_ids(conn)
    return got


def forget(*engines: Engine) -> None:
    """Read the id type afresh (after a migration)."""
    for engine in engines:
        _KNOWN.pop(engine, None)


def may_hold(conn: Any, decision_id: str) -> bool:
    """Whether the store could hold ``decision_id``: any text in a text column, only
    canonical UUID text in a ``uuid`` one (where other text would fail to parse)."""
    return is_canonical(decision_id) or not uuid_ids(conn)


def bindable(conn: Any, decision_id: str) -> str | None:
    """``decision_id`` as a parameter compared with an id column: None (which matches
    nothing, where text that does not parse would fail the statement) when the store
    cannot hold it."""
    return decision_id if may_hold(conn, decision_id) else None


def held(conn: Any, ids: list[str]) -> list[str]:
    """The ids of ``ids`` the store could hold (:func:`may_hold`), in order."""
    if not ids or not uuid_ids(conn):
        return ids
    return [i for i in ids if is_canonical(i)]


def ref_as_id(conn: Any, ref: ColumnElement[Any]) -> ColumnElement[Any]:
    """The text ``ref`` (an evidence item's) as the type of the store's ids, so a join
    to an id column probes that column's index (refs joined so always parse: 0022
    checks them)."""
    return cast(ref, Uuid(as_uuid=False)) if uuid_ids(conn) else ref
