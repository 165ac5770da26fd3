"""Time partitions of the ingest blocks on PostgreSQL: migration 0020 keeps every block,
a lookup of a block's decision by id and a window read touch only their partitions,
blocks made ahead of their day move in, and detaching never takes a block with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from partition_support import compiled, copy_under_its_id, id_at, partition_of
from sqlalchemy import text

from chronoml.domain import codec
from chronoml.evidence import audit
from chronoml.ids import block_of, new_block_ids
from chronoml.store import Store, ingest, partition_convert, partitions
from chronoml.store import decisions as D
from chronoml.store import ingest_reads as IR
from chronoml.store.database import HEAD_REVISION
from chronoml.store.partitions import BLOCKS, DAY_US

SCHEMA = (("x", "float"), ("k", "int"))
# noon UTC on 2026-06-01, then the days around it
NOON = 1_780_315_200_000_000
PER = 20  # decisions per block


def _blocks(store: Store, times: list[int], made_at: list[int] | None = None) -> list[ingest.Block]:
    """A block of :data:`PER` decisions at each of ``times`` (ids made at ``made_at``,
    by default at the block's own time), committed as the gateway commits them."""
    layout = codec.layout_id(SCHEMA)
    D.Layouts(store).ensure(layout, SCHEMA)
    out = []
    for k, ts in enumerate(times):
        bid, ids = new_block_ids(PER)
        t = made_at[k] if made_at else ts
        bid, ids = id_at(bid, t), [id_at(i, t) for i in ids]
        num = [np.array([float(i), 0.0], dtype="<f8").tobytes() for i in range(PER)]
        outs = [str(i % 2) for i in range(PER)]
        block = ingest.Block(
            bid, ids, ts, "e", "a", "m", "1", 1, False, f"u{k}", "r", layout, 1.5, num,
            [None] * PER, outs, [float(o) for o in outs], None, None,
        )  # fmt: skip
        out.append(block)
    app = D.Appender(store)
    try:
        app.append([], (), out)
    finally:
        app.close()
    return out


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(pg_url, tmp_path / "home")
    yield s
    s.close()


def _day(ts: int) -> str:
    return partitions.name_for(partitions.day_start(ts), BLOCKS)


def test_migration_0020_moves_every_block_into_its_day(pg: Store) -> None:
    pg.upgrade("0018")
    times = [NOON - 40 * DAY_US + k * DAY_US + i for k in (0, 1, 5) for i in range(3)]
    before = _blocks(pg, times)
    with pg.read() as conn:
        assert not partitions.is_partitioned(conn, BLOCKS)
        assert partitions.is_partitioned(conn)  # the rows were partitioned by 0012
    assert pg.upgrade() == HEAD_REVISION
    with pg.read() as conn:
        assert partitions.is_partitioned(conn, BLOCKS)
        names = [p.name for p in partitions.partitions(conn, BLOCKS)]
        pkey = conn.execute(
            text(
                "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = 'ingest_blocks'::regclass AND i.indisprimary"
            )
        ).scalar_one()
        indexes = set(
            conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'ingest_blocks'")
            ).scalars()
        )
    assert sorted(pkey) == ["id", "ts"]
    assert {"ix_ingest_blocks_endpoint_ts", "ix_ingest_blocks_unit"} <= indexes
    for ts in times:
        assert _day(ts) in names
    assert names[-1] == partitions.default_of(BLOCKS)
    assert D.count(pg) == len(times) * PER
    for b in before:
        assert partition_of(pg, "ingest_blocks", b.id) == _day(b.ts)
        for i in (b.ids[0], b.ids[-1]):
            got = D.get(pg, i)
            assert got is not None and got.id == i and got.ts == b.ts
    w = D.window(pg, D.Layouts(pg), "e", times[0], times[-1] + 1)
    assert w.rows == len(times) * PER
    report = audit.verify(pg, decisions=True)
    assert report.ok, report.reason
    assert report.decisions == len(times) * PER


def test_a_block_lookup_and_a_window_read_touch_only_their_partitions(pg: Store) -> None:
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 3 * DAY_US, 6, BLOCKS)
        every = [p.name for p in partitions.partitions(conn, BLOCKS)]
    assert len(every) > 8
    block = _blocks(pg, [NOON])[0]
    decision = block.ids[7]
    bid, pos = block_of(decision) or ("", 0)
    assert bid == block.id and pos == 7
    lo, hi = partitions.id_span(decision) or (0, 0)
    # a decision's id implies the same span as its block's id
    assert partitions.id_span(bid) == (lo, hi)
    today = _day(NOON)
    with pg.read() as conn:
        by_id = compiled(IR.GET_SPAN.params(id=bid, lo=lo, hi=hi))
        assert partitions.explain(conn, by_id, {}) == [today]
        # prepared by the driver (a generic plan), the lookup prunes at start-up
        conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(
            "PREPARE block_by_id(text, bigint, bigint) AS SELECT * FROM ingest_blocks"
            " WHERE id = $1 AND ts >= $2 AND ts < $3"
        )
        plan = conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) EXECUTE block_by_id('{bid}', {lo}, {hi})"
        ).scalar_one()
        top = plan[0]["Plan"]
        kept = [p.get("Relation Name") for p in top.get("Plans", [top])]
        assert kept == [today], kept
        assert top.get("Subplans Removed", 0) == len(every) - 1
        # a window of two days of one endpoint reads those two days' partitions
        IB = IR.IB
        q = IB.select().where(IB.c.endpoint == "e", IB.c.ts >= NOON - DAY_US, IB.c.ts < NOON + 1)
        assert partitions.explain(conn, compiled(q), {}) == sorted([_day(NOON - DAY_US), today])
        # without the id's span, every partition is searched
        assert len(partitions.explain(conn, compiled(IR.GET.params(id=bid)), {})) == len(every)
    got = D.get(pg, decision)
    assert got is not None and got.id == decision and got.output == "1"


def test_a_block_far_from_its_ids_time_is_still_found(pg: Store) -> None:
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 5 * DAY_US, 6, BLOCKS)
    # the block sits three days before the time its ids say: the pruned read misses it
    far, near = _blocks(pg, [NOON - 3 * DAY_US, NOON + 5], made_at=[NOON, NOON + 5])
    lo, hi = partitions.id_span(far.id) or (0, 0)
    with pg.read() as conn:
        assert conn.execute(IR.GET_SPAN, {"id": far.id, "lo": lo, "hi": hi}).first() is None
        assert IR.stored_in(conn, far.id) is not None
        got = partitions.rows_by_ids(conn, [D.D.c.id, D.D.c.ts], [far.ids[3], near.ids[4]])
    assert sorted(got) == sorted([(far.ids[3], far.ts), (near.ids[4], near.ts)])
    found = D.get(pg, far.ids[0])
    assert found is not None and found.ts == far.ts
    assert D.get(pg, id_at(far.id, NOON + 1000)[:32] + "0001") is None


def test_blocks_waiting_in_default_move_into_their_day(pg: Store) -> None:
    pg.upgrade()
    later = NOON + 400 * DAY_US  # beyond every partition the migration made
    waiting = _blocks(pg, [later, later + 1])
    assert partition_of(pg, "ingest_blocks", waiting[0].id) == partitions.default_of(BLOCKS)
    report = partitions.maintain(pg, now=later - 2 * DAY_US, ahead_days=3)
    assert report is not None
    days = [partitions.day_start(later) + k * DAY_US for k in (-2, -1, 0, 1)]
    assert report.created == [partitions.name_for(d, t) for t in partitions.TABLES for d in days]
    assert report.moved_blocks == 2 and report.moved == 0
    assert partition_of(pg, "ingest_blocks", waiting[0].id) == _day(later)
    for b in waiting:
        got = D.get(pg, b.ids[-1])
        assert got is not None and got.ts == b.ts


def test_detach_takes_only_empty_block_partitions(pg: Store) -> None:
    pg.upgrade()
    old = NOON - 300 * DAY_US
    with pg.write() as conn:
        for t in partitions.TABLES:
            partitions.create_ahead(conn, old, 2, t)  # three old days of each table
    kept = _blocks(pg, [old + 10, old + 20])
    day0, day1, day2 = (_day(old + k * DAY_US) for k in range(3))
    report = partitions.maintain(pg, now=NOON, detach_after_us=180 * DAY_US)
    assert report is not None
    assert report.kept == [(day0, 2)]
    assert {day1, day2} <= set(report.detached)
    assert partitions.name_for(partitions.day_start(old)) in report.detached  # no rows there
    assert D.count(pg) == 2 * PER
    for b in kept:
        got = D.get(pg, b.ids[0])
        assert got is not None and got.ts == b.ts
    # once the blocks are gone (archived and deleted), their partition goes too
    with pg.write() as conn:
        conn.execute(text("DELETE FROM ingest_blocks WHERE ts < :t"), {"t": old + DAY_US})
    report = partitions.maintain(pg, now=NOON, detach_after_us=180 * DAY_US)
    assert report is not None and report.detached == [day0] and report.kept == []


def test_downgrade_gives_back_one_table_of_blocks(pg: Store) -> None:
    pg.upgrade()
    made = _blocks(pg, [NOON, NOON + DAY_US, NOON + 500 * DAY_US])
    with pg.write() as conn:
        partition_convert.unconvert(conn, BLOCKS)
        assert not partitions.is_partitioned(conn, BLOCKS)
        assert partitions.is_partitioned(conn)
    for b in made:
        got = D.get(pg, b.ids[5])
        assert got is not None and got.ts == b.ts
    with pg.write() as conn:
        assert partition_convert.convert(conn, NOON, parent=BLOCKS) == len(made)
    assert [partition_of(pg, "ingest_blocks", b.id) for b in made] == [_day(b.ts) for b in made]


def _locked(conn: object) -> list[str]:
    """The partitions of ingest_blocks this transaction has opened (the planner locks
    only those it did not prune)."""
    return sorted(
        conn.execute(  # type: ignore[attr-defined]
            text(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " JOIN pg_inherits i ON i.inhrelid = c.oid"
                " WHERE l.pid = pg_backend_pid() AND i.inhparent = 'ingest_blocks'::regclass"
            )
        ).scalars()
    )


def test_the_lookup_of_a_block_decision_opens_one_partition(pg: Store) -> None:
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 3 * DAY_US, 6, BLOCKS)
    block = _blocks(pg, [NOON, NOON + DAY_US])[0]
    with pg.read() as conn:
        got = D.get_in(conn, block.ids[11])
        assert got is not None and got.id == block.ids[11]
        assert _locked(conn) == [_day(NOON)]
    # an unknown block: where its id points, then every partition
    with pg.read() as conn:
        assert D.get_in(conn, block.id[:24] + "ffffffff0001") is None
        assert len(_locked(conn)) == len(partitions.partitions(conn, BLOCKS))


@pytest.mark.parametrize("days_back", [3, 0])
def test_a_second_block_under_a_committed_block_id_is_named(pg: Store, days_back: int) -> None:
    """Blocks are keyed by (id, ts) on day partitions, so plain SQL can add a forged copy
    of a committed block under its id, at another time, with another latency."""
    pg.upgrade()
    with pg.write() as conn:
        partitions.create_ahead(conn, NOON - 5 * DAY_US, 6, BLOCKS)
    blocks = _blocks(pg, [NOON, NOON + 5])
    victim = blocks[1].id
    assert audit.verify(pg, decisions=True, workers=1).ok
    copy_under_its_id(
        pg, "ingest_blocks", victim, "ts = ts - %(back)s, latency_ms = 99",
        {"back": days_back * DAY_US + 1},
    )  # fmt: skip
    report = audit.verify(pg, decisions=True, workers=1)
    assert not report.ok
    assert any(
        p.what == f"block {victim}" and "more than one stored row" in p.reason
        for p in report.problems
    ), report.problems
