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
import heapq
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from chronoml.domain.archive import ArchiveError, Target, file_name
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


Contexts = list[tuple[list[str], list[str | None]]]


def window_parts(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None,
    include_shadow: bool,
    with_context: bool = False,
) -> tuple[list[Part], int, Contexts]:
    """Archived decisions of a window as ``decisions.window`` parts; where the database
    takes over; and with ``with_context`` each part's ids and contexts as stored (else
    no list). The files are read on ``READERS`` threads (pyarrow's decoding releases
    the GIL), each with only the columns the window needs; then the numeric inputs of
    each (variant, version) are decoded straight into one array per input, each file
    into its own rows of it (no array per file joined after)."""
    got = span(store, endpoint, start, end)
    if got is None:
        return [], start, []
    lo, stop = got
    extra = ("id", "context") if with_context else ()

    def one(f: Any) -> list[tuple[str, str, Schema, pa.Table]]:
        data = _cache.get(f.sha256, f.target)
        return _window_file(data, f, lo, stop, variant, include_shadow, extra=extra)

    files = _files(store, endpoint, lo, stop)
    pieces = [p for got in parallel(READERS)(one, files) for p in got]
    groups: dict[tuple[str, str, Schema], list[pa.Table]] = {}
    for vname, version, sch, sub in pieces:
        groups.setdefault((vname, version, sch), []).append(sub)
    parts: list[Part] = []
    contexts: Contexts = []
    for (vname, version, sch), subs in groups.items():
        if with_context:
            tables = [AP.logical(sub.select(["id", "context"])) for sub in subs]
            texts = [(t.column("id").to_pylist(), t.column("context").to_pylist()) for t in tables]
        if any(k not in NUMERIC_KINDS for _, k in sch):  # texts too: a part per file
            for sub in subs:
                outs = sub.column("output_num").to_numpy(zero_copy_only=False)
                parts.append((vname, version, AP.columns(AP.logical(sub), sch), outs))
            if with_context:
                contexts += texts
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
        if with_context:
            contexts.append(([i for t in texts for i in t[0]], [c for t in texts for c in t[1]]))
    return parts, stop, contexts


TimedPart = tuple[
    str, str, np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]
]


def timed_parts(
    store: Store, endpoint: str, start: int, end: int
) -> tuple[Iterator[TimedPart], int]:
    """Archived answered decisions of ``[start, end)`` as ``(variant, version, ts, inputs,
    outputs)``, in time order, a file and a version at a time (the drift grid's reads;
    ``READERS`` files decoded at once, so a long span is never all in memory); and where
    the database takes over."""
    got = span(store, endpoint, start, end)
    if got is None:
        return iter(()), start
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

    def each(files: list[Any]) -> Iterator[TimedPart]:
        for i in range(0, len(files), READERS):
            for parts in parallel(READERS)(one, files[i : i + READERS]):
                yield from parts

    return each(_files(store, endpoint, lo, stop)), stop


def _window_file(
    data: bytes,
    f: Any,
    lo: int,
    stop: int,
    variant: str | None,
    include_shadow: bool,
    with_ts: bool = False,
    extra: Sequence[str] = (),
) -> list[tuple[str, str, Schema, pa.Table]]:
    """One file's decisions of ``[lo, stop)`` (no shadow ones unless ``include_shadow``;
    of ``variant`` when given), per (variant, version), as stored. A file wholly inside
    the window is not filtered on time, and the shadow flags only when one is set: no
    row is copied. ``with_ts``: the times are read whether or not they are needed to cut;
    ``extra``: more columns, as stored."""
    sch = AP.layout(data)
    inside = int(f.ts_min) >= lo and int(f.ts_max) < stop
    wanted = ["variant", "model_version", "output_num", *AP.input_names(sch)]
    if any(k not in NUMERIC_KINDS for _, k in sch):
        wanted.append("txt")
    wanted += ([] if inside and not with_ts else ["ts"]) + ([] if include_shadow else ["shadow"])
    wanted += extra
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
    # every column when the packed inputs are rebuilt, else only those asked for
    wanted = None if "num" in names else list(dict.fromkeys(names))
    for f in _files(store, endpoint, lo, stop):
        table, sch = _table(f, wanted, filters)
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


def _holding(
    conn: Connection, ids: Sequence[str], endpoint: str | None = None
) -> Iterator[tuple[Any, list[str]]]:
    """Each live file whose id range holds some of ``ids`` (of ``endpoint`` when given),
    with those ids: a file is then read once for all of them, not once per id."""
    want = sorted(set(ids))
    if not want:
        return
    q = select(F).where(F.c.min_id <= want[-1], F.c.max_id >= want[0], live())
    if endpoint is not None:
        q = q.where(F.c.endpoint == endpoint)
    for f in conn.execute(q).all():
        a, b = bisect.bisect_left(want, str(f.min_id)), bisect.bisect_right(want, str(f.max_id))
        if a < b:
            yield f, want[a:b]


def of_endpoint(
    store: Store, endpoint: str, ids: Sequence[str], names: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """The columns ``names`` of the archived decisions of ``endpoint`` among ``ids``, by id."""
    out: dict[str, tuple[Any, ...]] = {}
    with store.read() as conn:
        holding = list(_holding(conn, ids, endpoint))
    for f, mine in holding:
        table, _ = _table(f, ["id", *names], [("id", "in", mine)])
        cols = [table.column(n).to_pylist() for n in ("id", *names)]
        out.update((r[0], r[1:]) for r in zip(*cols, strict=True))
    return out


def by_ids(store: Store, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Archived decisions among ``ids`` as tuples in ``decisions.COLUMNS`` order."""
    with store.read() as conn:
        return found_in(conn, ids)


def found_in(conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """:func:`by_ids` on ``conn``."""
    got: dict[str, tuple[Any, ...]] = {}
    for f, mine in list(_holding(conn, ids)):
        table, sch = _table(f, None, [("id", "in", mine)])
        got.update((r[0], r) for r in AP.rows(table, sch))
    return list(got.values())


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
    """The newest archived decision ids of ``endpoint``, newest first: files are read from
    the newest down until none left can hold a decision newer than the ``limit``-th."""
    if limit <= 0:
        return []
    q = select(F).where(F.c.endpoint == endpoint, live()).order_by(F.c.ts_max.desc())
    with store.read() as conn:
        files = list(conn.execute(q).all())
    got: list[tuple[int, str]] = []
    for f in files:
        if len(got) >= limit and int(f.ts_max) < heapq.nlargest(limit, got)[-1][0]:
            break
        table, _ = _table(f, ["id", "ts"], [])
        got += list(
            zip(table.column("ts").to_pylist(), table.column("id").to_pylist(), strict=True)
        )
    return [i for _, i in heapq.nlargest(limit, got)]
