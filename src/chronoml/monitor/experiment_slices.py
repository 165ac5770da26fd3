"""The A/B analysis of one comparison per slice, with a multiple-comparison adjustment.

Each labelled outcome of a comparison falls in the slice of the decision it came
from (for a shadow, the champion's decision it was paired with): a model input
or a context attribute, numbers in quantile bins (:mod:`chronoml.monitor.slices`).
Each slice gets the arms' counts and estimates, the effect with its confidence
interval and the fixed-horizon p-value, as the whole comparison does. Testing
every slice is testing many hypotheses, so the p-values are also given adjusted
by Holm's step-down method over the slices of the comparison (it controls the
family-wise error rate, like Bonferroni, and is never less powerful); a slice
is ``significant`` when its adjusted p-value is below alpha. The intervals are
the per-slice ones, not adjusted. The worst slice is the one where the
challenger does worst against the champion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from chronoml.domain import codec
from chronoml.domain import experiment as X
from chronoml.domain.ab_stats import holm
from chronoml.domain.codec import NUMERIC_KINDS
from chronoml.monitor.ab_outcomes import _clean, summarise
from chronoml.monitor.slices import SliceError, mark_worst, slicing
from chronoml.store import outcomes as O
from chronoml.store.database import Store
from chronoml.store.decisions import Layouts

if TYPE_CHECKING:
    from chronoml.monitor.experiments import Comparison

ADJUSTMENT = "holm"


def input_values(store: Store, rows: Sequence[Any], name: str) -> np.ndarray[Any, Any] | None:
    """Model input ``name`` of each logged row, or None when no row's layout has it."""
    layouts = Layouts(store)
    by_layout: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_layout.setdefault(r.layout, []).append(i)
    out = np.full(len(rows), None, dtype=object)
    found = False
    for layout, idx in by_layout.items():
        sch = layouts.get(layout)
        kinds = dict(sch)
        if name not in kinds:
            continue
        found = True
        if kinds[name] in NUMERIC_KINDS:
            got = codec.decode_numeric(sch, len(idx), b"".join([rows[i].num for i in idx]))
        else:
            got = codec.decode_others(sch, len(idx), [rows[i].txt for i in idx])
        out[idx] = got[name]
    if not found:
        return None
    if all(isinstance(v, float | int) and not isinstance(v, bool) for v in out.tolist()):
        return out.astype(np.float64)
    return out


def by_slice(
    store: Store,
    comparison: Comparison,
    by: str,
    *,
    bins: int,
    alpha: float,
    min_samples: int,
) -> dict[str, Any]:
    """``comparison`` per slice of ``by``: counts, estimates, effect, CI, raw and
    Holm-adjusted p-values, the worst slice marked."""
    c_out, t_out = comparison.outcomes
    c_src, t_src = comparison.sources
    if not c_out and not t_out:
        raise SliceError("no labelled outcomes in this window to break down", "window")
    rows = [*c_src, *t_src]
    values = input_values(store, rows, by)
    context = None
    if values is None:
        found = O.contexts(store, [r.id for r in rows])
        context = [found.get(r.id, {}) for r in rows]
    sliced = slicing(by, context, None if values is None else {by: values}, bins=bins)
    c_keys, t_keys = sliced.keys[: len(c_src)], sliced.keys[len(c_src) :]
    kind = comparison.metric_kind
    better = comparison.higher_is_better
    slices = []
    for key in sorted(set(sliced.keys)):
        a = [v for v, k in zip(c_out, c_keys, strict=True) if k == key]
        b = [v for v, k in zip(t_out, t_keys, strict=True) if k == key]
        entry: dict[str, Any] = {
            "slice": key,
            "control": {"outcomes": len(a), "estimate": float(np.mean(a)) if a else None},
            "treatment": {"outcomes": len(b), "estimate": float(np.mean(b)) if b else None},
        }
        res = X.analyze(
            summarise(kind, a),
            summarise(kind, b),
            metric_kind=kind,  # type: ignore[arg-type]
            alpha=alpha,
            min_samples=min_samples,
            higher_is_better=better,
        )
        entry.update(
            {
                "effect": res.effect,
                "confidence_interval": {
                    "low": res.confidence_interval.low,
                    "high": res.confidence_interval.high,
                },
                "test": res.test,
                "p_value": res.p_value,
            }
        )
        if min(len(a), len(b)) < min_samples:
            entry["warning"] = (
                f"{min(len(a), len(b))} outcomes in the smaller arm, fewer than {min_samples}"
            )
        slices.append(entry)
    adjusted = holm([s["p_value"] for s in slices])
    for s, p in zip(slices, adjusted, strict=True):
        s["p_value_adjusted"] = p
        s["significant"] = bool(np.isfinite(p) and p < alpha)
    sign = 1.0 if better else -1.0
    worst = mark_worst(
        slices,
        lambda s: None if not np.isfinite(s["effect"]) else (-sign * s["effect"],),
    )
    out: dict[str, Any] = _clean(
        {
            **sliced.describe(by),
            "adjustment": ADJUSTMENT,
            "adjustment_note": (
                "p_value_adjusted: Holm's step-down adjustment over this comparison's "
                f"{sum(np.isfinite(p) for p in adjusted)} tested slices (family-wise error "
                f"rate {alpha:g}); confidence intervals are per slice, not adjusted"
            ),
            "slices": slices,
            "worst": worst,
            "worst_rule": "the slice where the challenger's effect is least favourable",
        }
    )
    return out
