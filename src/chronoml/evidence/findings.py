"""What ``audit verify`` found: problems in log order, and the check of one batch's items.

Shared by :mod:`chronoml.evidence.audit` and the decision check's worker
processes (:mod:`chronoml.evidence.decision_check`), which return their
problems to be merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chronoml.domain import leaves as LV

MAX_PROBLEMS = 100
_RANK = {"item": 0, "entry": 1, "tree": 2, "checkpoint": 3}


@dataclass(frozen=True)
class Problem:
    """One thing that does not verify: where in the log, what, and why."""

    log_index: int | None
    what: str
    reason: str
    rank: str = "item"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"log_index": self.log_index, "what": self.what, "reason": self.reason}


class Found:
    """Collects problems, keeping the first in log order."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def extend(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            if len(self.items) < MAX_PROBLEMS:
                self.items.append(p)

    def add(self, log_index: int | None, what: str, reason: str, rank: str = "item") -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(log_index, what, reason, rank))

    def sorted(self) -> list[Problem]:
        return sorted(
            self.items,
            # a named row first: tree and checkpoint mismatches follow from it
            key=lambda p: (
                max(_RANK[p.rank], 1),
                p.log_index if p.log_index is not None else 1 << 62,
                _RANK[p.rank],
            ),
        )


def check_batches(
    kind: str,
    groups: Iterable[tuple[int, list[tuple[int, str, bytes | None]]]],
    entries: Mapping[int, tuple[Any, ...]],
    f: Found,
    wanted: set[int],
) -> int:
    """Check each batch's items (position, ref, recomputed leaf or None if gone) against its root.

    ``entries`` holds the log entries by index (those of ``kind`` at least).
    """
    n = 0
    for idx, items in groups:
        wanted.discard(idx)
        entry = entries.get(idx)
        if entry is None or entry[1] != kind:
            ref = items[0][1] if items else "?"
            f.add(idx, f"{kind} {ref}", f"log entry {idx} is not a {kind} batch")
            continue
        size = int(entry[3])
        positions = [p for p, _, _ in items]
        if positions != list(range(size)):
            gap = next((i for i in range(size) if i >= len(positions) or positions[i] != i), size)
            after = items[gap - 1][1] if 0 < gap <= len(items) else None
            f.add(
                idx,
                f"{kind} at position {gap} of log entry {idx}",
                f"it was deleted (the batch committed {size}, {len(items)} remain"
                + (f"; it came after {kind} {after})" if after else ")"),
            )
            continue
        hashes = [h for _, _, h in items if h is not None]
        n += len(items)
        if len(hashes) == size and LV.batch_root(hashes) != entry[4]:
            f.add(idx, f"log entry {idx}", f"its {kind} items no longer hash to its batch root")
    for idx in sorted(wanted):
        f.add(idx, f"log entry {idx}", f"its {kind} items were deleted")
    return n
