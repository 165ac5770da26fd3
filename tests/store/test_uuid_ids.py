"""Decision ids as ``uuid`` on PostgreSQL (migration 0022): a store of old text rows
converts and answers as before, one id that is no UUID keeps the store on text, ids
that no uuid column can hold are found nowhere (never an error), and the downgrade."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from evidence_fill import fill
from sqlalchemy import text

from chronoml.domain.feedback import FeedbackError, Label
from chronoml.evidence import audit
from chronoml.store import Store, id_types
from chronoml.store import decisions as D
from chronoml.store import explanations as SX
from chronoml.store import feedback as SF
from chronoml.store import proof_reads as PR

BAD = ["not-a-uuid", "", "0190A000-0000-7000-8000-000000000001", "x" * 36, "'; --"]


def _types(store: Store) -> set[str]:
    with store.read() as conn:
        return {
            str(
                conn.execute(
                    text(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = to_regclass(:t) AND attname = :c"
                    ),
                    {"t": t, "c": c},
                ).scalar_one()
            )
            for t, c in id_types.COLUMNS
        }


def _downgrade(store: Store, revision: str) -> None:
    assert store.downgrade(revision) == revision


def _answers(store: Store, ids: list[str]) -> dict[str, Any]:
    with store.lookup() as conn:
        proofs = {i: PR.decision_evidence(conn, i) for i in ids}
    report = audit.verify(store, decisions=True)
    return {
        "rows": {i: D.get(store, i) for i in ids},
        "labels": {i: SF.history(store, i) for i in ids},
        "explanations": {i: SX.get(store, i) for i in ids},
        "proofs": {i: (p.item, p.row) for i, p in proofs.items()},
        "verify": (report.ok, report.decisions, report.reason),
    }


@pytest.fixture
def old(pg_url: str, tmp_path: Path) -> Any:
    """A store at 0021 (ids as text) holding every kind of row that names a decision."""
    s = Store.open(pg_url, tmp_path / "home")
    s.upgrade("0021")
    filled = fill(s, tmp_path)
    yield s, filled.decisions
    s.close()


def test_old_text_rows_convert_and_every_answer_stays_the_same(old: Any) -> None:
    store, ids = old
    assert _types(store) == {"character varying(36)"}
    before = _answers(store, ids)
    assert before["verify"][0] and before["verify"][1] == len(ids)
    assert any(before["labels"].values()) and any(before["explanations"].values())

    assert store.upgrade() == "0022"
    assert _types(store) == {"uuid"}
    after = _answers(store, ids)
    assert after == before
    assert all(
        isinstance(r.id, str) and isinstance(r.request_id, str) for r in after["rows"].values()
    )

    for bad in BAD:  # text no uuid column can hold: found nowhere, and no statement fails
        assert D.get(store, bad) is None
        assert SF.history(store, bad) == [] and SX.get(store, bad) is None
        with store.lookup() as conn:
            got = PR.decision_evidence(conn, bad)
        assert got.item is None and got.row is None
    with pytest.raises(FeedbackError) as err:
        SF.record(store, [Label("not-a-uuid", 1, None)], actor="labeller")
    assert err.value.status == 404
    # a new label on the converted store, and it is proven like the old ones
    SF.record(store, [Label(ids[3], 1, None)], actor="labeller")
    assert [h["label"] for h in SF.history(store, ids[3])] == [1]
    assert audit.verify(store, decisions=True).ok

    _downgrade(store, "0021")
    assert _types(store) == {"character varying(36)"}
    back = _answers(store, ids)
    assert back["rows"] == before["rows"] and back["verify"][0]


def test_one_id_that_is_no_uuid_keeps_every_id_column_text(
    old: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store, ids = old
    row = D.get(store, ids[0])
    assert row is not None
    legacy = ("décision-✓7", *[getattr(row, c) for c in D.COLUMNS[1:]])
    app = D.Appender(store)
    try:
        app.append([legacy])  # type: ignore[list-item]
    finally:
        app.close()
    with caplog.at_level(logging.WARNING, logger="chronoml.ids"):
        store.upgrade()
    assert "décision-✓7" in caplog.text and "kept as text" in caplog.text
    assert _types(store) == {"character varying(36)"}
    got = D.get(store, "décision-✓7")
    assert got is not None and got.id == "décision-✓7"
    assert D.get(store, "not-a-uuid") is None and D.get(store, ids[1]) is not None
    with store.lookup() as conn:
        assert PR.decision_evidence(conn, "décision-✓7").item is not None
    report = audit.verify(store, decisions=True)
    assert report.ok and report.decisions == len(ids) + 1, report.reason


def test_the_lookups_of_an_id_use_the_uuid_key(old: Any) -> None:
    store, ids = old
    store.upgrade()
    with store.read() as conn:
        plan = conn.exec_driver_sql(
            f"EXPLAIN SELECT * FROM decisions WHERE id = '{ids[2]}'"
        ).scalars()
        assert "Index" in "\n".join(plan)
        joined = conn.exec_driver_sql(
            "EXPLAIN SELECT * FROM evidence_items i LEFT JOIN decisions d "
            f"ON d.id = i.ref::uuid WHERE i.kind = 'decision' AND i.ref = '{ids[2]}'"
        ).scalars()
        assert "decisions" in "\n".join(joined)


def test_ids_read_in_text_and_binary_come_back_as_their_text(old: Any) -> None:
    store, ids = old
    store.upgrade()
    raw = store.engine.raw_connection()
    try:
        db = raw.driver_connection
        for binary in (False, True):
            with db.cursor(binary=binary) as cur:  # type: ignore[union-attr]
                cur.execute("SELECT id, request_id FROM decisions ORDER BY id")
                got = cur.fetchall()
            assert [r[0] for r in got] == sorted(ids)  # uuid order is the text's
            assert all(type(v) is str and id_types.is_canonical(v) for r in got for v in r)
        db.rollback()  # type: ignore[union-attr]
    finally:
        raw.close()


def test_an_archive_file_of_ids_no_uuid_keeps_text(
    old: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = old
    with store.write() as conn:  # as an archive of rows logged under other ids leaves it
        conn.execute(
            text(
                "INSERT INTO archive_files (sha256, endpoint, layout, ts_min, ts_max, rows, "
                "bytes, min_id, max_id, target, created_at) VALUES ('f' || repeat('0', 63), "
                "'churn', 'lay1', 0, 1, 2, 10, 'legacy-0001', 'legacy-0002', '{}', 0)"
            )
        )
    with caplog.at_level(logging.WARNING, logger="chronoml.ids"):
        store.upgrade()
    assert "legacy-0001" in caplog.text and _types(store) == {"character varying(36)"}
