"""Snapshot references resolved against a real store: ids, prefixes, NAME@latest, NAME@TIME."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from chronoml import snapshots
from chronoml.domain.snapshot import AmbiguousSnapshot, Snapshot, SnapshotNotFound, parse_ref
from chronoml.errors import InvalidInput
from chronoml.store import Store, schema
from chronoml.store import snapshots as snapshot_store
from chronoml.timeutil import parse_time


def _take(store: Store, name: str, value: int, at: str, actor: str = "ann") -> Snapshot:
    snap = snapshot_store.take(store, pd.DataFrame({"v": [value]}), name, actor=actor)
    # pin the time a snapshot was taken, as if taken then
    moved = Snapshot(
        id=snap.id,
        name=snap.name,
        rows=snap.rows,
        created_at=parse_time(at),
        columns=snap.columns,
        path=snap.path,
        actor=snap.actor,
    )
    with store.write() as conn:
        t = schema.snapshots
        conn.execute(t.update().where(t.c.id == snap.id).values(created_at=moved.created_at))
    return moved


def test_name_at_time_is_the_latest_taken_at_or_before(store: Store) -> None:
    may = _take(store, "customers", 1, "2024-05-01")
    june = _take(store, "customers", 2, "2024-06-01")
    _take(store, "other", 3, "2024-06-15")
    assert snapshots.resolve(store, "customers@2024-06-01").id == june.id  # inclusive
    assert snapshots.resolve(store, "customers@2024-05-31T23:59:59").id == may.id
    assert snapshots.resolve(store, "customers@latest").id == june.id
    assert snapshots.resolve(store, june.id).id == june.id
    assert snapshots.resolve(store, june.id[:16]).id == june.id
    assert snapshots.resolve(store, june.id).actor == "ann"
    assert [s.id for s in snapshot_store.named(store, "customers")] == [may.id, june.id]
    assert len(snapshot_store.named(store)) == 3
    frame = snapshots.load(store, "customers@2024-05-15")
    assert frame["v"].tolist() == [1]


def test_refs_that_match_nothing_or_several_say_so(store: Store) -> None:
    a = _take(store, "c", 1, "2024-06-01")
    b = _take(store, "c", 2, "2024-06-01")
    with pytest.raises(AmbiguousSnapshot) as exc:
        snapshots.resolve(store, "c@latest")
    assert a.id in exc.value.message and b.id in exc.value.message
    assert exc.value.field == "ref"
    with pytest.raises(SnapshotNotFound, match="'c' was taken at or before 2024-05-01"):
        snapshots.resolve(store, "c@2024-05-01")
    with pytest.raises(SnapshotNotFound, match="no snapshot named 'nope'"):
        snapshots.resolve(store, "nope@latest")
    with pytest.raises(SnapshotNotFound, match="no snapshot has id"):
        snapshots.resolve(store, "sha256:" + "0" * 64)
    with pytest.raises(InvalidInput, match="not a snapshot reference"):
        parse_ref("customers")
    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        parse_ref("customers@yesterday")
    with pytest.raises(InvalidInput, match="8 to 64 hex digits"):
        parse_ref("sha256:abc")


def test_a_stored_copy_edited_on_disk_is_refused(store: Store) -> None:
    snap = _take(store, "c", 1, "2024-06-01")
    assert snap.path is not None
    p = Path(snap.path)
    p.chmod(0o644)
    pd.DataFrame({"v": [99]}).to_parquet(p, index=False)
    with pytest.raises(ValueError, match="does not match its id"):
        snapshots.load(store, "c@latest")
