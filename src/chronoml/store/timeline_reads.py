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

from chronoml.store import schema
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


def served(store: Store, endpoint: str, start: int, end: int) -> Served:
    """Time, latency and model version of every answered decision in ``[start, end)``."""
    q = select(D.c.model_version, D.c.ts, D.c.latency_ms).where(
        D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
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
    return Served(ts, lat, version, tuple(names))


def labelled(store: Store, endpoint: str, start: int, end: int) -> list[tuple[int, str, Any, Any]]:
    """``(ts, version, output, label)`` of answered decisions in ``[start, end)`` with a label
    (the latest one), read from the feedback side: the cost follows the labels, not the log."""
    last = (
        select(FB.c.decision_id, func.max(FB.c.id).label("fid"))
        .group_by(FB.c.decision_id)
        .subquery()
    )
    q = (
        select(D.c.ts, D.c.model_version, D.c.output, FB.c.label, FB.c.label_num)
        .select_from(last.join(D, D.c.id == last.c.decision_id).join(FB, FB.c.id == last.c.fid))
        .where(D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False))
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
    return [(int(r[0]), str(r[1]), _json(r[2], None), _json(r[3], r[4])) for r in rows]


def _json(text: str, num: float | None) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return num if num is not None else text


def feedback_mark(store: Store) -> int:
    """The newest feedback row's id: labels changed when it changed."""
    with store.read() as conn:
        return int(conn.execute(select(func.coalesce(func.max(FB.c.id), 0))).scalar_one())


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
