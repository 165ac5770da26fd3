"""Reads behind the web UI's charts over time: a few columns of many rows, as arrays.

Each read fetches only what its chart needs (time, version and latency; or the
labelled decisions; or the monitoring history), straight from the driver's
cursor into numpy, so a window of a million decisions costs one scan of the
``(endpoint, ts)`` index and no per-row Python objects beyond the driver's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import func, select

from chronoml.store import archive_reads as AR
from chronoml.store import ingest, ingest_reads, schema, window_lock
from chronoml.store.database import Store

D = schema.decisions
FB = schema.feedback
R = schema.monitor_results
CP = schema.checkpoints
IR = schema.input_reads


@dataclass(frozen=True)
class Served:
    """The answered (non-shadow) decisions of a window, column by column."""

    ts: npt.NDArray[np.int64]
    latency_ms: npt.NDArray[np.float64]
    version: npt.NDArray[np.int32]  # index into ``versions``
    versions: tuple[str, ...]


@window_lock.guarded(1)
def served(store: Store, endpoint: str, start: int, end: int) -> Served:
    """Time, latency and model version of every answered decision in ``[start, end)``,
    archived ones included."""
    q = select(D.c.model_version, D.c.ts, D.c.latency_ms).where(
        D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
    names_ = ("model_version", "ts", "latency_ms")
    archived = AR.rows(store, endpoint, start, end, names_, shadow=False)
    blocked = ingest_reads.rows(store, endpoint, start, end, names_, shadow=False)
    merged = bool(archived or blocked)
    if merged:
        rows = [*archived, *rows, *blocked]
    n = len(rows)
    if not n:
        empty = np.empty(0, dtype=np.int64)
        return Served(empty, np.empty(0, dtype=np.float64), empty.astype(np.int32), ())
    names: dict[str, int] = {}
    version = np.fromiter(
        (names.setdefault(r[0], len(names)) for r in rows), dtype=np.int32, count=n
    )
    ts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    lat = np.fromiter((r[2] for r in rows), dtype=np.float64, count=n)
    if merged:  # in time order, as one query would give them
        order = np.argsort(ts, kind="stable")
        ts, lat, version = ts[order], lat[order], version[order]
    return Served(ts, lat, version, tuple(names))


def labels_since(
    store: Store, endpoint: str, after: int
) -> list[tuple[int, int, str, Any, Any, Any, int]]:
    """Feedback rows with an id above ``after`` on answered decisions of ``endpoint``, oldest
    first: ``(feedback id, decision ts, version, output, label, the decision's label before
    this one or None, when the label was recorded)``. The cost follows the new labels, not
    the log."""
    # feedback first, by its primary key, then its decisions by theirs: a join lets the
    # planner walk the endpoint's whole log instead
    q = select(FB.c.id, FB.c.decision_id, FB.c.label, FB.c.label_num, FB.c.recorded_at).where(
        FB.c.id > after
    )
    with store.engine.connect() as conn:
        new = conn.execute(q.order_by(FB.c.id)).cursor.fetchall()  # type: ignore[union-attr]
        ids = list({r[1] for r in new})
        known: dict[str, tuple[int, str, str]] = {}
        found: set[str] = set()  # in the database, of any endpoint
        last: dict[str, Any] = {}  # each decision's label before this batch, if it had one
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            # by id alone: with the endpoint in the WHERE clause SQLite walks the
            # (endpoint, ts) index, the whole log, for every chunk
            dq = select(D.c.id, D.c.ts, D.c.model_version, D.c.output, D.c.endpoint, D.c.shadow)
            rows = conn.execute(dq.where(D.c.id.in_(chunk))).cursor.fetchall()  # type: ignore[union-attr]
            names = ("id", "ts", "model_version", "output", "endpoint", "shadow")
            at = [ingest.AT[c] for c in names]
            blocked = ingest_reads.tuples_by_ids(conn, chunk)
            rows = [*rows, *(tuple(t[k] for k in at) for t in blocked)]
            for did, ts, version, output, ep, shadow in rows:
                found.add(did)
                if ep == endpoint and not shadow:
                    known[did] = (int(ts), str(version), output)
            if after:
                pq = (
                    select(FB.c.decision_id, FB.c.label, FB.c.label_num)
                    .where(FB.c.decision_id.in_(chunk), FB.c.id <= after)
                    .order_by(FB.c.id)
                )
                for did, label, label_num in conn.execute(pq).cursor.fetchall():  # type: ignore[union-attr]
                    last[did] = _json(label, label_num)
    # a decision archived (before, or since the reads above) is in its endpoint's files
    wanted = ("ts", "model_version", "output", "shadow")
    for did, (ts, version, output, shadow) in AR.of_endpoint(
        store, endpoint, [i for i in ids if i not in found], wanted
    ).items():
        if not shadow:
            known[did] = (int(ts), str(version), output)
    out = []
    for fid, did, label, label_num, recorded_at in new:
        d = known.get(did)
        value = _json(label, label_num)
        before = last.get(did)
        last[did] = value
        if d is not None:
            out.append((int(fid), d[0], d[1], _json(d[2], None), value, before, int(recorded_at)))
    return out


def _json(text: str, num: float | None) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return num if num is not None else text


def monitored(
    store: Store, endpoint: str, metric: str, start: int, end: int
) -> list[tuple[int, str, float | None]]:
    """``(window_end, version, value)`` of one metric the monitor recorded in the span."""
    q = (
        select(R.c.window_end, R.c.model_version, R.c.value)
        .where(
            R.c.endpoint == endpoint,
            R.c.metric == metric,
            R.c.window_end > start,
            R.c.window_end <= end,
        )
        .order_by(R.c.window_end)
    )
    with store.read() as conn:
        return [(int(a), str(b), None if c is None else float(c)) for a, b, c in conn.execute(q)]


def latest(store: Store, endpoint: str, metric: str) -> tuple[int, float] | None:
    """The newest recorded value of one monitoring metric: ``(window_end, value)``."""
    q = (
        select(R.c.window_end, R.c.value)
        .where(R.c.endpoint == endpoint, R.c.metric == metric, R.c.value.is_not(None))
        .order_by(R.c.window_end.desc())
        .limit(1)
    )
    with store.read() as conn:
        r = conn.execute(q).first()
    return None if r is None else (int(r[0]), float(r[1]))


def checkpoints(store: Store, limit: int = 20) -> list[tuple[int, int, str, int]]:
    """The newest signed checkpoints: ``(id, size, root hex, created_at)``, newest first."""
    q = select(CP.c.id, CP.c.size, CP.c.root, CP.c.created_at).order_by(CP.c.id.desc())
    with store.read() as conn:
        return [
            (int(a), int(b), bytes(c).hex(), int(d)) for a, b, c, d in conn.execute(q.limit(limit))
        ]


def checkpoint_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(CP)).scalar_one())
