"""PostgreSQL lays out each decision's leaf and input-commitment preimages for verify.

``audit verify --decisions`` on PostgreSQL asks the server for the bytes that
:class:`~chronoml.domain.leaves.DecisionLeaf` and
:func:`~chronoml.domain.leaves.inputs_commitment` hash (a test pins them byte for
byte) and hashes them itself: three values a row cross the wire where the rows
themselves are eighteen, and no encoding is trusted that the hash does not check.

The decisions table is partitioned by day on ``ts``, and an evidence item knows only
its decision's id. Ids are time-ordered, so the first and last ref of a range of log
entries give the span of ``ts`` its decisions almost surely have
(:func:`chronoml.store.partitions.ids_span`), and the join reads only the day
partitions of that span instead of probing every one. A decision outside them comes
out with NULL preimages, like a deleted one; its page is then read again in full,
without the span (:func:`chronoml.store.evidence_batch.decision_items_span`), and
checked row by row in Python, which finds it wherever it is and names it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from chronoml.store import id_types, partitions
from chronoml.store.evidence_batch import INPUTS_TAG, INPUTS_TAG_CONTEXT, LEAF_PREFIX, join


def _pg_bytes(b: bytes) -> str:
    return f"'\\x{b.hex()}'::bytea"


_B0, _B1, _B_EMPTY = _pg_bytes(b"\x00"), _pg_bytes(b"\x01"), _pg_bytes(b"")


def _pg_s(col: str, utf8: bool) -> str:
    """The leaf encoding of a text column: its UTF-8 length (4 bytes) and bytes.

    ``utf8``: the server's encoding is UTF-8, so the text's own byte length is its
    UTF-8 length (one conversion a column instead of two)."""
    raw = f"pg_catalog.convert_to({col}, 'UTF8')"
    size = f"pg_catalog.octet_length({col if utf8 else raw})"
    return f"pg_catalog.int4send({size}) || {raw}"


def _pg_f(col: str) -> str:
    """``0x01`` and the big-endian double; NULL (so the row is encoded in Python) when the
    value is not finite."""
    return (
        f"CASE WHEN {col} IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) "
        f"THEN NULL ELSE {_B1} || pg_catalog.float8send({col}) END"
    )


def _pg_opt(col: str, enc: str) -> str:
    return f"CASE WHEN {col} IS NULL THEN {_B0} ELSE {_B1} || {enc} END"


# A row whose preimage is NULL (its decision gone or outside the span, erased, a value
# not finite, a short salt) or whose hash differs is read again in full and checked in
# Python, which names it.
def _pg_leaf(utf8: bool) -> str:
    return " || ".join(
        (
            _pg_bytes(LEAF_PREFIX),
            # ids as the text the leaf committed to, whether stored as uuid or text
            _pg_s("d.id::text", utf8),
            "pg_catalog.int8send(d.ts)",
            _pg_s("d.endpoint", utf8),
            _pg_s("d.variant", utf8),
            _pg_s("d.model_name", utf8),
            _pg_s("d.model_version", utf8),
            "pg_catalog.int8send(d.event_seq)",
            f"CASE WHEN d.shadow THEN {_B1} ELSE {_B0} END",
            _pg_opt("d.unit", _pg_s("d.unit", utf8)),
            _pg_s("d.request_id::text", utf8),
            _pg_s("d.layout", utf8),
            "i.commitment",
            _pg_s("d.output", utf8),
            f"CASE WHEN d.output_num IS NULL THEN {_B0} ELSE " + _pg_f("d.output_num") + " END",
            _pg_f("d.latency_ms"),
            _pg_opt("d.scores", "pg_catalog.sha256(d.scores)"),
            # the context is inside the commitment of a salted row (the check of the
            # commitment, with the context inside, tells whether it really is)
            f"CASE WHEN d.context IS NULL OR i.salt IS NOT NULL THEN {_B0} "
            f"ELSE {_B1} || " + _pg_s("d.context", utf8) + " END",
        )
    )


def _pg_commitment(utf8: bool) -> str:
    return (
        "CASE WHEN pg_catalog.octet_length(i.salt) < 16 THEN NULL ELSE "
        + " || ".join(
            (
                f"CASE WHEN d.context IS NULL THEN {_pg_bytes(INPUTS_TAG)} "
                f"ELSE {_pg_bytes(INPUTS_TAG_CONTEXT)} END",
                "pg_catalog.int4send(pg_catalog.octet_length(i.salt))",
                "i.salt",
                _pg_s("d.layout", utf8),
                "pg_catalog.int4send(pg_catalog.octet_length(d.num))",
                "d.num",
                _pg_opt("d.txt", _pg_s("d.txt", utf8)),
                f"CASE WHEN d.context IS NULL THEN {_B_EMPTY} ELSE "
                + _pg_s("d.context", utf8)
                + " END",
            )
        )
        + " END"
    )


# the decision items of a range of log entries; "|| ''" keeps the kind off the primary
# key (kind, ref), which the planner, short of statistics, would scan whole beside the
# (log_index, position) index
RANGE_WHERE = (
    "WHERE i.kind || '' IN ('decision', 'decision_block') "
    "AND i.log_index >= %s AND i.log_index < %s"
)
# the first and last ref of a range: ids are time-ordered, so these give the span of ts
# its decisions have, and the day partitions to read
RANGE_REFS = f"SELECT min(i.ref), max(i.ref) FROM evidence_items i {RANGE_WHERE}"


def _pg_preimages(utf8: bool, pruned: bool, uuid_ids: bool) -> str:
    # pruned: the span of ts, and the range's first and last ref (every ref of the range
    # lies between them, so this bound drops nothing), which keeps the rows hashed for
    # the join to the range's own however busy the store
    on = join(uuid_ids) + (
        " AND d.ts >= %s AND d.ts < %s AND d.id >= %s AND d.id <= %s" if pruned else ""
    )
    return (
        "SELECT i.log_index, i.position, i.ref, i.leaf, i.commitment, "
        f"{_pg_leaf(utf8)}, {_pg_commitment(utf8)}, i.salt IS NULL FROM evidence_items i "
        # an ingest block's item has no decision row: its preimages are NULL, so its page
        # is read again in full (decision_items_span), where the block is decoded and checked
        f"{on} {RANGE_WHERE} ORDER BY i.log_index, i.position"
    )


PREIMAGES = {
    (u, p, i): _pg_preimages(u, p, i)
    for u in (False, True)
    for p in (False, True)
    for i in (False, True)
}
# what the server may use to sort a page in memory (a page's preimages are ~15 MB)
_WORK_MEM = "64MB"


def decision_preimages(
    engine: Any, ranges: Sequence[tuple[int, int]]
) -> Iterator[list[tuple[Any, ...]]]:
    """PostgreSQL: for each range [lo, hi) of log entries, the page of (log index,
    position, ref, leaf, commitment, leaf preimage, commitment preimage, whether the salt
    is gone) of its decision items.

    One statement per range rather than one cursor over all: the server then joins a
    range's items to their decisions through the index, without sorting the whole log,
    in the day partitions the range's ids point to."""
    uuid_ids = id_types.engine_uuid_ids(engine)
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        try:
            cur = db.cursor()
            try:
                cur.execute("SELECT current_setting('server_encoding')")
                utf8 = cur.fetchone()[0] == "UTF8"
                cur.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
                # verify runs a process per core already
                cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            finally:
                cur.close()
            hashed = False
            for lo, hi in ranges:
                cur = db.cursor(binary=True)
                try:
                    # never prepared: a generic plan, blind to the span, can join a range
                    # ten times slower than the plan made for its values
                    cur.execute(RANGE_REFS, (lo, hi), prepare=False)
                    first, last = cur.fetchone()
                    span = None if first is None else partitions.ids_span([first, last])
                    if hashed != (span is not None):
                        # within the span and between the refs, hashing the range's rows
                        # beats an index probe per item in each partition (the planner,
                        # not knowing that ids follow ts, guesses otherwise); without
                        # them, probes read only the rows wanted
                        hashed = span is not None
                        cur.execute(f"SET LOCAL enable_nestloop = {'off' if hashed else 'on'}")
                    if span is None:
                        cur.execute(PREIMAGES[utf8, False, uuid_ids], (lo, hi), prepare=False)
                    else:
                        params = (*span, first, last, lo, hi)
                        cur.execute(PREIMAGES[utf8, True, uuid_ids], params, prepare=False)
                    rows = cur.fetchall()
                finally:
                    cur.close()
                if rows:
                    yield rows
        finally:
            db.rollback()
    finally:
        raw.close()
