"""What an inclusion proof reads, in as few statements as the store allows.

A decision's proof needs its row, its evidence item, the newest checkpoint, its
batch's leaf hashes and time, and the log's subtree nodes on its audit path.
Read one statement each, that is six round trips and six result set-ups (and on
a loaded machine each round trip waits for the server to be scheduled); here it
is two: the decision with its item and the checkpoint, then the batch, its entry
and the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text

from chronoml.domain.merkle import HASH_SIZE
from chronoml.store import id_types
from chronoml.store.decisions import COLUMNS, DecisionRow
from chronoml.store.partitions import id_span

_DECISION_EVIDENCE_SQL = (
    "SELECT i.log_index, i.position, i.leaf, i.salt, i.commitment, c.id, c.size, c.note, "
    + ", ".join(f"d.{col}" for col in COLUMNS)
    + " FROM (SELECT 1 AS one) AS o "
    "LEFT JOIN evidence_items i ON i.kind = 'decision' AND i.ref = :ref "
    "LEFT JOIN decisions d ON d.id = :id AND i.ref IS NOT NULL{span} "
    "LEFT JOIN (SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1) AS c ON 1 = 1"
)
# :ref and :id are the same id, apart: one untyped parameter compared with the text ref
# and with a uuid id would be typed by its first use and fail at the second
_DECISION_EVIDENCE = text(_DECISION_EVIDENCE_SQL.format(span="")).bindparams(
    bindparam("ref"), bindparam("id")
)
# PostgreSQL: only the day partitions the id's time points to (partitions.id_span); a
# row outside them comes back missing and is looked up again everywhere
_DECISION_EVIDENCE_IN_SPAN = text(
    _DECISION_EVIDENCE_SQL.format(span=" AND d.ts >= :lo AND d.ts < :hi")
).bindparams(bindparam("ref"), bindparam("id"), bindparam("lo"), bindparam("hi"))


@dataclass(frozen=True)
class DecisionEvidence:
    """A decision's evidence row (``ITEM_COLUMNS`` order, or None), its row (None when
    it is not in the table: unknown, or moved to an archive file) and the newest
    checkpoint (id, size, signed note; or None)."""

    item: tuple[Any, ...] | None
    row: DecisionRow | None
    checkpoint: tuple[int, int, str] | None


def decision_evidence(conn: Connection, decision_id: str) -> DecisionEvidence:
    """The decision's item and row and the newest stored checkpoint, in one statement.

    The row is None when it is not where its id's time says (the caller then looks it
    up by id alone, :func:`chronoml.store.decisions.get_in`)."""
    span = None if conn.dialect.name == "sqlite" else id_span(decision_id)
    did = id_types.bindable(conn, decision_id)
    if span is None:
        r = conn.execute(_DECISION_EVIDENCE, {"ref": decision_id, "id": did}).one()
    else:
        params = {"ref": decision_id, "id": did, "lo": span[0], "hi": span[1]}
        r = conn.execute(_DECISION_EVIDENCE_IN_SPAN, params).one()
    item = None
    if r[0] is not None:
        item = ("decision", decision_id, int(r[0]), int(r[1]), bytes(r[2]), r[3], r[4])
    cp = None if r[5] is None else (int(r[5]), int(r[6]), str(r[7]))
    row = None
    d = r[8:]
    if d[0] is not None:
        # the driver's values, as the typed lookup gives them (SQLite keeps booleans as 0/1)
        values = dict(zip(COLUMNS, d, strict=True))
        values["shadow"] = bool(values["shadow"])
        values["num"] = bytes(values["num"])
        if values["scores"] is not None:
            values["scores"] = bytes(values["scores"])
        row = DecisionRow(**values)
    return DecisionEvidence(item, row, cp)


@dataclass(frozen=True)
class BatchAndPath:
    """A batch's leaf hashes in order, its log entry's time, and the stored nodes asked for."""

    leaves: list[bytes]
    committed_at: int | None
    nodes: dict[tuple[int, int], bytes]


def batch_and_path(
    conn: Connection, log_index: int, wanted: Sequence[tuple[int, int]]
) -> BatchAndPath:
    """The batch at ``log_index`` (its items' leaves and time) and the ``(level, idx)``
    nodes of the log, in one statement."""
    at = int(log_index)
    parts = [
        f"SELECT 0 AS t, position AS a, 0 AS b, leaf AS h FROM evidence_items WHERE log_index = {at}",
        f"SELECT 2, committed_at, size, root FROM evidence_log WHERE idx = {at}",
    ]
    by_level: dict[int, set[int]] = {}
    for lv, i in wanted:
        by_level.setdefault(int(lv), set()).add(int(i))
    if by_level:
        # integers we computed, inlined; one OR term per level, so each is a key search
        terms = " OR ".join(
            f"(level = {lv} AND idx IN ({', '.join(map(str, sorted(ix)))}))"
            for lv, ix in sorted(by_level.items())
        )
        parts.append(f"SELECT 1, level, idx, hash FROM evidence_nodes WHERE {terms}")
    cur = conn.exec_driver_sql(" UNION ALL ".join(parts) + " ORDER BY 1, 2").cursor
    assert cur is not None
    rows = cur.fetchall()
    leaves: list[bytes] = []
    for r in rows:
        if r[0] == 0:  # an ingest block's item: its rows' leaves end to end, in position order
            raw = bytes(r[3])
            leaves.extend(raw[k : k + HASH_SIZE] for k in range(0, len(raw), HASH_SIZE))
    nodes = {(int(a), int(b)): bytes(h) for t, a, b, h in rows if t == 1}
    committed = next((int(a) for t, a, _, _ in rows if t == 2), None)
    return BatchAndPath(leaves, committed, nodes)
