"""Group metrics of a classifier over one sensitive attribute, computed with fairlearn.

Every figure (per group: selection rate, true and false positive rates,
accuracy; between groups: demographic parity difference and ratio, equalized
odds difference) is fairlearn's own: :class:`fairlearn.metrics.MetricFrame`
and its disparity functions. Those figures depend on a row only through its
(group, label, prediction) cell, so the rows are first counted into at most
``4 x groups`` cells and fairlearn is given one row per cell with its count as
``sample_weight``. The result is exactly what fairlearn returns on the raw
rows (the tests check it), at a cost that does not grow with the rows:
fairlearn walks every row in Python, about 40 s for a million.

Binary and multiclass: without ``positive_class`` the labels must be 0/1
(or booleans); with it, that class is "positive" and every other class is
"negative" (one-vs-rest), for labels and predictions alike.

Unlabelled rows (label None or NaN: no feedback yet) are left out and
counted. A group whose rows are all unlabelled is an error, since none of
its figures can be known.

Intervals: Wilson score intervals per group for each rate; for the
between-group figures a percentile bootstrap that redraws the cell counts
from a multinomial with the observed cell shares, which is the same in
distribution as redrawing rows with replacement (the figures are functions
of the cell counts), so a thousand replicates cost milliseconds at any size.
Being a max-minus-min, a difference is biased upwards in small samples and
its bootstrap interval does not reach 0 even when the groups are alike:
read the lower end with that in mind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.fairness._common import FairnessError, Interval, as_1d, labelled_mask, num, wilson
from chronoml.fairness._common import z_value as _z

MISSING_GROUP = "(missing)"
DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
)


@dataclass(frozen=True)
class GroupMetrics:
    """One group's figures (or the overall ones, with ``group`` "(all)")."""

    group: str
    count: int
    positives: int  # labelled rows whose label is the positive class
    negatives: int
    selection_rate: float
    selection_rate_ci: Interval
    true_positive_rate: float | None  # None: the group has no positive label
    true_positive_rate_ci: Interval
    false_positive_rate: float | None  # None: the group has no negative label
    false_positive_rate_ci: Interval
    accuracy: float
    accuracy_ci: Interval
    small: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "count": self.count,
            "positives": self.positives,
            "negatives": self.negatives,
            "selection_rate": num(self.selection_rate),
            "selection_rate_ci": self.selection_rate_ci.to_dict(),
            "true_positive_rate": num(self.true_positive_rate),
            "true_positive_rate_ci": self.true_positive_rate_ci.to_dict(),
            "false_positive_rate": num(self.false_positive_rate),
            "false_positive_rate_ci": self.false_positive_rate_ci.to_dict(),
            "accuracy": num(self.accuracy),
            "accuracy_ci": self.accuracy_ci.to_dict(),
            "small": self.small,
        }


@dataclass(frozen=True)
class Disparity:
    """A between-group figure, with the groups at its two ends."""

    name: str
    value: float | None  # None: fewer than two groups where it is defined
    ci: Interval
    highest: str | None  # the group with the largest underlying rate
    lowest: str | None
    groups: tuple[str, ...]  # the groups it was computed over

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": num(self.value),
            "ci": self.ci.to_dict(),
            "highest": self.highest,
            "lowest": self.lowest,
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class GroupReport:
    """Group metrics of one attribute, overall and between groups."""

    attribute: str
    positive_class: Any
    rows: int  # labelled rows used
    unlabelled: int  # rows left out for want of a label
    confidence: float
    min_group_size: int
    overall: GroupMetrics
    groups: tuple[GroupMetrics, ...]
    disparities: tuple[Disparity, ...]
    warnings: tuple[str, ...]

    def disparity(self, name: str) -> Disparity:
        """The between-group figure called ``name`` (one of :data:`DISPARITIES`)."""
        for d in self.disparities:
            if d.name == name:
                return d
        raise FairnessError(f"unknown disparity {name!r}", "metric")

    def group(self, name: str) -> GroupMetrics:
        """The figures of group ``name``."""
        for g in self.groups:
            if g.group == name:
                return g
        raise FairnessError(f"no group {name!r} in {self.attribute!r}", "group")

    def to_dict(self) -> dict[str, Any]:
        pos = self.positive_class
        return {
            "attribute": self.attribute,
            "positive_class": pos if isinstance(pos, str | int | bool) else str(pos),
            "rows": self.rows,
            "unlabelled": self.unlabelled,
            "confidence": self.confidence,
            "min_group_size": self.min_group_size,
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
            "disparities": {d.name: d.to_dict() for d in self.disparities},
            "warnings": list(self.warnings),
        }


def _pick_attribute(sensitive: Any, attribute: str | None, n: int) -> tuple[str, npt.NDArray[Any]]:
    if isinstance(sensitive, pd.DataFrame | Mapping):
        names = [str(c) for c in sensitive]
        if attribute is None:
            raise FairnessError(
                f"name the attribute to group by (one of {', '.join(names) or 'none'})", "attribute"
            )
        if attribute not in sensitive:
            raise FairnessError(
                f"unknown attribute {attribute!r}: the decisions carry "
                f"{', '.join(repr(x) for x in names) if names else 'no context'}",
                "attribute",
            )
        values = as_1d(sensitive[attribute], "attribute", FairnessError)
    else:
        values = as_1d(sensitive, "sensitive", FairnessError)
        attribute = attribute or "group"
    if len(values) != n:
        raise FairnessError(
            f"{attribute!r} has {len(values)} values for {n} decisions", "attribute"
        )
    return attribute, values


def _binarise(
    y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any], positive_class: Any
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Any]:
    if positive_class is None:
        seen = pd.unique(np.concatenate([pd.unique(y_true), pd.unique(y_pred)]))
        if not all(isinstance(v, int | float | bool | np.number | np.bool_) for v in seen) or not (
            set(np.asarray(seen, dtype=float).tolist()) <= {0.0, 1.0}
        ):
            shown = ", ".join(repr(v) for v in list(seen)[:5])
            raise FairnessError(
                f"labels are not 0/1 (found {shown}): name the positive class; every other "
                "class then counts as negative (one-vs-rest)",
                "positive_class",
            )
        positive_class = 1
        yt = np.asarray(y_true, dtype=float) == 1
        yp = np.asarray(y_pred, dtype=float) == 1
    else:
        yt = np.asarray(y_true == positive_class, dtype=bool)
        yp = np.asarray(y_pred == positive_class, dtype=bool)
        if not (yt.any() or yp.any()):
            raise FairnessError(
                f"the positive class {positive_class!r} is neither a label nor a prediction here",
                "positive_class",
            )
    return yt.astype(np.int64), yp.astype(np.int64), positive_class


def _fairlearn_figures(
    cells: npt.NDArray[np.int64], names: list[str]
) -> tuple[pd.DataFrame, pd.Series, dict[str, float | None], dict[str, list[str]]]:
    """fairlearn's per-group, overall and between-group figures from the cell counts."""
    # lazy: fairlearn and scikit-learn load only when a report is computed
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    g_idx, t_idx, p_idx = np.nonzero(cells)
    w = cells[g_idx, t_idx, p_idx].astype(float)
    groups = np.asarray(names, dtype=object)[g_idx]
    metrics = {
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
        "accuracy": accuracy_score,
    }
    mf = MetricFrame(
        metrics=metrics,
        y_true=t_idx,
        y_pred=p_idx,
        sensitive_features=pd.Series(groups, name="group"),
        sample_params={k: {"sample_weight": w} for k in metrics},
    )
    by_group = mf.by_group
    overall = mf.overall
    between: dict[str, float | None] = {}
    used: dict[str, list[str]] = {}
    if len(names) >= 2:
        between["demographic_parity_difference"] = float(
            demographic_parity_difference(t_idx, p_idx, sensitive_features=groups, sample_weight=w)
        )
        between["demographic_parity_ratio"] = float(
            demographic_parity_ratio(t_idx, p_idx, sensitive_features=groups, sample_weight=w)
        )
        used["demographic_parity_difference"] = used["demographic_parity_ratio"] = names
    # fairlearn counts an undefined TPR or FPR (no positives, or no negatives) as 0,
    # which would make the difference look large: keep to groups where both are defined
    both = (cells[:, 1, :].sum(axis=1) > 0) & (cells[:, 0, :].sum(axis=1) > 0)
    eo_names = [n for n, ok in zip(names, both, strict=True) if ok]
    keep = both[g_idx]
    if len(eo_names) >= 2:
        between["equalized_odds_difference"] = float(
            equalized_odds_difference(
                t_idx[keep], p_idx[keep], sensitive_features=groups[keep], sample_weight=w[keep]
            )
        )
    used["equalized_odds_difference"] = eo_names
    return by_group, overall, between, used


def _rates(c: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """Selection rate, TPR and FPR per group from cell counts ``[..., group, label, pred]``."""
    n = c.sum(axis=(-1, -2)).astype(float)
    pos = c[..., 1, :].sum(axis=-1).astype(float)
    neg = c[..., 0, :].sum(axis=-1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = (c[..., 0, 1] + c[..., 1, 1]) / n
        tpr = c[..., 1, 1] / pos
        fpr = c[..., 0, 1] / neg
    return sel, tpr, fpr


def _spread(x: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Max and min over the last axis, ignoring NaN (a group absent from a replicate)."""
    if x.shape[-1] == 0:
        empty = np.full(x.shape[:-1], np.nan)
        return empty, empty
    hi = np.where(np.isnan(x), -np.inf, x).max(axis=-1)
    lo = np.where(np.isnan(x), np.inf, x).min(axis=-1)
    bad = ~np.isfinite(hi) | ~np.isfinite(lo)
    return np.where(bad, np.nan, hi), np.where(bad, np.nan, lo)


def _bootstrap(
    cells: npt.NDArray[np.int64],
    used: dict[str, list[str]],
    names: list[str],
    *,
    n_boot: int,
    confidence: float,
    seed: int,
) -> dict[str, Interval]:
    method = f"bootstrap ({n_boot} multinomial replicates, percentile)"
    total = int(cells.sum())
    rng = np.random.default_rng(seed)
    reps = rng.multinomial(total, cells.ravel() / total, size=n_boot).reshape(
        (n_boot, *cells.shape)
    )
    sel, tpr, fpr = _rates(reps)
    sel_hi, sel_lo = _spread(sel)
    eo_cols = [names.index(g) for g in used.get("equalized_odds_difference", [])]
    tpr_hi, tpr_lo = _spread(tpr[:, eo_cols])
    fpr_hi, fpr_lo = _spread(fpr[:, eo_cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = {
            "demographic_parity_difference": sel_hi - sel_lo,
            "demographic_parity_ratio": sel_lo / sel_hi,
            "equalized_odds_difference": np.maximum(tpr_hi - tpr_lo, fpr_hi - fpr_lo),
        }
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    out: dict[str, Interval] = {}
    for name, s in samples.items():
        s = s[np.isfinite(s)]
        if len(s) == 0 or (name == "equalized_odds_difference" and len(eo_cols) < 2):
            out[name] = Interval(None, None, method)
        else:
            lo, hi = np.quantile(s, q)
            out[name] = Interval(float(lo), float(hi), method)
    return out


def _group_metrics(
    name: str, c: npt.NDArray[np.int64], row: Any, z: float, min_size: int
) -> GroupMetrics:
    tn, fp, fn, tp = (int(v) for v in c.ravel())
    n, pos, neg = tn + fp + fn + tp, tp + fn, tn + fp
    return GroupMetrics(
        group=name,
        count=n,
        positives=pos,
        negatives=neg,
        selection_rate=float(row["selection_rate"]),
        selection_rate_ci=wilson(tp + fp, n, z),
        true_positive_rate=float(row["true_positive_rate"]) if pos else None,
        true_positive_rate_ci=wilson(tp, pos, z),
        false_positive_rate=float(row["false_positive_rate"]) if neg else None,
        false_positive_rate_ci=wilson(fp, neg, z),
        accuracy=float(row["accuracy"]),
        accuracy_ci=wilson(tp + tn, n, z),
        small=n < min_size,
    )


def group_report(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    attribute: str | None = None,
    positive_class: Any = None,
    min_group_size: int = 30,
    confidence: float = 0.95,
    n_boot: int = 1000,
    random_state: int = 0,
) -> GroupReport:
    """Per-group and between-group fairness figures of labelled decisions.

    ``sensitive`` is either the attribute's values (one per decision) or a
    mapping / DataFrame of context columns, of which ``attribute`` names one.
    ``y_true`` may hold None/NaN for decisions not labelled yet.
    """
    if not 0 < confidence < 1:
        raise FairnessError(f"confidence must lie in (0, 1), got {confidence}", "confidence")
    if min_group_size < 1:
        raise FairnessError("min_group_size must be >= 1", "min_group_size")
    if n_boot < 10:
        raise FairnessError("n_boot must be >= 10", "n_boot")
    yt_all = as_1d(y_true, "y_true", FairnessError)
    yp_all = as_1d(y_pred, "y_pred", FairnessError)
    if len(yp_all) == 0:
        raise FairnessError("no decisions to compute fairness over (empty window)", "data")
    if len(yt_all) != len(yp_all):
        raise FairnessError(f"{len(yt_all)} labels for {len(yp_all)} predictions", "y_true")
    attribute, sens_all = _pick_attribute(sensitive, attribute, len(yp_all))
    if not labelled_mask(yp_all).all():
        raise FairnessError("some predictions are missing", "y_pred")

    sens = pd.Series(sens_all, dtype=object)
    try:
        codes, uniques = pd.factorize(sens, sort=True, use_na_sentinel=True)
    except TypeError:  # values of mixed types do not sort: keep the order of first sight
        codes, uniques = pd.factorize(sens, use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING_GROUP)
    labelled = labelled_mask(yt_all)
    if not labelled.any():
        raise FairnessError("none of these decisions has a label yet", "labels")
    unlabelled_groups = sorted(set(range(len(names))) - set(np.unique(codes[labelled]).tolist()))
    if unlabelled_groups:
        shown = ", ".join(repr(names[i]) for i in unlabelled_groups)
        raise FairnessError(
            f"group {shown} of {attribute!r} has no labelled decision: its rates cannot be known",
            "labels",
        )
    yt, yp, positive_class = _binarise(yt_all[labelled], yp_all[labelled], positive_class)
    codes = np.asarray(codes[labelled], dtype=np.int64)
    k = len(names)
    cells = np.bincount(codes * 4 + yt * 2 + yp, minlength=4 * k).reshape(k, 2, 2)

    by_group, overall, between, used = _fairlearn_figures(cells, names)
    z = _z(confidence)
    groups = tuple(
        _group_metrics(n, cells[i], by_group.loc[n], z, min_group_size) for i, n in enumerate(names)
    )
    total = _group_metrics("(all)", cells.sum(axis=0), overall, z, min_group_size)
    cis = _bootstrap(cells, used, names, n_boot=n_boot, confidence=confidence, seed=random_state)

    warnings: list[str] = []
    for g in groups:
        if g.small:
            warnings.append(
                f"group {g.group!r} has {g.count} labelled decisions (< {min_group_size}): "
                "its figures are uncertain"
            )
        if g.true_positive_rate is None:
            warnings.append(f"group {g.group!r} has no positive label: its TPR is undefined")
        if g.false_positive_rate is None:
            warnings.append(f"group {g.group!r} has no negative label: its FPR is undefined")
    if k < 2:
        warnings.append(f"{attribute!r} has one group: no between-group figure")
    elif len(used["equalized_odds_difference"]) < k:
        warnings.append(
            "equalized_odds_difference is over "
            f"{', '.join(used['equalized_odds_difference']) or 'no group'} only "
            "(the others lack a positive or a negative label)"
        )

    disparities = tuple(
        _disparity(name, between.get(name), cis[name], used.get(name, []), groups)
        for name in DISPARITIES
    )
    return GroupReport(
        attribute=attribute,
        positive_class=positive_class,
        rows=int(labelled.sum()),
        unlabelled=int((~labelled).sum()),
        confidence=confidence,
        min_group_size=min_group_size,
        overall=total,
        groups=groups,
        disparities=disparities,
        warnings=tuple(warnings),
    )


def _disparity(
    name: str,
    value: float | None,
    ci: Interval,
    used: list[str],
    groups: tuple[GroupMetrics, ...],
) -> Disparity:
    if value is None or len(used) < 2:
        return Disparity(name, None, ci, None, None, tuple(used))
    members = [g for g in groups if g.group in used]
    if name == "equalized_odds_difference":
        # the ends are those of whichever rate has the larger spread
        def spread(attr: str) -> float:
            vals = [getattr(g, attr) for g in members]
            return float(max(vals) - min(vals))

        attr = (
            "true_positive_rate"
            if spread("true_positive_rate") >= spread("false_positive_rate")
            else "false_positive_rate"
        )
    else:
        attr = "selection_rate"
    hi = max(members, key=lambda g: getattr(g, attr))
    lo = min(members, key=lambda g: getattr(g, attr))
    return Disparity(name, num(value), ci, hi.group, lo.group, tuple(used))
