"""Turning a plain table of decisions into a day-partitioned one and back (migrations).

Migration 0012 converts ``decisions``, migration 0020 ``ingest_blocks``; the
same steps serve both, and their downgrades run :func:`unconvert`.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from chronoml.store.partitions import (
    AHEAD_DAYS,
    DAY_US,
    PARENT,
    _quote,
    day_start,
    default_of,
    is_partitioned,
    name_for,
)

_ON_TABLE = re.compile(r" ON (?:ONLY )?\S+ USING ")


def _index_defs(conn: Connection, table: str) -> list[tuple[str, str, bool, bool]]:
    return [
        (r[0], r[1], bool(r[2]), bool(r[3]))
        for r in conn.execute(
            text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = to_regclass(:t)"
            ),
            {"t": table},
        ).all()
    ]


def convert(conn: Connection, now: int, ahead_days: int = AHEAD_DAYS, parent: str = PARENT) -> int:
    """Turn the plain table ``parent`` into the partitioned one, keeping every row.

    Columns, defaults and checks are copied from the table as it is (whatever
    earlier migrations made of it); the primary key gains ``ts``; other
    indexes are made again on the parent (so on every partition). Day
    partitions are made for each day that has rows and for today and the days
    ahead. Returns the rows copied.
    """
    if conn.dialect.name != "postgresql" or is_partitioned(conn, parent):
        return 0
    table = _quote(parent)
    old = _quote(f"{parent}_unpartitioned")
    defs = _index_defs(conn, parent)
    pkey = conn.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"
        ),
        {"t": parent},
    ).scalar()
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    if pkey is not None:
        conn.execute(
            text(
                f"ALTER TABLE {old} RENAME CONSTRAINT {_quote(pkey)} TO {parent}_unpartitioned_pkey"
            )
        )
    for name, _, primary, _ in defs:
        if not primary:
            conn.execute(text(f"ALTER INDEX {_quote(name)} RENAME TO {_quote(name + '_old')}"))
    conn.execute(
        text(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (ts)"
        )
    )
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {parent}_pkey PRIMARY KEY (id, ts)"))
    for _name, ddl, primary, unique in defs:
        if primary:
            continue
        made = _ON_TABLE.sub(f" ON {table} USING ", ddl, count=1)
        if unique and "ts" not in re.findall(r"\w+", made.split(" USING ", 1)[1]):
            # a unique index must hold the partition key too
            made = made.rstrip(")") + ", ts)"
        conn.execute(text(made))
    conn.execute(text(f"CREATE TABLE {_quote(default_of(parent))} PARTITION OF {table} DEFAULT"))
    days = [
        int(d)
        for (d,) in conn.execute(
            text(f"SELECT DISTINCT ts - ts % {DAY_US} FROM {old} ORDER BY 1")
        ).all()
    ]
    today = day_start(now)
    for start in sorted(set(days) | {today + k * DAY_US for k in range(ahead_days + 1)}):
        conn.execute(
            text(
                f"CREATE TABLE {_quote(name_for(start, parent))} PARTITION OF {table}"
                f" FOR VALUES FROM ({start}) TO ({start + DAY_US})"
            )
        )
    copied = conn.execute(text(f"INSERT INTO {table} SELECT * FROM {old}")).rowcount
    conn.execute(text(f"DROP TABLE {old}"))
    return int(copied or 0)


def unconvert(conn: Connection, parent: str = PARENT) -> None:
    """The reverse of :func:`convert`: one plain table with ``id`` as its key, rows kept."""
    if not is_partitioned(conn, parent):
        return
    table = _quote(parent)
    old = _quote(f"{parent}_partitioned")
    defs = _index_defs(conn, parent)
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    conn.execute(
        text(f"ALTER TABLE {old} RENAME CONSTRAINT {parent}_pkey TO {parent}_partitioned_pkey")
    )
    for name, _, primary, _ in defs:
        if not primary:
            conn.execute(text(f"ALTER INDEX {_quote(name)} RENAME TO {_quote(name + '_old')}"))
    conn.execute(
        text(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING STORAGE INCLUDING COMMENTS)"
        )
    )
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {parent}_pkey PRIMARY KEY (id)"))
    for _, ddl, primary, _ in defs:
        if not primary:
            conn.execute(text(_ON_TABLE.sub(f" ON {table} USING ", ddl, count=1)))
    conn.execute(text(f"INSERT INTO {table} SELECT * FROM {old}"))
    conn.execute(text(f"DROP TABLE {old} CASCADE"))
