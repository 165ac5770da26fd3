"""``audit verify --decisions`` and proofs on a PostgreSQL store partitioned by day: they
read only the day partitions a decision's id points to, and an insider who moves a row
to another day (or deletes it) is still named, as is nothing about a row that was
logged far from its id's time."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from evidence_fill import deploy, drop_guards, sql
from partition_support import copy_under_its_id, new_id_at

from chronoml.context import Context
from chronoml.evidence import audit as EA
from chronoml.evidence import decision_check as DC
from chronoml.evidence import keys, proofs
from chronoml.ids import new_id
from chronoml.settings import Settings
from chronoml.store import Store, partitions
from chronoml.store import decisions as D
from chronoml.store import evidence as SE
from chronoml.store import evidence_preimages as EP
from chronoml.store import ledger as SL
from chronoml.store import proof_reads as PR
from chronoml.store.partitions import DAY_US
from chronoml.window import Window

# noon UTC on 2026-06-01, then the days around it
NOON = 1_780_315_200_000_000
SCHEMA = tuple((f"f{i}", "float") for i in range(3))
DAYS = 4
PER_DAY = 40


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(pg_url, tmp_path / "home")
    s.upgrade()
    with s.write() as conn:
        partitions.create_ahead(conn, NOON - 2 * DAY_US, DAYS + 4)
    yield s
    s.close()


def _log(pg: Store, far: int = 0) -> list[str]:
    """``DAYS`` days of decisions in commits of ``PER_DAY``, one commit a day; with
    ``far``, the last decision's row sits ``far`` microseconds before its id's time."""
    D.Layouts(pg).ensure("lay3", SCHEMA)
    ev = SL.append(pg, deploy("churn", "a"))
    app = D.Appender(pg)
    ids: list[str] = []
    try:
        for day in range(DAYS):
            rows: list[D.DecisionTuple] = []
            for k in range(PER_DAY):
                ts = NOON + day * DAY_US + k * 1_000_000
                did = new_id_at(ts + 2_000)  # the id is made as the answer leaves
                num = struct.pack("<3d", k, day, 0.5)
                rows.append(
                    (
                        did, ts, "churn", "a", "churn", "1", ev.seq, False, f"u{k % 4}",
                        new_id(), "lay3", num, None, "0.5", 0.5, 1.25, None, None,
                    )
                )  # fmt: skip
            if far and day == DAYS - 1:
                last = rows[-1]
                rows[-1] = (last[0], last[1] - far, *last[2:])
            app.append(rows)
            ids += [r[0] for r in rows]
    finally:
        app.close()
    return ids


def _decision_ranges(pg: Store) -> list[tuple[int, int]]:
    with pg.read() as conn:
        return [(int(e[0]), int(e[0]) + 1) for e in SE.log_entries(conn) if e[1] == "decision"]


def test_verify_reads_only_the_partitions_its_ids_point_to(pg: Store) -> None:
    ids = _log(pg)
    report = EA.verify(pg, decisions=True, workers=1)
    assert report.ok, report.problems
    assert report.decisions == len(ids)
    with pg.read() as conn:
        every = [p.name for p in partitions.partitions(conn)]
        assert len(every) > DAYS
        for day, (lo, hi) in enumerate(_decision_ranges(pg)):
            first, last = conn.exec_driver_sql(EP.RANGE_REFS % (lo, hi)).one()
            span = partitions.ids_span([first, last])
            assert span is not None
            stmt = EP.PREIMAGES[True, True, True] % (*span, f"'{first}'", f"'{last}'", lo, hi)
            today = partitions.name_for(partitions.day_start(NOON + day * DAY_US))
            # the span reaches ten minutes before the first id: the day before at most
            assert today in partitions.explain(conn, stmt, {})
            assert len(partitions.explain(conn, stmt, {})) <= 2
            assert len(
                partitions.explain(conn, EP.PREIMAGES[True, False, True] % (lo, hi), {})
            ) == len(every)


def test_a_row_logged_far_from_its_ids_time_verifies_and_is_proven(
    pg: Store, tmp_path: Path
) -> None:
    ids = _log(pg, far=3 * DAY_US)
    report = EA.verify(pg, decisions=True, workers=1)
    assert report.ok, report.problems
    assert report.decisions == len(ids)
    # the proof's one-statement read misses it where its id points; the proof is made
    with pg.lookup() as conn:
        assert PR.decision_evidence(conn, ids[-1]).row is None
        assert PR.decision_evidence(conn, ids[0]).row is not None
    key = keys.generate("test")
    settings = Settings.from_env(
        {}, home=tmp_path / "home", store_url=pg.engine.url.render_as_string(hide_password=False)
    )
    got = proofs.decision_proof(Context(settings, pg), key, ids[-1])
    assert got["leaf"]["id"] == ids[-1]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        # to another day's partition: the row is no longer where its id points
        (f"UPDATE decisions SET ts = ts - {3 * DAY_US} WHERE id = :i", "committed leaf"),
        ("UPDATE decisions SET ts = ts + 1 WHERE id = :i", "committed leaf"),
        ("UPDATE decisions SET latency_ms = 9 WHERE id = :i", "committed leaf"),
        ("DELETE FROM decisions WHERE id = :i", "deleted"),
    ],
)
def test_a_decision_moved_to_another_day_edited_or_deleted_is_named(
    pg: Store, statement: str, reason: str
) -> None:
    ids = _log(pg)
    victim = ids[PER_DAY + 7]
    drop_guards(pg)
    sql(pg, statement, {"i": victim})
    report = EA.verify(pg, decisions=True, workers=1)
    assert not report.ok
    assert report.first_bad == f"decision {victim}"
    assert reason in (report.reason or "")
    named = [p.what for p in report.problems if p.what.startswith("decision")]
    assert named == [f"decision {victim}"]


@pytest.mark.parametrize("days_back", [3, 0])
@pytest.mark.parametrize("windowed", [False, True])
def test_a_second_row_under_a_committed_id_is_named(
    pg: Store, days_back: int, windowed: bool
) -> None:
    """The day partitions key rows by (id, ts): plain SQL can copy a committed decision
    under its own id with another time and another output, which window reads then
    serve. Outside the id's time span the bounded join never sees the copy."""
    ids = _log(pg)
    victim = ids[PER_DAY + 7]
    drop_guards(pg)
    copy_under_its_id(
        pg, "decisions", victim, "ts = ts - %(back)s, output = '0.99', output_num = 0.99",
        {"back": days_back * DAY_US + 1},
    )  # fmt: skip
    with pg.read() as conn:
        n = conn.exec_driver_sql(
            "SELECT count(*) FROM decisions WHERE id = %(i)s", {"i": victim}
        ).scalar_one()
    assert n == 2
    window = Window(NOON - 10 * DAY_US, NOON + 10 * DAY_US) if windowed else None
    report = EA.verify(pg, decisions=True, workers=1, window=window)
    assert not report.ok
    assert any(
        p.what == f"decision {victim}" and "more than one stored row" in p.reason
        for p in report.problems
    ), report.problems


def test_a_worker_that_dies_at_start_leaves_its_pieces_to_this_process(
    pg: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process gone before it reads its first line (killed, out of memory, a
    broken interpreter): verify checks every piece itself instead of failing."""
    ids = _log(pg)
    real = DC.subprocess.Popen

    def dead(*args: Any, **kwargs: Any) -> Any:
        proc = real(["/bin/false"], **kwargs)
        proc.wait()  # its end of the pipe is closed before the store's URL is written
        return proc

    monkeypatch.setattr(DC.subprocess, "Popen", dead)
    report = EA.verify(pg, decisions=True, workers=2)
    assert report.ok, report.problems
    assert report.decisions == len(ids)
