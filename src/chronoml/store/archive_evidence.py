"""What ``audit verify`` reads of the archive: its evidence items with their files' rows,
the replacements' consistency, each file's leaf, and archived decisions by id for a
pass over the whole log."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, select

from chronoml.domain.archive import ArchiveError, FileLeaf, index_digest
from chronoml.store import archive_parquet as AP
from chronoml.store import schema
from chronoml.store.archive_reads import file_bytes
from chronoml.store.archive_schema import live
from chronoml.store.database import Store

F = schema.archive_files


def archive_items(conn: Connection) -> Any:
    """Archive evidence rows joined to their file's row (absent: NULL columns)."""
    ITEMS = schema.evidence_items
    U = schema.archive_units
    q = (
        select(ITEMS.c.log_index, ITEMS.c.position, ITEMS.c.ref, ITEMS.c.leaf, *F.c, U.c.units)
        .select_from(
            ITEMS.outerjoin(F, F.c.sha256 == ITEMS.c.ref).outerjoin(U, U.c.sha256 == ITEMS.c.ref)
        )
        .where(ITEMS.c.kind == "archive")
        .order_by(ITEMS.c.log_index, ITEMS.c.position)
    )
    yield from conn.execute(q).mappings()


def replacement_problems(conn: Connection) -> list[tuple[str, str]]:
    """Replacements whose new file is not recorded or does not hold the same decisions
    (same endpoint, layout, time range, rows and ids): (what, why)."""
    R = schema.archive_replacements
    old, new = F.alias("old"), F.alias("new")
    q = (
        select(R.c.old_sha256, R.c.new_sha256, *old.c, *new.c)
        .select_from(
            R.outerjoin(old, old.c.sha256 == R.c.old_sha256).outerjoin(
                new, new.c.sha256 == R.c.new_sha256
            )
        )
        .order_by(R.c.replaced_at, R.c.old_sha256)
    )
    keys = ("endpoint", "layout", "ts_min", "ts_max", "rows", "min_id", "max_id")
    out = []
    n = len(F.c)
    for r in conn.execute(q).all():
        o, w = r[2 : 2 + n], r[2 + n :]
        what = f"archive file {r[0]}"
        if o[0] is None:
            out.append((what, "it is recorded as replaced, but its own row is gone"))
        elif w[0] is None:
            out.append((what, f"it is replaced by {r[1]}, which is not recorded"))
        else:
            a, b = dict(zip(F.c.keys(), o, strict=True)), dict(zip(F.c.keys(), w, strict=True))
            if any(a[k] != b[k] for k in keys):
                out.append((what, f"it is replaced by {r[1]}, which holds other decisions"))
    return out


def file_leaf(r: Any) -> FileLeaf | None:
    """The leaf of an archive file's row (a mapping of its columns), or None when gone."""
    if r["sha256"] is None:
        return None
    units = r.get("units")  # its unit index, recorded with it (None: a file without one)
    return FileLeaf(
        r["sha256"], r["endpoint"], r["layout"], int(r["ts_min"]), int(r["ts_max"]),
        int(r["rows"]), r["min_id"], r["max_id"],
        None if units is None else index_digest(bytes(units)),
    )  # fmt: skip


class Archived:
    """Archived decisions by id for a pass over the whole log (``audit verify --decisions``).

    Each file is fetched once, its digest checked against its name, and its
    rows kept while the pass is in its time range (log order is time order).
    """

    def __init__(self, store: Store) -> None:
        with store.read() as conn:
            # a replaced file's decisions are in the file that replaced it
            self.files = list(conn.execute(select(F).where(live()).order_by(F.c.min_id)).all())
        self.loaded: OrderedDict[str, dict[str, tuple[Any, ...]]] = OrderedDict()
        self.problems: list[tuple[str, str]] = []  # (what, why)

    def _load(self, f: Any) -> dict[str, tuple[Any, ...]]:
        got = self.loaded.get(f.sha256)
        if got is not None:
            return got
        got = {}
        try:
            table = AP.read(file_bytes(f.sha256, f.target))
            got = {r[0]: r for r in AP.rows(table, AP.layout_of(table))}
        except ArchiveError as exc:
            self.problems.append((f"archive file {f.sha256}", exc.message))
        self.loaded[f.sha256] = got
        while len(self.loaded) > 4:
            self.loaded.popitem(last=False)
        return got

    def get(self, decision_id: str) -> tuple[Any, ...] | None:
        # the files already loaded first: the pass reads decisions in time order
        for rows in reversed(self.loaded.values()):
            r = rows.get(decision_id)
            if r is not None:
                return r
        for f in self.files:
            if f.min_id <= decision_id <= f.max_id:
                r = self._load(f).get(decision_id)
                if r is not None:
                    return r
        return None
