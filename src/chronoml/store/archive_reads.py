"""Reading archived decisions back, so every reader sees one decision log.

Files are chosen by the database's index of them (endpoint and time range, or
id range for a lookup), then read with pyarrow with the time (or id) filter
pushed down to the row groups; a window's files are read on two threads and
filtered only where the window's edges cut them. Every decision of an endpoint below its
archive mark is in the files and none is left in the database, so readers
take the archived part of a range from here and the rest from their query.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from chronoml.domain.archive import ArchiveError, FileLeaf, Target, file_name, index_digest
from chronoml.domain.codec import NUMERIC_KINDS, Schema
from chronoml.store import archive_parquet as AP
from chronoml.store import schema
from chronoml.store.archive_objects import open_objects
from chronoml.store.archive_schema import live
from chronoml.store.database import Store
from chronoml.store.id_types import held
from chronoml.worker import parallel

F = schema.archive_files
M = schema.archive_marks
FB = schema.feedback

CACHE_BYTES = 256 * 1024 * 1024
READERS = min(2, os.cpu_count() or 1)  # files of one window read at once


class _Cache:
    """Recently read files by digest (they never change), up to CACHE_BYTES."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.size = 0

    def get(self, sha: str, target_json: str) -> bytes:
        with self.lock:
            got = self.items.get(sha)
            if got is not None:
                self.items.move_to_end(sha)
                return got
        target = Target.from_dict(orjson.loads(target_json))
        data = open_objects(target).get(file_name(sha))
        if hashlib.sha256(data).hexdigest() != sha:
            # never serve (or keep) a file whose bytes changed since it was committed
            raise ArchiveError(f"archive file {sha} no longer matches its digest", "archive")
        with self.lock:
            if sha not in self.items and len(data) <= CACHE_BYTES:
                self.items[sha] = data
                self.size += len(data)
                while self.size > CACHE_BYTES:
                    _, old = self.items.popitem(last=False)
                    self.size -= len(old)
        return data

    def forget(self, sha: str) -> None:
        with self.lock:
            got = self.items.pop(sha, None)
            if got is not None:
                self.size -= len(got)


_cache = _Cache()


def file_bytes(sha: str, target_json: str) -> bytes:
    """An archive file's bytes, checked against its digest (kept in the cache)."""
    return _cache.get(sha, target_json)


def forget(sha: str) -> None:
    """Drop a file from the cache (a file replaced by a rewrite, whose object is gone)."""
    _cache.forget(sha)


def target_of(target_json: str) -> dict[str, Any]:
    """The stored target of a file (JSON: URL, endpoint URL, credential references)."""
    got: dict[str, Any] = orjson.loads(target_json)
    return got


layout_of = AP.layout_of


def _table(
    f: Any, columns: Sequence[str] | None, filters: list[tuple[str, str, Any]]
) -> tuple[pa.Table, Schema]:
    data = _cache.get(f.sha256, f.target)
    table = AP.read(data, columns=None if columns is None else list(columns), filters=filters)
    return table, layout_of(table)


def mark(store: Store, endpoint: str) -> int | None:
    with store.read() as conn:
        v = conn.execute(select(M.c.archived_to).where(M.c.endpoint == endpoint)).scalar()
    return None if v is None else int(v)


def _files(store: Store, endpoint: str, start: int, stop: int) -> list[Any]:
    q = (
        select(F)
        .where(F.c.endpoint == endpoint, F.c.ts_max >= start, F.c.ts_min < stop, live())
        .order_by(F.c.ts_min)
    )
    with store.read() as conn:
        return list(conn.execute(q).all())


def span(store: Store, endpoint: str, start: int, end: int) -> tuple[int, int] | None:
    """The archived part ``[start, stop)`` of ``[start, end)``, or None when none is."""
    m = mark(store, endpoint)
    if m is None or start >= m:
        return None
    return start, min(end, m)


def find(conn: Connection, decision_id: str) -> tuple[Any, ...] | None:
    """An archived decision as a tuple in ``decisions.COLUMNS`` order, or None."""
    q = select(F).where(F.c.min_id <= decision_id, F.c.max_id >= decision_id, live())
    for f in conn.execute(q).all():
        table, sch = _table(f, None, [("id", "==", decision_id)])
        if table.num_rows:
            return AP.rows(table, sch)[0]
    return None


def _filters(
    start: int,
    stop: int,
    *,
    shadow: bool | None,
    variant: str | None,
    version: str | None,
) -> list[tuple[str, str, Any]]:
    got: list[tuple[str, str, Any]] = [("ts", ">=", start), ("ts", "<", stop)]
    if shadow is not None:
        got.append(("shadow", "==", shadow))
    if variant is not None:
        got.append(("variant", "==", variant))
    if version is not None:
        got.append(("model_version", "==", version))
    return got


Part = tuple[str, str, dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def window_parts(
    store: Store, endpoint: str, start: int, end: int, *, variant: str | None, include_shadow: bool
) -> tuple[list[Part], int]:
    """Archived decisions of a window as ``decisions.window`` parts; and where the database
    takes over. The files are read on ``READERS`` threads (pyarrow's decoding releases
    the GIL), each with only the columns the window needs; then the numeric inputs of
    each (variant, version) are decoded straight into one array per input, each file
    into its own rows of it (no array per file joined after)."""
    got = span(store, endpoint, start, end)
    if got is None:
        return [], start
    lo, stop = got

    def one(f: Any) -> list[tuple[str, str, Schema, pa.Table]]:
        data = _cache.get(f.sha256, f.target)
        return _window_file(data, f, lo, stop, variant, include_shadow)

    files = _files(store, endpoint, lo, stop)
    pieces = [p for got in parallel(READERS)(one, files) for p in got]
    groups: dict[tuple[str, str, Schema], list[pa.Table]] = {}
    for vname, version, sch, sub in pieces:
        groups.setdefault((vname, version, sch), []).append(sub)
    parts: list[Part] = []
    for (vname, version, sch), subs in groups.items():
        if any(k not in NUMERIC_KINDS for _, k in sch):  # texts too: a part per file
            for sub in subs:
                outs = sub.column("output_num").to_numpy(zero_copy_only=False)
                parts.append((vname, version, AP.columns(AP.logical(sub), sch), outs))
            continue
        at = np.cumsum([0] + [sub.num_rows for sub in subs]).tolist()
        cols = {c: np.empty(at[-1], dtype=np.float64) for c, _ in AP.numeric_inputs(sch)}

        def fill(i: int) -> None:
            AP.fill_inputs(subs[i], sch, cols, at[i])  # noqa: B023 (run before the loop moves)

        list(parallel(READERS)(fill, range(len(subs))))
        outs = np.concatenate(
            [sub.column("output_num").to_numpy(zero_copy_only=False) for sub in subs]
        )
        parts.append((vname, version, cols, outs.astype(np.float64)))
    return parts, stop


TimedPart = tuple[
    str, str, np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]
]


def timed_parts(store: Store, endpoint: str, start: int, end: int) -> tuple[list[TimedPart], int]:
    """Archived answered decisions of ``[start, end)`` as ``(variant, version, ts, inputs,
    outputs)``, in time order, a file and a version at a time (the drift grid's reads);
    and where the database takes over."""
    got = span(store, endpoint, start, end)
    if got is None:
        return [], start
    lo, stop = got

    def one(f: Any) -> list[TimedPart]:
        data = _cache.get(f.sha256, f.target)
        out = []
        for vname, version, sch, sub in _window_file(data, f, lo, stop, None, False, True):
            ts = sub.column("ts").to_numpy()
            order = np.argsort(ts, kind="stable")  # a file is in (ts, id) order: no change
            cols = AP.columns(AP.logical(sub), sch)
            outs = sub.column("output_num").to_numpy(zero_copy_only=False).astype(np.float64)
            out.append(
                (vname, version, ts[order], {c: v[order] for c, v in cols.items()}, outs[order])
            )
        return out

    files = _files(store, endpoint, lo, stop)
    return [p for got in parallel(READERS)(one, files) for p in got], stop


def _window_file(
    data: bytes,
    f: Any,
    lo: int,
    stop: int,
    variant: str | None,
    include_shadow: bool,
    with_ts: bool = False,
) -> list[tuple[str, str, Schema, pa.Table]]:
    """One file's decisions of ``[lo, stop)`` (no shadow ones unless ``include_shadow``;
    of ``variant`` when given), per (variant, version), as stored. A file wholly inside
    the window is not filtered on time, and the shadow flags only when one is set: no
    row is copied. ``with_ts``: the times are read whether or not they are needed to cut."""
    sch = AP.layout(data)
    inside = int(f.ts_min) >= lo and int(f.ts_max) < stop
    wanted = ["variant", "model_version", "output_num", *AP.input_names(sch)]
    if any(k not in NUMERIC_KINDS for _, k in sch):
        wanted.append("txt")
    wanted += ([] if inside and not with_ts else ["ts"]) + ([] if include_shadow else ["shadow"])
    table = AP.read_stored(data, wanted, dictionary=["variant", "model_version"])
    keep = None
    if not inside:
        ts = table.column("ts").to_numpy()
        keep = (ts >= lo) & (ts < stop)
    if not include_shadow:
        shadow = table.column("shadow").to_numpy(zero_copy_only=False)
        if shadow.any():
            keep = ~shadow if keep is None else keep & ~shadow
    if variant is not None:
        same = pc.equal(table.column("variant").cast(pa.string()), variant)
        mine = same.to_numpy(zero_copy_only=False)
        keep = mine if keep is None else keep & mine
    if keep is not None and not keep.all():
        table = table.filter(pa.array(keep))
    if table.num_rows == 0:
        return []
    return [(vname, version, sch, sub) for (vname, version), sub in _groups(table)]


def _groups(table: pa.Table) -> list[tuple[tuple[str, str], pa.Table]]:
    """The rows of each (variant, version) (read as dictionaries: a file usually holds
    one of each, and then no row is looked at)."""
    cols = [table.column(c).combine_chunks() for c in ("variant", "model_version")]
    if all(isinstance(c, pa.DictionaryArray) and len(c.dictionary) == 1 for c in cols):
        return [((cols[0].dictionary[0].as_py(), cols[1].dictionary[0].as_py()), table)]
    plain = pa.table({"variant": cols[0].cast(pa.string()), "v": cols[1].cast(pa.string())})
    keys = plain.group_by(["variant", "v"]).aggregate([]).to_pylist()
    if len(keys) == 1:
        k = keys[0]
        return [((k["variant"], k["v"]), table)]
    out = []
    for k in keys:
        mask = pc.and_(
            pc.equal(plain.column("variant"), k["variant"]), pc.equal(plain.column("v"), k["v"])
        )
        out.append(((k["variant"], k["v"]), table.filter(mask)))
    return out


def rows(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    names: Sequence[str],
    *,
    shadow: bool | None = None,
    variant: str | None = None,
    version: str | None = None,
    event_seqs: Sequence[int] | None = None,
) -> list[tuple[Any, ...]]:
    """Archived decisions of ``[start, end)`` as tuples of the columns ``names``
    (any of ``decisions.COLUMNS``), in (ts, id) order."""
    got = span(store, endpoint, start, end)
    if got is None:
        return []
    lo, stop = got
    filters = _filters(lo, stop, shadow=shadow, variant=variant, version=version)
    if event_seqs is not None:
        filters.append(("event_seq", "in", list(event_seqs)))
    out: list[tuple[Any, ...]] = []
    for f in _files(store, endpoint, lo, stop):
        table, sch = _table(f, None, filters)
        if table.num_rows == 0:
            continue
        if "num" in names:
            full = AP.rows(table, sch)
            idx = [AP.COLUMNS.index(n) for n in names]
            out += [tuple(r[i] for i in idx) for r in full]
        else:
            cols = [table.column(n).to_pylist() for n in names]
            out += list(zip(*cols, strict=True))
    if "ts" in names and "id" in names:
        ti, ii = names.index("ts"), names.index("id")
        out.sort(key=lambda r: (r[ti], r[ii]))
    return out


def of_endpoint(
    store: Store, endpoint: str, ids: Sequence[str], names: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """The columns ``names`` of the archived decisions of ``endpoint`` among ``ids``, by id:
    each file that may hold some of them read once, for those ids only."""
    if not ids:
        return {}
    with store.read() as conn:
        files = list(conn.execute(select(F).where(F.c.endpoint == endpoint, live())).all())
    want = sorted(ids)
    out: dict[str, tuple[Any, ...]] = {}
    for f in files:
        a, b = bisect.bisect_left(want, str(f.min_id)), bisect.bisect_right(want, str(f.max_id))
        if a >= b:
            continue
        table, _ = _table(f, ["id", *names], [("id", "in", want[a:b])])
        cols = [table.column(n).to_pylist() for n in ("id", *names)]
        out.update((r[0], r[1:]) for r in zip(*cols, strict=True))
    return out


def by_ids(store: Store, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Archived decisions among ``ids`` as tuples in ``decisions.COLUMNS`` order."""
    out = []
    with store.read() as conn:
        for did in ids:
            r = find(conn, did)
            if r is not None:
                out.append(r)
    return out


def label_texts(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """The latest label (as stored, JSON text) of each of ``ids`` that has one."""
    out: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i : i + 500])
        with store.read() as conn:
            q = select(FB.c.decision_id, FB.c.label).where(FB.c.decision_id.in_(held(conn, part)))
            q = q.order_by(FB.c.id)
            for did, label in conn.execute(q).all():
                out[did] = label
    return out


def recent_ids(store: Store, endpoint: str, limit: int) -> list[str]:
    """The newest archived decision ids of ``endpoint``, newest first."""
    q = select(F).where(F.c.endpoint == endpoint, live()).order_by(F.c.ts_max.desc()).limit(4)
    with store.read() as conn:
        files = list(conn.execute(q).all())
    got: list[tuple[int, str]] = []
    for f in files:
        table, _ = _table(f, ["id", "ts"], [])
        got += list(
            zip(table.column("ts").to_pylist(), table.column("id").to_pylist(), strict=True)
        )
    got.sort(reverse=True)
    return [i for _, i in got[:limit]]


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
            table = AP.read(_cache.get(f.sha256, f.target))
            got = {r[0]: r for r in AP.rows(table, layout_of(table))}
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
