"""Every column of every table the evidence covers, edited in turn: 100% detected, and the
report's first problem names the row that was edited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from evidence_fill import Filled, drop_guards, fill, sql

from chronoml.evidence import audit as EA
from chronoml.store import Store, schema

# table -> (key column, key value or a function of the filled store, what the report must name)
Named = Callable[[EA.Problem], bool]


def _at(*indexes: int) -> Named:
    return lambda p: p.log_index in indexes


def _says(text: str) -> Named:
    return lambda p: text in p.what


ROWS: dict[str, tuple[str, Any, Named]] = {
    "ledger_events": ("seq", 2, _says("ledger event #")),
    "decisions": (
        "id",
        "0190a000-0000-7000-8000-000000000006",
        _says("decision 0190a000-0000-7000-8000-000000000006"),
    ),
    "feedback": ("id", "first feedback", _says("feedback ")),
    "explanations": (
        "decision_id",
        "0190a000-0000-7000-8000-000000000004",
        _says("explanation 0190a000-0000-7000-8000-000000000004"),
    ),
    "evidence_log": ("idx", 5, _at(5)),
    "evidence_nodes": ("idx", 5, _says("node")),
    "evidence_head": ("id", 1, lambda p: "head" in p.what or "checkpoint" in p.what),
    "evidence_items": (
        "ref",
        "0190a000-0000-7000-8000-000000000006",
        lambda p: p.log_index in (4, 7),
    ),
    "checkpoints": ("id", 1, _says("checkpoint")),
}
# the ledger's JSON columns get other valid JSON; the rest a generic change of type
SPECIAL: dict[tuple[str, str], Any] = {
    ("ledger_events", "payload"): "{}",
    ("ledger_events", "state"): "[]",
    ("ledger_events", "back"): 3,
    ("ledger_events", "kind"): "retire",
    ("evidence_nodes", "level"): 7,
}
BOOLEAN = {"shadow", "sets_state"}
CASES = [(t, c.name) for t in ROWS for c in schema.metadata.tables[t].c]


def changed(column: str, value: Any) -> Any:
    """A different value of the same type."""
    if column in BOOLEAN:
        return not bool(value)
    if value is None:
        return 5 if column in {"observed_at", "output_num", "back", "ref"} else '["x"]'
    if isinstance(value, bytes | memoryview):
        raw = bytearray(bytes(value) or b"\x00")
        raw[0] ^= 0x01
        return bytes(raw)
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, int):
        return value + 1000
    text = str(value)  # same length: columns have a maximum
    return text[:-1] + ("e" if text[-1] != "e" else "f")  # hex: an id stays a uuid


def test_the_cases_cover_every_column() -> None:
    assert len(CASES) == sum(len(schema.metadata.tables[t].c) for t in ROWS)
    assert {"sets_state", "salt", "commitment", "peaks", "note"} <= {c for _, c in CASES}


@pytest.mark.parametrize(("table", "column"), CASES)
def test_editing_any_column_is_detected_and_named(
    store: Store, tmp_path: Path, table: str, column: str
) -> None:
    filled: Filled = fill(store, tmp_path)
    assert EA.verify(store, decisions=True, checkpoint=filled.checkpoint).ok
    key, ident, named = ROWS[table]
    if ident == "first feedback":
        ident = filled.feedback[0]
    with store.read() as conn:
        value = conn.exec_driver_sql(
            f"SELECT {column} FROM {table} WHERE {key} = {':k' if store.is_sqlite else '%(k)s'}",
            {"k": ident},
        ).scalar()
    new = SPECIAL.get((table, column), changed(column, value))
    assert new != value
    drop_guards(store)
    sql(store, f"UPDATE {table} SET {column} = :v WHERE {key} = :k", {"v": new, "k": ident})
    report = EA.verify(store, decisions=True, checkpoint=filled.checkpoint)
    assert not report.ok, f"{table}.{column} edited and not detected"
    first = report.problems[0]
    assert named(first), f"{table}.{column}: the report names {first.what}: {first.reason}"
