"""Migration 0022 on PostgreSQL: decision ids from 36-character text to ``uuid``.

Every value is checked first: a value that is not canonical UUID text (a row written
outside chronoml) could not be stored as ``uuid`` without changing what a reader gets
back, so then every id column stays text, the log says which value stopped it, and
the code goes on with text ids (``chronoml.store.id_types``).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

from chronoml.store.id_types import CANONICAL_SQL, COLUMNS

log = logging.getLogger("chronoml.ids")


def _by_table() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, col in COLUMNS:
        out.setdefault(table, []).append(col)
    return out


def not_canonical(conn: Connection) -> tuple[str, str] | None:
    """The first stored value that is not canonical UUID text, with where it is, or None."""
    for table, col in COLUMNS:
        got = conn.execute(
            text(f"SELECT {col} FROM {table} WHERE {col} !~ :re LIMIT 1"), {"re": CANONICAL_SQL}
        ).first()
        if got is not None:
            return f"{table}.{col}", str(got[0])
    return _ref_check(conn)


def _ref_check(conn: Connection) -> tuple[str, str] | None:
    # the evidence items whose ref is joined to an id column as ``ref::uuid``: one that
    # would not parse keeps the store on text too
    got = conn.execute(
        text(
            "SELECT kind, ref FROM evidence_items "
            "WHERE kind IN ('decision', 'decision_block', 'explanation') AND ref !~ :re LIMIT 1"
        ),
        {"re": CANONICAL_SQL},
    ).first()
    if got is not None:
        return f"evidence_items.ref ({got[0]})", str(got[1])
    # archived decisions are labelled and explained by id too: a file whose first or
    # last id is not canonical (ids sort as text) holds ids no uuid column could
    got = conn.execute(
        text(
            "SELECT sha256, CASE WHEN min_id !~ :re THEN min_id ELSE max_id END "
            "FROM archive_files WHERE min_id !~ :re OR max_id !~ :re LIMIT 1"
        ),
        {"re": CANONICAL_SQL},
    ).first()
    return None if got is None else (f"archive file {got[0]}", str(got[1]))


def convert(conn: Connection) -> bool:
    """Turn every id column into ``uuid``; False (and a warning logged) when a value
    that is not canonical UUID text keeps them all text."""
    bad = not_canonical(conn)
    if bad is not None:
        log.warning(
            "decision ids kept as text: %s holds %r, which is not a canonical UUID "
            "(every id column stays text so they join as one type; chronoml works on both)",
            *bad,
        )
        return False
    for table, cols in _by_table().items():
        alters = ", ".join(f"ALTER COLUMN {c} TYPE uuid USING {c}::uuid" for c in cols)
        conn.execute(text(f"ALTER TABLE {table} {alters}"))
    log.info("decision ids stored as uuid")
    return True


def unconvert(conn: Connection) -> None:
    """Every id column back to ``varchar(36)`` (a no-op for those already text)."""
    for table, cols in _by_table().items():
        alters = ", ".join(f"ALTER COLUMN {c} TYPE varchar(36) USING {c}::text" for c in cols)
        conn.execute(text(f"ALTER TABLE {table} {alters}"))
