"""Which routing buckets each variant owns, moved as little as possible.

Units hash to one of ``total`` buckets (see :mod:`chronoml.domain.routing`);
a variant with weight ``w`` basis points owns exactly ``w`` of them. When the
weights change, a variant that shrinks gives up only the buckets it must (its
highest ones) and a variant that grows takes only freed buckets, so the
share of units that change variant is the least possible: half the sum of
the absolute weight changes. Adding a variant therefore takes units from the
others in proportion to what they give up, and never moves a unit between
two variants that were already there.

The ownership is recorded in the ledger's state, so routing is a pure
function of the state that is live, and a rollback gives every unit back
the variant it had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Ranges = tuple[tuple[int, int], ...]  # half-open [start, end) bucket ranges, ascending


def contiguous(weights: Sequence[tuple[str, int]]) -> dict[str, Ranges]:
    """The layout before ownership was recorded: one range each, in join order."""
    out: dict[str, Ranges] = {}
    edge = 0
    for name, w in weights:
        if w > 0:
            out[name] = ((edge, edge + w),)
            edge += w
    return out


def rebalance(
    old: Mapping[str, Ranges], new: Sequence[tuple[str, int]], total: int
) -> dict[str, Ranges]:
    """New ownership for the weights ``new`` (name, buckets), starting from ``old``.

    Every bucket ends up with exactly one owner when the weights add up to
    ``total``; a variant keeps every bucket it had up to its new count.
    Works on ranges, never on single buckets: its cost grows with the number
    of ranges, not with ``total``.
    """
    target = {name: w for name, w in new}
    taken: list[tuple[int, int]] = []  # every range claimed so far, any owner
    held: dict[str, list[tuple[int, int]]] = {name: [] for name in target}
    for name, ranges in old.items():
        if name not in target:
            continue  # it left: its buckets are free
        for start, end in ranges:
            for piece in _minus((max(start, 0), min(end, total)), taken):
                held[name].append(piece)
                taken.append(piece)
    for name, w in new:  # shrinking: give up the highest buckets first
        held[name] = _lowest(held[name], w)
    free = _minus((0, total), [r for rs in held.values() for r in rs])
    for name, w in new:
        want = w - size(tuple(held[name]))
        while want > 0 and free:
            start, end = free[0]
            take = min(want, end - start)
            held[name].append((start, start + take))
            want -= take
            if start + take == end:
                free.pop(0)
            else:
                free[0] = (start + take, end)
    return {name: _merged(held[name]) for name in target}


def _minus(span: tuple[int, int], cut: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``span`` outside every range of ``cut``, ascending."""
    parts = [span] if span[0] < span[1] else []
    for c0, c1 in sorted(cut):
        rest: list[tuple[int, int]] = []
        for p0, p1 in parts:
            if c1 <= p0 or p1 <= c0:
                rest.append((p0, p1))
                continue
            if p0 < c0:
                rest.append((p0, c0))
            if c1 < p1:
                rest.append((c1, p1))
        parts = rest
    return parts


def _lowest(ranges: Sequence[tuple[int, int]], count: int) -> list[tuple[int, int]]:
    """The lowest ``count`` buckets of ``ranges``."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if count <= 0:
            break
        take = min(count, end - start)
        out.append((start, start + take))
        count -= take
    return out


def _merged(ranges: Sequence[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


def size(ranges: Ranges) -> int:
    return sum(end - start for start, end in ranges)
