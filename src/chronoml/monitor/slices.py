"""Figures broken down by slice: the groups of one context attribute, with counts, and the
worst slice marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chronoml.errors import InvalidInput

MISSING = "(missing)"
# the figure that ranks slices, and whether higher is better
RANKING = (("accuracy", True), ("rmse", False), ("mae", False))


class SliceError(InvalidInput):
    """A breakdown that cannot be made; ``field`` is ``by``."""

    code = "bad_slice"


def slice_keys(context: Sequence[dict[str, Any]], by: str) -> list[str]:
    """Each decision's slice under ``by``; SliceError when no decision carries it."""
    values = [c.get(by) for c in context]
    if all(v is None for v in values):
        known = sorted({k for c in context for k in c})
        hint = f"; the decisions' context has: {', '.join(known)}" if known else ""
        raise SliceError(f"no decision in this window has context attribute {by!r}{hint}", "by")
    return [MISSING if v is None else str(v) for v in values]


def breakdown(
    keys: Sequence[str],
    rows: Sequence[int],
    labelled: Sequence[int],
    figures: Callable[[list[int]], dict[str, Any]],
) -> dict[str, Any]:
    """``figures`` of each slice's labelled decisions, with counts, and the worst slice.

    ``rows`` are every decision of the group (for counts), ``labelled`` those with a label.
    """
    decided: dict[str, int] = {}
    for i in rows:
        decided[keys[i]] = decided.get(keys[i], 0) + 1
    members: dict[str, list[int]] = {k: [] for k in decided}
    for i in labelled:
        members[keys[i]].append(i)
    slices = []
    for k in sorted(decided):
        idx = members[k]
        slices.append(
            {
                "slice": k,
                "decisions": decided[k],
                "labelled": len(idx),
                "metrics": figures(idx) if idx else {"task": None},
            }
        )
    worst = _worst(slices)
    for s in slices:
        s["worst"] = s["slice"] == worst
    return {"slices": slices, "worst": worst}


def _worst(slices: list[dict[str, Any]]) -> str | None:
    for metric, higher in RANKING:
        scored = [
            (s["metrics"][metric], s["slice"])
            for s in slices
            if isinstance(s["metrics"].get(metric), float)
        ]
        if scored:
            return str((min(scored) if higher else max(scored))[1])
    return None
