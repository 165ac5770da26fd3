"""Time partitions of the decision log on PostgreSQL: the migration of a store with rows,
plans that read only the partitions a lookup or a window needs, partitions made ahead,
and detaching that never takes a row with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from partition_support import compiled, new_id_at, partition_of
from sqlalchemy import create_engine, text

from chronoml.domain import codec
from chronoml.evidence import audit
from chronoml.ids import new_id
from chronoml.store import Store, partition_convert, partitions
from chronoml.store import decisions as D
from chronoml.store.database import HEAD_REVISION
from chronoml.store.partitions import DAY_US
from chronoml.timeutil import now_us

SCHEMA = (("x", "float"), ("k", "int"))
# noon UTC on 2026-06-01, then the days around it
NOON = 1_780_315_200_000_000


def _rows(store: Store, times: list[int], ids: list[str] | None = None) -> list[D.DecisionRow]:
    layout = codec.layout_id(SCHEMA)
    D.Layouts(store).ensure(layout, SCHEMA)
    rows = []
    for i, ts in enumerate(times):
        num = np.array([float(i), float(i % 3)]).astype("<f8")
        num[1:] = np.array([i % 3], dtype="<i8").view("<f8")
        rows.append(
            D.DecisionRow(
                ids[i] if ids else new_id_at(ts),
                ts,
                "e",
                "a",
                "m",
                "1",
                1,
                False,
                None,
                "0190a000-0000-7000-9000-0000000000ff",
                layout,
                num.tobytes(),
                None,
                str(i % 2),
                float(i % 2),
                1.0,
            )
        )
    D.insert_many(store, rows)
    return rows


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(pg_url, tmp_path / "home")
    yield s
    s.close()


def test_migration_keeps_every_row_of_an_existing_store(pg: Store) -> None:
    pg.upgrade("0011")
    times = [NOON - 40 * DAY_US + k * DAY_US + i for k in (0, 1, 5) for i in range(30)]
    before = _rows(pg, times)
    with pg.read() as conn:
        assert not partitions.is_partitioned(conn)
    assert pg.upgrade() == HEAD_REVISION
    with pg.read() as conn:
        assert partitions.is_partitioned(conn)
        names = [p.name for p in partitions.partitions(conn)]
        pkey = conn.execute(
            text(
                "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = 'decisions'::regclass AND i.indisprimary"
            )
        ).scalar_one()
    assert sorted(pkey) == ["id", "ts"]
    # a partition for each day with rows, then today and the week ahead, then DEFAULT
    for k in (0, 1, 5):
        assert partitions.name_for(partitions.day_start(NOON - (40 - k) * DAY_US)) in names
    assert names[-1] == partitions.DEFAULT
    assert D.count(pg) == len(before)
    for r in before[::7]:
        assert D.get(pg, r.id) == r
        assert partition_of(pg, "decisions", r.id) == partitions.name_for(
            partitions.day_start(r.ts)
        )
    # the window read over the migrated rows
    w = D.window(pg, D.Layouts(pg), "e", times[0], times[-1] + 1)
    assert w.rows == len(before)
    # the evidence log still covers every decision, recomputed from the moved rows
    report = audit.verify(pg, decisions=True)
    assert report.ok, report.reason
    assert report.decisions == len(before)


def test_a_lookup_by_id_and_a_window_read_touch_only_their_partitions(pg: Store) -> None:
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 3 * DAY_US, 6)
        every = [p.name for p in partitions.partitions(conn)]
    assert len(every) > 8
    row = _rows(pg, [NOON])[0]
    lo, hi = partitions.id_span(row.id) or (0, 0)
    today = partitions.name_for(partitions.day_start(NOON))
    with pg.read() as conn:
        by_id = compiled(D._GET_SPAN.params(id=row.id, lo=lo, hi=hi))
        assert partitions.explain(conn, by_id, {}) == [today]
        # the same statement as the driver prepares it (a generic plan) prunes at start-up
        conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(
            "PREPARE by_id(uuid, bigint, bigint) AS SELECT * FROM decisions"
            " WHERE id = $1 AND ts >= $2 AND ts < $3"
        )
        plan = conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) EXECUTE by_id('{row.id}', {lo}, {hi})"
        ).scalar_one()
        top = plan[0]["Plan"]
        kept = [p.get("Relation Name") for p in top.get("Plans", [top])]
        assert kept == [today], kept
        assert top.get("Subplans Removed", 0) == len(every) - 1
        # a two-day window of one endpoint reads those two days' partitions
        q = D.D.select().where(
            D.D.c.endpoint == "e", D.D.c.ts >= NOON - DAY_US, D.D.c.ts < NOON + 1
        )
        assert partitions.explain(conn, compiled(q), {}) == sorted(
            [partitions.name_for(partitions.day_start(NOON - DAY_US)), today]
        )
        # without the id's span, every partition is searched
        assert len(partitions.explain(conn, compiled(D._GET.params(id=row.id)), {})) == len(every)


def test_a_row_far_from_its_ids_time_is_still_found(pg: Store) -> None:
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 5 * DAY_US, 6)
    made = new_id_at(NOON)
    # the row sits three days before the time its id says: the pruned lookup misses it
    row = _rows(pg, [NOON - 3 * DAY_US], ids=[made])[0]
    assert D.get(pg, made) == row
    assert D.get(pg, new_id_at(NOON + 1000)) is None
    # in bulk too: one id where it points, one elsewhere
    near = _rows(pg, [NOON + 5])[0]
    with pg.read() as conn:
        got = partitions.rows_by_ids(conn, [D.D.c.id, D.D.c.ts], [made, near.id])
    assert sorted(got) == sorted([(made, row.ts), (near.id, near.ts)])
    assert D.get(pg, "not-a-uuid") is None


def test_partitions_are_made_ahead_and_rows_waiting_in_default_move_in(pg: Store) -> None:
    pg.upgrade()
    later = NOON + 400 * DAY_US  # beyond every partition the migration made
    waiting = _rows(pg, [later, later + 1])
    assert partition_of(pg, "decisions", waiting[0].id) == partitions.DEFAULT
    report = partitions.maintain(pg, now=later - 2 * DAY_US, ahead_days=3)
    assert report is not None
    days = [partitions.name_for(partitions.day_start(later) + k * DAY_US) for k in (-2, -1, 0, 1)]
    blocks = [partitions.name_for(partitions.day_start(later) + k * DAY_US, partitions.BLOCKS)
              for k in (-2, -1, 0, 1)]  # fmt: skip
    assert report.created == days + blocks  # the ingest blocks' partitions too
    assert report.moved == 2 and report.moved_blocks == 0
    assert partition_of(pg, "decisions", waiting[0].id) == days[2]
    assert [D.get(pg, r.id) for r in waiting] == waiting
    # a second pass has nothing to do
    again = partitions.maintain(pg, now=later - 2 * DAY_US, ahead_days=3)
    assert again is not None and again.created == [] and again.moved == 0


def test_detach_takes_only_empty_partitions_and_keeps_unarchived_rows(pg: Store) -> None:
    pg.upgrade()
    old = NOON - 300 * DAY_US
    with pg.write() as conn:
        partitions.create_ahead(conn, old, 2)  # three old days
    kept_rows = _rows(pg, [old + 10, old + 20])
    total = D.count(pg)
    day0, day1, day2 = (
        partitions.name_for(partitions.day_start(old) + k * DAY_US) for k in range(3)
    )
    # cut at 180 days: all three old days are past it; only the one with rows stays
    report = partitions.maintain(pg, now=NOON, detach_after_us=180 * DAY_US)
    assert report is not None
    assert report.kept == [(day0, 2)]
    assert day1 in report.detached and day2 in report.detached
    with pg.read() as conn:
        names = [p.name for p in partitions.partitions(conn)]
        assert conn.execute(text("SELECT to_regclass(:n)"), {"n": day1}).scalar() is None
    assert day0 in names and day1 not in names
    assert D.count(pg) == total
    assert [D.get(pg, r.id) for r in kept_rows] == kept_rows
    # once its rows are gone (archived and deleted), the partition goes too
    with pg.write() as conn:
        conn.execute(text("DELETE FROM decisions WHERE ts < :t"), {"t": old + DAY_US})
    report = partitions.maintain(pg, now=NOON, detach_after_us=180 * DAY_US)
    assert report is not None and report.detached == [day0] and report.kept == []
    # today's partition and DEFAULT are never detached
    with pg.read() as conn:
        names = [p.name for p in partitions.partitions(conn)]
    assert partitions.DEFAULT in names


def test_a_row_committed_while_detach_waits_keeps_its_partition(
    pg: Store, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race detaching must not lose: a writer's row lands in an old, empty partition
    and commits while the detach waits for its lock. Checking emptiness before taking
    the lock would then detach and drop the partition with the row in it."""
    # the race needs the detach to still be waiting when the writer sees it wait: on a
    # loaded machine that can take longer than the 2 s a pass waits in production
    monkeypatch.setattr(partitions, "_LOCK_TIMEOUT", "60s")
    pg.upgrade()
    old = NOON - 300 * DAY_US
    with pg.write() as conn:
        partitions.create_ahead(conn, old, 0)
    partitions.maintain(pg, now=NOON)  # nothing left to create in the pass below
    day = partitions.name_for(partitions.day_start(old))
    late = _rows(pg, [old + 7])[0]
    with pg.write() as conn:
        conn.execute(text("DELETE FROM decisions WHERE id = :i"), {"i": late.id})
    writer = create_engine(pg_url)
    watcher = create_engine(pg_url)
    waited = threading.Event()

    def write_then_commit() -> None:
        with writer.connect() as other:
            tx = other.begin()
            other.execute(D.D.insert(), [late.__dict__])  # into the empty old partition
            started.set()
            with watcher.connect() as w:
                for _ in range(3000):  # until the maintainer waits for a lock (30 s at most)
                    if w.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query ILIKE '%decisions%' AND pid <> pg_backend_pid()"
                        )
                    ).scalar_one():
                        waited.set()
                        break
                    # pg_stat_activity is read once per transaction: end it, or every
                    # poll after the first sees the first one's snapshot
                    w.rollback()
                    time.sleep(0.01)
            tx.commit()

    started = threading.Event()
    t = threading.Thread(target=write_then_commit)
    try:
        t.start()
        assert started.wait(30)
        report = partitions.maintain(pg, now=NOON, detach_after_us=180 * DAY_US)
        t.join(60)
    finally:
        writer.dispose()
        watcher.dispose()
    assert waited.is_set()
    assert report is not None and not report.busy
    assert report.kept == [(day, 1)] and report.detached == []
    assert D.get(pg, late.id) == late


def test_the_appender_copies_into_partitions(pg: Store) -> None:
    pg.upgrade()
    layout = codec.layout_id(SCHEMA)
    D.Layouts(pg).ensure(layout, SCHEMA)
    t = now_us()
    ids = [new_id() for _ in range(3)]
    num = np.zeros(2, dtype="<f8").tobytes()
    tuples = [
        (
            i,
            t,
            "e",
            "a",
            "m",
            "1",
            1,
            False,
            None,
            "0190a000-0000-7000-9000-0000000000ff",
            layout,
            num,
            None,
            "0",
            0.0,
            1.0,
            None,
            None,
        )
        for i in ids
    ]
    app = D.Appender(pg)
    try:
        app.append(tuples)  # type: ignore[arg-type]
    finally:
        app.close()
    assert partition_of(pg, "decisions", ids[0]) == partitions.name_for(partitions.day_start(t))
    got = D.get(pg, ids[1])
    assert got is not None and got.ts == t


def test_downgrade_gives_back_one_table_with_every_row(pg: Store) -> None:
    pg.upgrade()
    rows = _rows(pg, [NOON, NOON + DAY_US, NOON + 500 * DAY_US])
    with pg.write() as conn:
        partition_convert.unconvert(conn)
        assert not partitions.is_partitioned(conn)
    assert [D.get(pg, r.id) for r in rows] == rows


def test_sqlite_keeps_its_one_table(tmp_path: Path) -> None:
    s = Store.open(f"sqlite:///{tmp_path / 'home' / 'c.db'}", tmp_path / "home")
    try:
        assert s.upgrade() == HEAD_REVISION
        assert partitions.maintain(s) is None
        rows = _rows(s, [NOON])
        assert D.get(s, rows[0].id) == rows[0]
    finally:
        s.close()


def test_the_servers_worker_makes_a_missing_partition(pg: Store) -> None:
    pg.upgrade()
    last = partitions.name_for(partitions.day_start(now_us()) + partitions.AHEAD_DAYS * DAY_US)
    with pg.write() as conn:
        conn.execute(text(f'DROP TABLE "{last}"'))
    worker = partitions.PartitionWorker(pg, 3600)
    worker.start()
    worker.wake()
    try:
        for _ in range(600):  # its first pass, within 30 s
            with pg.read() as conn:
                if conn.execute(text("SELECT to_regclass(:n)"), {"n": last}).scalar():
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{last} was not made")
    finally:
        worker.stop()


def test_one_maintainer_per_store_and_other_stores_go_on(
    pg: Store, pg_url: str, tmp_path: Path
) -> None:
    pg.upgrade()
    base = pg_url.split("?")[0]
    other_schema = "t_other_" + new_id().replace("-", "")[-12:]
    admin = create_engine(base)
    holder = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {other_schema}"))
    other = Store.open(f"{base}?options=-csearch_path%3D{other_schema}", tmp_path / "other")
    try:
        other.upgrade()
        with holder.connect() as h, h.begin():
            # another replica of this store is maintaining its partitions right now
            key = "hashtext(current_schema() || '.chronoml-partitions')"
            assert h.execute(text(f"SELECT pg_try_advisory_xact_lock({key})")).scalar()
            assert partitions.maintain(pg) is None
            assert partitions.maintain(other) is not None
        assert partitions.maintain(pg) is not None
    finally:
        other.close()
        holder.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {other_schema} CASCADE"))
        admin.dispose()
