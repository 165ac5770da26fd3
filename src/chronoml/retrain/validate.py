"""Validation of a new version on a fixed holdout before it may be deployed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chronoml.context import Context
from chronoml.domain.challenger import Policy
from chronoml.domain.ledger import ModelRef
from chronoml.domain.retraining import Holdout
from chronoml.monitor.ab_outcomes import outcome
from chronoml.registry.models import load_model
from chronoml.store.snapshots import read_table


@dataclass(frozen=True)
class Validation:
    metric: str
    challenger: float
    champion: float | None
    rows: int
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "challenger": self.challenger,
            "champion": self.champion,
            "rows": self.rows,
            "passed": self.passed,
            "reason": self.reason,
        }


def score(cm: Context, ref: ModelRef, holdout: Holdout, metric: str) -> tuple[float, int]:
    """Mean outcome of ``ref`` on the holdout (accuracy, absolute or squared error)."""

    df = read_table(holdout.path)
    if holdout.label_column not in df.columns:
        raise ValueError(f"holdout {holdout.path} has no column {holdout.label_column!r}")
    labels = df[holdout.label_column].tolist()
    model = load_model(ref, cm.registry.fetch(ref))
    columns = [c for c, _ in model.schema] if model.schema else None
    x = df[columns] if columns else df.drop(columns=[holdout.label_column])
    preds = np.asarray(model.predict(x)).ravel().tolist()
    values = [outcome(metric, p, y) for p, y in zip(preds, labels, strict=True)]
    kept = [v for v in values if v is not None]
    if not kept:
        raise ValueError(f"no row of the holdout gives a {metric} outcome")
    return float(np.mean(kept)), len(kept)


def validate(
    cm: Context,
    challenger: ModelRef,
    champion: ModelRef | None,
    holdout: Holdout,
    policy: Policy,
) -> Validation:
    """Whether ``challenger`` may be deployed: no worse than the champion by more than
    the policy's margin on the holdout, and at least ``holdout.min_score`` if set."""
    metric = "accuracy" if policy.metric == "label" else policy.metric
    new, rows = score(cm, challenger, holdout, metric)
    old = score(cm, champion, holdout, metric)[0] if champion is not None else None
    better = metric == "accuracy"  # the errors: lower is better
    problems = []
    if old is not None:
        worse_by = (old - new) if better else (new - old)
        if worse_by > policy.margin:
            problems.append(
                f"{metric} {new:.4g} vs champion {old:.4g} on {rows} holdout rows: worse by "
                f"{worse_by:.4g}, more than the margin {policy.margin:g}"
            )
    if holdout.min_score is not None:
        short = new < holdout.min_score if better else new > holdout.min_score
        if short:
            problems.append(
                f"{metric} {new:.4g} {'below' if better else 'above'} the required "
                f"{holdout.min_score:g}"
            )
    if problems:
        return Validation(metric, new, old, rows, False, "; ".join(problems))
    vs = f" vs champion {old:.4g}" if old is not None else ""
    return Validation(metric, new, old, rows, True, f"{metric} {new:.4g}{vs} on {rows} rows")
