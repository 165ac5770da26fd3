"""The span of time a decision's id implies, so a lookup by id reads one time partition.

Ids are time-ordered (UUIDv7, :mod:`chronoml.ids`): their first 48 bits are the
millisecond they were made. A block's id and its decisions' ids (version 8)
keep the 48 bits of the id they were made from, so they imply a time too.
"""

from __future__ import annotations

import re

# a decision's ts is its request's arrival, its id is made when the model has
# answered: the id's time follows ts by the request's time in the server
ID_SPAN_BEFORE_US = 600_000_000
ID_SPAN_AFTER_US = 60_000_000
_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[78][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def id_time_us(decision_id: str) -> int | None:
    """The time a UUIDv7 id was made (its 48-bit millisecond prefix), or None for another id."""
    s = decision_id.lower()
    if not _UUID7.match(s):
        return None
    return int(s[:8] + s[9:13], 16) * 1000


def id_span(decision_id: str) -> tuple[int, int] | None:
    """``[lo, hi)`` of ``ts`` a decision with this id almost surely has (None: no idea)."""
    t = id_time_us(decision_id)
    if t is None:
        return None
    return t - ID_SPAN_BEFORE_US, t + ID_SPAN_AFTER_US


def ids_span(ids: list[str]) -> tuple[int, int] | None:
    """The span of ``ts`` covering every one of ``ids`` (None if one is not time-ordered)."""
    spans = [id_span(i) for i in ids]
    if not spans or any(s is None for s in spans):
        return None
    return min(s[0] for s in spans if s), max(s[1] for s in spans if s)
