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
    """
    owner: list[str | None] = [None] * total
    target = {name: w for name, w in new}
    held: dict[str, list[int]] = {name: [] for name, _ in new}
    for name, ranges in old.items():
        if name not in target:
            continue  # it left: its buckets are free
        for start, end in ranges:
            for b in range(max(start, 0), min(end, total)):
                if owner[b] is None:
                    owner[b] = name
                    held[name].append(b)
    for name, w in new:
        mine = sorted(held[name])
        while len(mine) > w:  # shrinking: give up the highest buckets first
            owner[mine.pop()] = None
        held[name] = mine
    free = iter([b for b in range(total) if owner[b] is None])
    for name, w in new:
        for _ in range(w - len(held[name])):
            slot = next(free, None)
            if slot is None:
                break
            owner[slot] = name
    return _ranges(owner, target)


def _ranges(owner: Sequence[str | None], names: Mapping[str, int]) -> dict[str, Ranges]:
    out: dict[str, list[tuple[int, int]]] = {name: [] for name in names}
    start = 0
    for b in range(1, len(owner) + 1):
        if b == len(owner) or owner[b] != owner[start]:
            who = owner[start]
            if who is not None:
                out[who].append((start, b))
            start = b
    return {name: tuple(r) for name, r in out.items()}


def size(ranges: Ranges) -> int:
    return sum(end - start for start, end in ranges)
