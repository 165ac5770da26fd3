"""Section 10 of bench.py: the live tables' ids as text (migration 0021) and as ``uuid``
(0022), through the real durable path: the same rows appended to two stores, interleaved
(COPY speed), bytes per decision live, a lookup by id (found and not found), then
migration 0022 of the filled text store and its bytes after."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from common import schema_store, time_lookups
from sqlalchemy import text

from chronoml.store import Store, id_types


def _bytes(store: Store) -> dict[str, int]:
    """pg_total_relation_size of each table that holds ids (every partition's)."""
    out = {}
    with store.read() as conn:
        for table in sorted({t for t, _ in id_types.COLUMNS} | {"evidence_items"}):
            out[table] = int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "WHERE c.oid = to_regclass(:t) OR c.oid IN (SELECT inhrelid FROM "
                        "pg_inherits WHERE inhparent = to_regclass(:t))"
                    ),
                    {"t": table},
                ).scalar_one()
            )
        pk = conn.execute(
            text(
                "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i "
                "JOIN pg_inherits h ON h.inhrelid = i.indrelid "
                "WHERE h.inhparent = to_regclass('decisions') AND i.indisprimary"
            )
        ).scalar_one()
        out["decisions primary key"] = int(pk)
    return out


def live_ids(
    admin: Any, work: Path, x: np.ndarray[Any, Any], batch: int, queries: int
) -> dict[str, Any]:
    # lazy: bench.py's ingest (it imports this module's siblings)
    from bench import ingest

    n = len(x)
    with schema_store(admin, work) as old, schema_store(admin, work) as new:
        old.upgrade("0021")
        new.upgrade()
        got: dict[str, Any] = {"ingest": ingest({"text": old, "uuid": new}, x, batch)}
        for st in (old, new):
            with st.engine.begin() as conn:
                conn.execute(text("ANALYZE decisions"))
        got["bytes"] = {"text": _bytes(old), "uuid": _bytes(new)}
        ids = []
        for st in (old, new):
            with st.read() as conn:
                ids.append(
                    [str(i) for i in conn.execute(text("SELECT id FROM decisions")).scalars()]
                )
        looked = time_lookups([old, new], ids, lambda h: h[:-4] + "ffff", queries, seed=10)
        got["lookup"] = dict(zip(("text", "uuid"), looked, strict=True))
        t0 = time.perf_counter()
        old.upgrade()
        got["migration_s"] = time.perf_counter() - t0
        got["bytes"]["text, migrated"] = _bytes(old)
        looked = time_lookups([old], ids[:1], lambda h: h[:-4] + "ffff", queries, seed=11)
        got["lookup"]["text, migrated"] = looked[0]
        got["rows"] = n
    return got
