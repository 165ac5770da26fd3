"""Figures broken down by slice, with counts, and the worst slice marked.

A slice is a group of decisions that share the value of one attribute: a
context attribute (sent with the prediction or later with feedback) or a model
input. Categorical values (text, booleans, and numbers with at most
``MAX_CATEGORIES`` distinct values) give one slice each; other numeric values
are cut into ``bins`` quantile bins over the window's values (equal counts, the
edges shown as ``[low, high)``, the last bin closed), so slices are the same
for every variant and arm of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from chronoml.errors import InvalidInput

MISSING = "(missing)"
# the figure that ranks slices, and whether higher is better
RANKING = (("accuracy", True), ("rmse", False), ("mae", False))
MAX_CATEGORIES = 10
DEFAULT_BINS = 4


class SliceError(InvalidInput):
    """A breakdown that cannot be made; ``field`` is ``by``."""

    code = "bad_slice"


@dataclass(frozen=True)
class Slicing:
    """Each row's slice, and how the slices were made."""

    keys: list[str]
    source: str  # "context" or "input"
    binning: dict[str, Any]  # {"kind": "categorical"} or {"kind": "quantile", "bins", "edges"}

    def describe(self, attribute: str) -> dict[str, Any]:
        return {"attribute": attribute, "source": self.source, "binning": self.binning}


def slicing(
    by: str,
    context: Sequence[dict[str, Any]] | None,
    inputs: dict[str, np.ndarray[Any, Any]] | None,
    *,
    bins: int = DEFAULT_BINS,
    input_names: Sequence[str] | None = None,
) -> Slicing:
    """The slices of ``by``: a model input when it is one, else a context attribute that
    some decision carries. SliceError naming what exists when it is neither
    (``input_names``: the window's model inputs, when ``inputs`` holds only ``by``)."""
    if not by:
        raise SliceError("name the attribute to break the figures down by", "by")
    if bins < 2:
        raise SliceError("bins must be at least 2", "bins")
    if inputs is not None and by in inputs:
        keys, binning = _keys(inputs[by], bins)
        return Slicing(keys, "input", binning)
    if context is not None and any(c.get(by) is not None for c in context):
        values = np.empty(len(context), dtype=object)
        values[:] = [c.get(by) for c in context]
        keys, binning = _keys(values, bins)
        return Slicing(keys, "context", binning)
    known_ctx = sorted({k for c in context or () for k in c})
    parts = []
    if known_ctx:
        parts.append(f"context attributes: {', '.join(known_ctx)}")
    known_inputs = sorted(input_names if input_names is not None else inputs or ())
    if known_inputs:
        parts.append(f"model inputs: {', '.join(known_inputs)}")
    hint = f" ({'; '.join(parts)})" if parts else ""
    raise SliceError(
        f"{by!r} is neither a context attribute nor a model input of this window's decisions{hint}",
        "by",
    )


def _keys(values: np.ndarray[Any, Any], bins: int) -> tuple[list[str], dict[str, Any]]:
    num = values.astype(np.float64) if values.dtype.kind in "fiu" else _as_numbers(values)
    if num is not None:
        have = ~np.isnan(num)
        distinct = np.unique(num[have])
        if len(distinct) > MAX_CATEGORIES:
            edges = np.unique(np.quantile(num[have], np.linspace(0, 1, bins + 1)))
            labels = [
                f"[{_g(lo)}, {_g(hi)}{']' if j == len(edges) - 2 else ')'}"
                for j, (lo, hi) in enumerate(pairwise(edges.tolist()))
            ]
            # searchsorted on the inner edges: bin j holds [edge j, edge j+1)
            idx = np.searchsorted(edges[1:-1], num, side="right")
            table = np.array([*labels, MISSING], dtype=object)
            idx = np.where(have, idx, len(labels))
            return table[idx].tolist(), {
                "kind": "quantile",
                "bins": len(labels),
                "edges": [float(e) for e in edges],
            }
        text = [MISSING if np.isnan(v) else _g(v) for v in num.tolist()]
        return text, {"kind": "categorical"}
    return [MISSING if v is None else str(v) for v in values.tolist()], {"kind": "categorical"}


def _as_numbers(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Object values as floats (None as NaN) when every present one is a number, else None."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values.tolist()):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        out[i] = v
    return out


def _g(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


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


def members(keys: Sequence[str], rows: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Row positions by slice, slices in sorted order."""
    out: dict[str, list[int]] = {}
    for i in range(len(keys)) if rows is None else rows:
        out.setdefault(keys[i], []).append(i)
    return dict(sorted(out.items()))


def mark_worst(
    slices: list[dict[str, Any]], score: Callable[[dict[str, Any]], tuple[Any, ...] | None]
) -> str | None:
    """Mark the slice with the highest ``score`` (None: not ranked) as ``worst``."""
    ranked = [(s_, i) for i, s in enumerate(slices) if (s_ := score(s)) is not None]
    worst = slices[max(ranked)[1]]["slice"] if ranked else None
    for s in slices:
        s["worst"] = s["slice"] == worst
    return worst


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
