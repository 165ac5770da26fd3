"""A window of time, ``[start, end)`` in epoch microseconds: parsed and checked in one place.

Every report over decisions (drift, quality, experiments, replay, backtest,
importance) takes one, from the CLI's ``--window/--from/--to`` or the REST
API's ``window``/``from``/``to`` query parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chronoml.errors import BadQuery
from chronoml.timeutil import iso, now_us, parse_duration, parse_time

# ten years: longer than any log is kept, short enough that no arithmetic overflows int64
MAX_US = 10 * 366 * 86_400 * 1_000_000
# times chronoml can represent: the years 1970 to 2200
LATEST_US = 7_258_118_400 * 1_000_000


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in microseconds since the epoch, UTC."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= LATEST_US or not 0 <= self.end <= LATEST_US:
            raise BadQuery("times must lie between 1970 and 2200", "from")
        if self.start >= self.end:
            raise BadQuery("the window's start must be before its end", "from")
        if self.end - self.start > MAX_US:
            raise BadQuery("a window spans at most ten years", "window")

    @property
    def length_us(self) -> int:
        return self.end - self.start

    @classmethod
    def parse(
        cls,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        *,
        default: str = "1h",
        now: int | None = None,
    ) -> Window:
        """``to`` (default now) back ``window`` (default ``default``), or ``from`` to ``to``.

        A bad value raises :class:`BadQuery` naming its parameter (``window``,
        ``from`` or ``to``).
        """
        stop = _parsed("to", parse_time, end) if end else (now_us() if now is None else now)
        if start:
            begin = _parsed("from", parse_time, start)
        else:
            length = _parsed("window", parse_duration, window or default)
            if length > MAX_US:
                raise BadQuery("a window spans at most ten years", "window")
            begin = stop - length
        return cls(begin, stop)

    @classmethod
    def bounded(cls, start: int | None, end: int | None, window_us: int) -> Window:
        """From times already parsed: ``end`` (default now) back ``window_us``, or from ``start``."""
        stop = now_us() if end is None else end
        return cls(stop - window_us if start is None else start, stop)

    def to_dict(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


def _parsed(name: str, parse: Callable[[str], int], text: str) -> int:
    try:
        return parse(text)
    except (ValueError, OverflowError) as exc:
        raise BadQuery(str(exc), name) from None
