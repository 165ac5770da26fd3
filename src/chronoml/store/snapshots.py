"""Snapshot copies on disk: taken once, written read-only, checked against their id on read."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from chronoml.domain.snapshot import Snapshot, SnapshotError, SnapshotRef, content_id
from chronoml.store import schema
from chronoml.store.database import Store, _snapshot


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet file, by its suffix."""
    p = Path(path)
    if not p.exists():
        raise SnapshotError(f"no such file: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(p)
    except (ValueError, OSError) as exc:
        raise SnapshotError(f"cannot read {p}: {exc}") from exc
    raise SnapshotError(f"{p}: expected a .csv or .parquet file")


def _write_immutable(df: pd.DataFrame, dest: Path) -> None:
    """Write the Parquet copy atomically and make it read-only."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def take(
    store: Store,
    data: pd.DataFrame | str | os.PathLike[str],
    name: str,
    *,
    actor: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Snapshot:
    """Snapshot ``data`` (a DataFrame, or a CSV/Parquet path) under ``name``.

    Idempotent: the same content returns the snapshot already recorded (with the name,
    taker and lineage it was first recorded with).
    """
    if not name or not name.strip():
        raise SnapshotError("a snapshot needs a name")
    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    if df.index.nlevels != 1 or not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index(drop=True)
    sid, columns = content_id(df)
    existing = store.get_snapshot(sid)
    if existing is not None:
        return existing
    dest = store.home / "snapshots" / (sid.split(":", 1)[1] + ".parquet")
    if not dest.exists():
        _write_immutable(df, dest)
    snap = Snapshot(
        id=sid,
        name=name,
        rows=len(df),
        created_at=time.time_ns() // 1000,
        columns=columns,
        path=str(dest),
        actor=actor,
        lineage=lineage,
    )
    return store.put_snapshot(snap)


def named(store: Store, name: str | None = None) -> list[Snapshot]:
    """Every snapshot (or every one called ``name``), oldest first."""
    t = schema.snapshots
    q = select(t).order_by(t.c.created_at, t.c.id)
    if name is not None:
        q = q.where(t.c.name == name)
    with store.read() as conn:
        return [_snapshot(r) for r in conn.execute(q).mappings().all()]


def candidates(store: Store, ref: SnapshotRef) -> list[Snapshot]:
    """The snapshots ``ref`` may mean: ids with its prefix, or its name's latest by ``at``.

    For a name only the snapshots taken in the latest microsecond at or before ``at``
    come back (several when two were taken at once), so the caller can tell a tie.
    """
    t = schema.snapshots
    with store.read() as conn:
        if ref.id is not None:
            if ref.exact:
                q = select(t).where(t.c.id == ref.id)
            else:
                q = select(t).where(t.c.id.like(ref.id + "%")).order_by(t.c.id).limit(6)
            return [_snapshot(r) for r in conn.execute(q).mappings().all()]
        top = select(t.c.created_at).where(t.c.name == ref.name)
        if ref.at is not None:
            top = top.where(t.c.created_at <= ref.at)
        latest = conn.execute(top.order_by(t.c.created_at.desc()).limit(1)).scalar()
        if latest is None:
            return []
        q = select(t).where(t.c.name == ref.name, t.c.created_at == latest).order_by(t.c.id)
        return [_snapshot(r) for r in conn.execute(q).mappings().all()]


def load(snap: Snapshot) -> pd.DataFrame:
    """The snapshot's data, checked against its id."""
    if not snap.path or not Path(snap.path).exists():
        raise SnapshotError(f"snapshot {snap.id} has no stored copy on this machine")
    df = pd.read_parquet(snap.path)
    sid, _ = content_id(df)
    if sid != snap.id:
        raise SnapshotError(f"stored copy of {snap.id} does not match its id (found {sid})")
    return df
