"""What the tests of PostgreSQL's day partitions share: ids made at a given time, where
a row is stored, a statement as the server plans it, and an insider's second row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from chronoml.ids import new_id
from chronoml.store import Store


def id_at(ident: str, ts_us: int) -> str:
    """``ident`` (a UUIDv7) with its millisecond prefix replaced: an id made at ``ts_us``."""
    h = ident.replace("-", "")
    h = f"{ts_us // 1000:012x}" + h[12:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id_at(ts_us: int) -> str:
    """A fresh UUIDv7 id made at ``ts_us``."""
    return id_at(new_id(), ts_us)


def partition_of(store: Store, table: str, ident: str) -> str:
    """The partition of ``table`` that holds the row with id ``ident``."""
    with store.read() as conn:
        return str(
            conn.execute(
                text(f"SELECT tableoid::regclass::text FROM {table} WHERE id = :i"), {"i": ident}
            ).scalar_one()
        )


def compiled(stmt: object) -> str:
    """``stmt`` with its parameters inlined, as PostgreSQL receives it."""
    return str(
        stmt.compile(  # type: ignore[attr-defined]
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )


def copy_under_its_id(
    store: Store, table: str, ident: str, changes: str, params: dict[str, Any]
) -> None:
    """What an insider can do on day partitions keyed by (id, ts): store a second row under
    the id ``ident`` of ``table``, a copy with ``changes`` (an ``UPDATE ... SET`` list with
    ``%(name)s`` parameters) applied."""
    with store.write() as conn:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE copied AS SELECT * FROM {table} WHERE id = %(i)s", {"i": ident}
        )
        conn.exec_driver_sql(f"UPDATE copied SET {changes}", params)
        conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM copied")
        conn.exec_driver_sql("DROP TABLE copied")
