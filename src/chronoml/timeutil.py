"""Times: integers of microseconds since the epoch inside, ISO 8601 outside."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_us() -> int:
    return time.time_ns() // 1000


def parse_time(text: str) -> int:
    """Parse ISO 8601 (or ``now``) to epoch microseconds; no offset means UTC."""
    s = text.strip()
    if s.lower() == "now":
        return now_us()
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 time: {text!r} (for example 2026-03-03T14:02:00 or "
            "2026-03-03T14:02:00+01:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return to_us(dt)
    except OverflowError:
        raise ValueError(f"time out of range: {text!r}") from None


def to_us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def iso(us: int) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-03-03T14:02:00.000000Z``."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``1h``, ``7d`` to microseconds."""
    s = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(s) < 2 or s[-1] not in units:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 7d)")
    try:
        n = float(s[:-1])
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 7d)") from None
    if not n > 0:
        raise ValueError(f"duration must be positive: {text!r}")
    us = n * units[s[-1]] * 1_000_000
    if not us <= 100 * 366 * 86_400 * 1_000_000:  # also refuses inf and nan
        raise ValueError(f"duration too long: {text!r} (at most 100 years)")
    return int(us)
