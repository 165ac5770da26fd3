"""``chronoml db partitions``: day partitions made ahead, old empty ones detached, kept ones
listed; refused on SQLite."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import text

from chronoml.cli import cli
from chronoml.store import Store, partitions
from chronoml.store.partitions import DAY_US
from chronoml.timeutil import now_us


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args])


def test_db_partitions_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    up = run(home, pg_url, "db", "upgrade")
    assert up.exit_code == 0, up.output
    store = Store.open(pg_url, home)
    try:
        old = partitions.day_start(now_us()) - 400 * DAY_US
        with store.write() as conn:
            partitions.create_ahead(conn, old, 1)  # two old days, one of them with a row
            conn.execute(
                text(
                    "INSERT INTO decisions (id, ts, endpoint, variant, model_name, model_version,"
                    " event_seq, shadow, request_id, layout, num, output, latency_ms) VALUES"
                    " ('0190a000-0000-7000-8000-000000000001', :ts, 'e', 'a', 'm', '1', 1, false,"
                    " '0190a000-0000-7000-9000-000000000001', 'l', '', '0', 1.0)"
                ),
                {"ts": old + 5},
            )
    finally:
        store.close()
    r = run(home, pg_url, "db", "partitions", "--ahead", "10", "--detach-after", "190d", "--list")
    assert r.exit_code == 0, r.output
    day0, day1 = (partitions.name_for(old + k * DAY_US) for k in (0, 1))
    assert f"detached and dropped {day1} (empty)" in r.output
    assert f"kept {day0}: 1 decisions not archived yet" in r.output
    ahead = partitions.name_for(partitions.day_start(now_us()) + 10 * DAY_US)
    assert f"created {ahead}" in r.output
    assert partitions.DEFAULT in r.output
    # the ingest blocks' partitions are kept the same way, beside the rows'
    blocks_ahead = partitions.name_for(
        partitions.day_start(now_us()) + 10 * DAY_US, "ingest_blocks"
    )
    assert f"created {blocks_ahead}" in r.output
    assert partitions.default_of("ingest_blocks") in r.output
    bad = run(home, pg_url, "db", "partitions", "--detach-after", "soon")
    assert bad.exit_code != 0 and "--detach-after" in bad.output


def test_db_partitions_on_sqlite_says_there_are_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'chronoml.db'}"
    assert run(home, url, "db", "upgrade").exit_code == 0
    r = run(home, url, "db", "partitions")
    assert r.exit_code != 0 and "SQLite" in r.output
