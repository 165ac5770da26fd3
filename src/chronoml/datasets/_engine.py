"""The DuckDB side of the point-in-time join: from keys to (label row, feature row) pairs.

Inputs are a registered ``lab`` relation (``e`` entity, ``k`` integer time, ``r`` label
row) and a feature source with ``e``, ``k``, ``r`` (row in its table) and, when given,
``c`` (created at, same unit as ``k``). Only keys cross into DuckDB; the feature values
are gathered by row number afterwards.
"""

from __future__ import annotations

import duckdb
import numpy as np

# Packed keys must stay well inside BIGINT.
_PACK_LIMIT = 1 << 62


def match(
    con: duckdb.DuckDBPyConnection,
    source: str,
    table_rows: int,
    labels: int,
    ttl: int | None,
    created: bool,
    granularities: tuple[int, ...],
) -> np.ndarray:
    """For each label row, its feature row's number (``r``) in ``source``, or -1.

    ``ttl`` is in the unit of ``k``; ``granularities`` are the steps (largest first) that
    times may be whole multiples of, used to pack the tie-break into one integer key.
    """
    window = "" if ttl is None else f" AND best_k >= l.k - {int(ttl)}"
    sql: str | None
    if created:
        sql = _created_sql(source, window)
    else:
        sql = _latest_sql(con, source, table_rows, window, granularities)
    pos = np.full(labels, -1, dtype=np.int64)
    if sql is None:
        return pos
    pairs = con.sql(sql).to_arrow_table()
    pos[pairs.column("lr").to_numpy()] = pairs.column("fr").to_numpy()
    return pos


def _latest_sql(
    con: duckdb.DuckDBPyConnection,
    source: str,
    table_rows: int,
    window: str,
    granularities: tuple[int, ...],
) -> str | None:
    valid = f"FROM {source} WHERE e IS NOT NULL AND k IS NOT NULL"
    checks = ", ".join(f"bool_and(k % {g} = 0)" for g in granularities)
    (row,) = con.execute(f"SELECT count(*), min(k), max(k), {checks} {valid}").fetchall()
    count, kmin, kmax, *whole = row
    if not count:
        return None
    # Ties in time go to the later row. DuckDB's ASOF picks arbitrarily among equal keys,
    # so the key must be unique: time then row number, packed into one BIGINT when the
    # times are whole steps (seconds, say) over a span that leaves room for the row
    # number; otherwise one row per (entity, time) is kept first, which costs more.
    step = next((g for g, ok in zip(granularities, whole, strict=True) if ok), 1)
    room = 1 << max(1, int(table_rows).bit_length())
    if ((kmax - kmin) // step + 1) * room < _PACK_LIMIT:
        return f"""
            SELECT l.r AS lr, f.r AS fr
            FROM (
                SELECT r, e, k, CASE WHEN k < {kmin} THEN -1
                    ELSE ((least(k, {kmax}) - {kmin}) // {step}) * {room} + {room - 1} END AS s
                FROM lab WHERE k IS NOT NULL  -- least() would skip a null k
            ) AS l
            ASOF JOIN (
                SELECT e, r, k AS best_k, ((k - {kmin}) // {step}) * {room} + r AS s {valid}
            ) AS f
            ON l.e = f.e AND l.s >= f.s
            WHERE true{window}"""
    return f"""
        SELECT l.r AS lr, f.r AS fr
        FROM lab AS l ASOF JOIN (
            SELECT e, k AS best_k, max(r) AS r {valid} GROUP BY e, k
        ) AS f
        ON l.e = f.e AND l.k >= f.best_k
        WHERE true{window}"""


def _created_sql(source: str, window: str) -> str:
    # A row becomes visible at greatest(time, created_at). At a label time t the eligible
    # rows are those visible by t; the one to use is the best of them by (time,
    # created_at, row), which a running max over visibility order gives, so a row recorded
    # late falls back to the previous eligible one instead of to null.
    return f"""
        WITH f AS (
            SELECT e, k, coalesce(c, k) AS c, r FROM {source}
            WHERE e IS NOT NULL AND k IS NOT NULL
        ), g AS (
            SELECT e, greatest(k, c) AS v,
                   max(struct_pack(k := k, c := c, r := r)) OVER (
                       PARTITION BY e ORDER BY greatest(k, c)
                       RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS b
            FROM f
        )
        SELECT l.r AS lr, g.b.r AS fr
        FROM lab AS l ASOF JOIN (SELECT e, v, b, b.k AS best_k FROM g) AS g
        ON l.e = g.e AND l.k >= g.v
        WHERE true{window}"""
