"""Reading logged decisions back in bulk, as the model saw them: for replay,
backtests and global importance.

Unlike :func:`chronoml.store.decisions.window` (columns for statistics),
these keep each row's id, who decided it and its exact logged output, and
rebuild the inputs with their logged types (integers stay integers).
"""

from __future__ import annotations

import heapq
import itertools
from collections import namedtuple
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import func, select

from chronoml.domain import codec
from chronoml.domain.codec import Schema
from chronoml.store import archive_parquet as AP
from chronoml.store import archive_reads as AR
from chronoml.store import ingest_reads, partitions, schema, window_lock
from chronoml.store.database import Store
from chronoml.store.decisions import Layouts

D = schema.decisions
FB = schema.feedback

_COLS = (
    D.c.id,
    D.c.ts,
    D.c.variant,
    D.c.model_name,
    D.c.model_version,
    D.c.event_seq,
    D.c.shadow,
    D.c.layout,
    D.c.num,
    D.c.txt,
    D.c.output,
)


@dataclass
class Batch:
    """Logged decisions sharing one input layout, in time order."""

    ids: list[str]
    ts: list[int]
    variants: list[str]
    model_names: list[str]
    model_versions: list[str]
    event_seqs: list[int]
    shadow: list[bool]
    schema: Schema
    frame: pd.DataFrame  # the logged inputs, typed by the layout
    outputs: list[str]  # the logged outputs, as JSON text

    def __len__(self) -> int:
        return len(self.ids)


def _where(
    endpoint: str, start: int, end: int, include_shadow: bool, variant: str | None = None
) -> list[Any]:
    w = [D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end]
    if not include_shadow:
        w.append(D.c.shadow.is_(False))
    if variant is not None:
        w.append(D.c.variant == variant)
    return w


@window_lock.guarded(1)
def count(store: Store, endpoint: str, start: int, end: int, *, include_shadow: bool) -> int:
    with store.read() as conn:
        q = select(func.count()).select_from(D).where(*_where(endpoint, start, end, include_shadow))
        n = int(conn.execute(q).scalar_one())
    shadow = None if include_shadow else False
    n += ingest_reads.count_where(store, endpoint, start, end, include_shadow=include_shadow)
    return n + len(AR.rows(store, endpoint, start, end, ("id",), shadow=shadow))


@dataclass(frozen=True)
class Key:
    """Who decided one logged row: enough to find its model on the ledger."""

    id: str
    variant: str
    model_name: str
    model_version: str
    event_seq: int


@window_lock.guarded(1)
def keys(store: Store, endpoint: str, start: int, end: int, *, include_shadow: bool) -> list[Key]:
    """Every decision of the range, without its inputs, in time order."""
    cols = (D.c.id, D.c.variant, D.c.model_name, D.c.model_version, D.c.event_seq)
    q = select(*cols).where(*_where(endpoint, start, end, include_shadow)).order_by(D.c.ts, D.c.id)
    shadow = None if include_shadow else False
    names = ("id", "variant", "model_name", "model_version", "event_seq")
    archived = AR.rows(store, endpoint, start, end, (*names, "ts"), shadow=shadow)
    got = [Key(*r[:5]) for r in sorted(archived, key=lambda r: (r[5], r[0]))]
    with store.read() as conn:
        live = [(*r, int(ts)) for *r, ts in conn.execute(q.add_columns(D.c.ts)).all()]
    blocked = ingest_reads.rows(store, endpoint, start, end, (*names, "ts"), shadow=shadow)
    if blocked:
        live = sorted([*live, *blocked], key=lambda r: (r[5], r[0]))
    return got + [Key(*r[:5]) for r in live]


@window_lock.guarded_iter(2)
def batches(
    store: Store,
    layouts: Layouts,
    endpoint: str,
    start: int,
    end: int,
    *,
    include_shadow: bool,
    ids: Sequence[str] | None = None,
    size: int = 10_000,
) -> Iterator[Batch]:
    """The decisions of ``endpoint`` in ``[start, end)`` (or just ``ids``), ``size`` rows at a time.

    Rows come from the driver's own cursor (no per-row result objects) and
    are turned into columns with one transpose per chunk.
    """
    names = [c.name for c in _COLS]
    if ids is not None:
        chunk = 500  # bound the IN list
        for i in range(0, len(ids), chunk):
            part = list(ids[i : i + chunk])
            got = _by_ids(store, part)
            if len(got) < len(part):
                found = {r[0] for r in got}
                idx = [AP.COLUMNS.index(n) for n in names]
                more = AR.by_ids(store, [d for d in part if d not in found])
                got = sorted([*got, *(tuple(r[j] for j in idx) for r in more)], key=_ts_id)
            yield from _decode(layouts, got)
        return
    # the archived part of the range comes first: it is all older than the rows left
    archived = AR.rows(store, endpoint, start, end, names, shadow=None if include_shadow else False)
    for i in range(0, len(archived), size):
        yield from _decode(layouts, archived[i : i + size])
    q = select(*_COLS).where(*_where(endpoint, start, end, include_shadow)).order_by(D.c.ts, D.c.id)
    # the range's decisions held in ingest blocks, merged with the rows in (ts, id) order
    held = ingest_reads.rows(
        store, endpoint, start, end, names, shadow=None if include_shadow else False
    )
    with store.engine.connect() as conn:
        if store.is_sqlite:
            # sqlite3 steps through the result as it is fetched: read the
            # driver's cursor directly, without per-row result objects
            cursor = conn.execute(q).cursor
            assert cursor is not None
            yield from _merged(layouts, iter(lambda: cursor.fetchmany(size), []), held, size)
        else:
            # PostgreSQL: a server-side cursor, so a long range is not held in memory
            result = conn.execute(q.execution_options(stream_results=True, yield_per=size))
            try:
                pages = iter(lambda: result.fetchmany(size), [])
                yield from _merged(layouts, pages, held, size)
            finally:
                result.close()


def _merged(
    layouts: Layouts, pages: Iterator[Sequence[Any]], held: list[tuple[Any, ...]], size: int
) -> Iterator[Batch]:
    """Pages of rows, with the block decisions ``held`` merged in by (ts, id)."""
    if not held:
        for rows in pages:
            yield from _decode(layouts, rows)
        return
    flat = (r for rows in pages for r in rows)
    merged = heapq.merge(flat, held, key=_ts_id)
    while chunk := list(itertools.islice(merged, size)):
        yield from _decode(layouts, chunk)


def _named(fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Any]:
    """Archived rows with the attribute access of the database's result rows."""
    cls = namedtuple("Row", fields)  # type: ignore[misc]
    return [cls(*r) for r in rows]


def _ts_id(r: Sequence[Any]) -> tuple[int, str]:
    return int(r[1]), str(r[0])


def _by_ids(store: Store, ids: list[str]) -> list[Any]:
    """The rows of ``ids`` in time order (on PostgreSQL, from the partitions they point to)."""
    with store.engine.connect() as conn:
        rows = partitions.rows_by_ids(conn, _COLS, ids)
    return sorted(rows, key=lambda r: (r[1], r[0]))


def _decode(layouts: Layouts, rows: Sequence[Any]) -> Iterator[Batch]:
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    kinds = set(cols[7])
    groups: list[tuple[str, list[Any]]]
    if len(kinds) == 1:
        groups = [(next(iter(kinds)), cols)]
    else:  # several input layouts in one chunk: one batch each
        by_layout: dict[str, list[Any]] = {}
        for r in rows:
            by_layout.setdefault(r[7], []).append(r)
        groups = [(k, list(zip(*g, strict=True))) for k, g in by_layout.items()]
    for layout, c in groups:
        sch = layouts.get(layout)
        yield Batch(
            ids=list(c[0]),
            ts=list(c[1]),
            variants=list(c[2]),
            model_names=list(c[3]),
            model_versions=list(c[4]),
            event_seqs=list(c[5]),
            shadow=[bool(v) for v in c[6]],
            schema=sch,
            frame=codec.decode_frame(sch, c[8], c[9]),
            outputs=list(c[10]),
        )


def labels(store: Store, ids: Sequence[str]) -> dict[str, Any]:
    """The latest label of each of ``ids`` that has one (feedback is append-only)."""
    out: dict[str, Any] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i : i + 500])
        q = (
            select(FB.c.decision_id, FB.c.label, FB.c.label_num)
            .where(FB.c.decision_id.in_(part))
            .order_by(FB.c.id)
        )
        with store.read() as conn:
            for did, label, label_num in conn.execute(q).all():
                out[did] = _label_value(label, label_num)
    return out


def _label_value(label: str, label_num: float | None) -> Any:
    try:
        return orjson.loads(label)
    except orjson.JSONDecodeError:
        return label_num if label_num is not None else label


def _latest_label_ids() -> Any:
    """Per decision with feedback, the id of its latest label row."""
    return (
        select(FB.c.decision_id, func.max(FB.c.id).label("fid"))
        .group_by(FB.c.decision_id)
        .subquery()
    )


@window_lock.guarded(1)
def outputs_and_labels(
    store: Store, endpoint: str, start: int, end: int, *, variant: str | None = None
) -> list[Any]:
    """``(variant, model_name, model_version, output, label)`` of the served decisions in
    ``[start, end)``; ``label`` is the latest one, or None."""
    last = _latest_label_ids()
    q = (
        select(D.c.variant, D.c.model_name, D.c.model_version, D.c.output, FB.c.label)
        .select_from(
            D.outerjoin(last, last.c.decision_id == D.c.id).outerjoin(FB, FB.c.id == last.c.fid)
        )
        .where(D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False))
    )
    if variant is not None:
        q = q.where(D.c.variant == variant)
    names = ("id", "variant", "model_name", "model_version", "output")
    archived = AR.rows(store, endpoint, start, end, names, shadow=False, variant=variant)
    archived += ingest_reads.rows(store, endpoint, start, end, names, shadow=False, variant=variant)
    labels = AR.label_texts(store, [r[0] for r in archived])
    got = _named((*names[1:], "label"), [(*r[1:], labels.get(r[0])) for r in archived])
    with store.read() as conn:
        return got + list(conn.execute(q).all())


@window_lock.guarded(1)
def arm_rows(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    variant: str,
    version: str,
    shadow: bool,
    seqs: Iterable[int],
    *,
    inputs: bool = False,
    ids: bool = False,
) -> list[Any]:
    """An experiment arm's decisions routed by ``seqs``: ts, event_seq, output, latency,
    latest label (with ``inputs``, the packed inputs; with ``ids``, id and layout)."""
    seqs = list(seqs)
    last = _latest_label_ids()
    cols = [D.c.ts, D.c.event_seq, D.c.output, D.c.latency_ms, FB.c.label]
    if inputs:
        cols += [D.c.num, D.c.txt]
    if ids:
        cols += [D.c.id, D.c.layout]
    q = (
        select(*cols)
        .select_from(
            D.outerjoin(last, last.c.decision_id == D.c.id).outerjoin(FB, FB.c.id == last.c.fid)
        )
        .where(
            D.c.endpoint == endpoint,
            D.c.ts >= start,
            D.c.ts < end,
            D.c.variant == variant,
            D.c.model_version == version,
            D.c.shadow.is_(shadow),
            D.c.event_seq.in_(list(seqs)),
        )
    )
    extra = ["num", "txt"] if inputs else []
    names = ["id", "ts", "event_seq", "output", "latency_ms", *extra, *(["layout"] if ids else [])]
    archived = AR.rows(
        store,
        endpoint,
        start,
        end,
        names,
        shadow=shadow,
        variant=variant,
        version=version,
        event_seqs=list(seqs),
    )
    archived += ingest_reads.rows(
        store,
        endpoint,
        start,
        end,
        names,
        shadow=shadow,
        variant=variant,
        version=version,
        event_seqs=list(seqs),
    )
    labels = AR.label_texts(store, [r[0] for r in archived])
    # in the query's order: ... label, [num, txt], [id, layout]
    fields = (*names[1:5], "label", *extra, *(["id", "layout"] if ids else []))
    k = 5 + len(extra)
    tail = (lambda r: (r[0], r[k])) if ids else (lambda r: ())
    got = _named(fields, [(*r[1:5], labels.get(r[0]), *r[5:k], *tail(r)) for r in archived])
    with store.read() as conn:
        return got + list(conn.execute(q).all())


@window_lock.guarded(1)
def latencies(store: Store, endpoint: str, start: int, end: int) -> list[Any]:
    """``(variant, model_version, latency_ms)`` of the served decisions in ``[start, end)``."""
    names = ("variant", "model_version", "latency_ms")
    got = _named(
        names,
        AR.rows(store, endpoint, start, end, names, shadow=False)
        + ingest_reads.rows(store, endpoint, start, end, names, shadow=False),
    )
    with store.read() as conn:
        return got + list(
            conn.execute(
                select(D.c.variant, D.c.model_version, D.c.latency_ms).where(
                    D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False)
                )
            ).all()
        )


def input_names(store: Store) -> set[str]:
    """Every model input name of any input layout logged in this store."""
    with store.read() as conn:
        texts = conn.execute(select(schema.input_layouts.c.columns)).scalars().all()
    return {c for text in texts for c, _ in orjson.loads(text)}


def endpoints_of(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """The endpoint of each of these decisions, archived ones too (a privacy policy must
    not be skipped because its decision moved to a file)."""
    with store.read() as conn:
        q = select(D.c.id, D.c.endpoint).where(D.c.id.in_(list(ids)))
        got = {str(a): str(b) for a, b in conn.execute(q)}
        got.update({str(t[0]): str(t[2]) for t in ingest_reads.tuples_by_ids(conn, ids)})
        rest = [i for i in ids if i not in got]
        got.update({str(t[0]): str(t[2]) for t in AR.found_in(conn, rest)})
        return got
