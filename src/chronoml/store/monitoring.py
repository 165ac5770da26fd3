"""Monitoring results: one row per (window, variant, version, metric)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from chronoml.store import schema
from chronoml.store.database import Store

R = schema.monitor_results


def insert_results(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        with store.write() as conn:
            conn.execute(R.insert(), list(rows))


def results(store: Store, endpoint: str, metric: str | None, limit: int) -> list[Any]:
    """The newest ``limit`` results of ``endpoint`` (one metric, or all), newest first."""
    q = select(R).where(R.c.endpoint == endpoint)
    if metric is not None:
        q = q.where(R.c.metric == metric)
    q = q.order_by(R.c.window_end.desc(), R.c.id.desc()).limit(limit)
    with store.read() as conn:
        return list(conn.execute(q).all())
