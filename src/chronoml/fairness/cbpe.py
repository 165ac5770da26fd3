"""Quality estimated before labels arrive: confidence-based performance estimation (CBPE).

The method is NannyML's. On labelled reference data (the training snapshot,
or a labelled window of decisions) each class's score is calibrated with an
isotonic regression, one-vs-rest; calibrated probabilities of a row then sum
to 1 (a row whose calibrated scores are all 0 gets the uniform distribution).
If calibration holds, the calibrated probability is the chance that a row's
label is that class, so the confusion matrix a window *will* show once its
labels arrive has the expectation

    TP = sum of p over rows predicted positive,   FP = sum of (1 - p) there,
    FN = sum of p over rows predicted negative,   TN = sum of (1 - p) there,

and accuracy, precision, recall and F1 follow from it. ROC AUC is estimated
from the curve of those expected counts as the threshold walks down the
model's own (uncalibrated) scores; tied scores move together. Multiclass:
each class one-vs-rest, then the unweighted mean over classes (macro);
accuracy is the mean calibrated probability of the predicted class.

The calibration maps and the rule deciding where they help are in
:mod:`chronoml.fairness.calibration`.

Interval (our own, not NannyML's sampling error): given the calibrated
probabilities, each row's correctness is an independent Bernoulli draw, so
the counts are Poisson-binomial sums with known variance; the delta method
carries that to each metric, and for ROC AUC the Hanley-McNeil variance at
the expected numbers of positives and negatives. The interval says where the
realised value should fall once the labels are in, if calibration holds, widened
by ``1 + window rows / reference rows`` for the error of the calibration map
itself (estimated from the reference, its error is about the sampling error of
the same metric on that many rows; an isotonic fit also spreads the
probabilities a little, which biases ROC AUC upward by a few thousandths at
100k reference rows). It
does not cover a change in the relation between scores and labels (concept
drift), which no label-free method can see. Macro averages treat the
classes as independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.fairness._common import as_1d, labelled_mask, num, z_value
from chronoml.fairness.calibration import Calibrator, CbpeError, class_codes, score_matrix

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
FArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """One estimated metric of one window, with its interval."""

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"value": num(self.value), "low": num(self.low), "high": num(self.high)}


@dataclass(frozen=True)
class WindowEstimate:
    """Estimated (and, where labels exist, realised) quality of one window."""

    window: str
    rows: int
    estimated: dict[str, Estimate]
    labelled: int
    realized: dict[str, float | None] | None  # None while no row of the window is labelled

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "rows": self.rows,
            "estimated": {k: v.to_dict() for k, v in self.estimated.items()},
            "labelled": self.labelled,
            "realized": None
            if self.realized is None
            else {k: num(v) for k, v in self.realized.items()},
        }


@dataclass(frozen=True)
class CbpeReport:
    """Estimated quality per window."""

    task: str  # "binary" or "multiclass"
    classes: tuple[Any, ...]
    average: str  # "binary" (of the positive class, the last of classes) or "macro"
    calibrated: tuple[bool, ...]  # per class (binary: the positive one): isotonic applied?
    confidence: float
    windows: tuple[WindowEstimate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "cbpe",
            "task": self.task,
            "classes": [c if isinstance(c, str | int | bool) else str(c) for c in self.classes],
            "average": self.average,
            "calibrated": list(self.calibrated),
            "confidence": self.confidence,
            "windows": [w.to_dict() for w in self.windows],
        }


@dataclass(frozen=True)
class _Ranked:
    """One score column of a window in descending order, sorted once for the estimated
    and the realised ROC AUC; ``last`` marks where each distinct score ends."""

    order: npt.NDArray[np.int64]
    last: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, score: FArray) -> _Ranked:
        order = np.argsort(-score)  # the order within tied scores is of no consequence
        s = score[order]
        return cls(order, np.r_[s[1:] != s[:-1], True])

    def subset(self, keep: npt.NDArray[np.bool_]) -> _Ranked:
        """The same ranking of the rows ``keep`` (a mask over the window's rows)."""
        kept = keep[self.order]
        # each ranked row's distinct score; a kept row ends its score's run when the next
        # kept row has another score
        run = (np.cumsum(np.r_[True, self.last[:-1]]) - 1)[kept]
        position = np.cumsum(keep) - 1  # a kept row's place among the kept rows
        return _Ranked(position[self.order[kept]], np.r_[run[1:] != run[:-1], True])

    def auc(self, p: FArray) -> float | None:
        """Area under the ROC curve of (expected) positives ``p``, ordered by the score:
        one curve point per distinct score, so tied scores move together."""
        q = p[self.order]
        tps = np.r_[0.0, np.cumsum(q)[self.last]]
        fps = np.r_[0.0, np.cumsum(1 - q)[self.last]]
        if tps[-1] <= 0 or fps[-1] <= 0:
            return None
        return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def _binary(
    p: FArray, predicted: npt.NDArray[np.bool_], ranked: _Ranked
) -> dict[str, tuple[float | None, float]]:
    """Estimates and their variances from calibrated ``p`` of the positive class."""
    n = len(p)
    pp, pn = p[predicted], p[~predicted]
    tp, fn = float(pp.sum()), float(pn.sum())
    npp = float(predicted.sum())
    v_tp, v_fn = float((pp * (1 - pp)).sum()), float((pn * (1 - pn)).sum())
    out: dict[str, tuple[float | None, float]] = {}
    out["accuracy"] = ((tp + (n - npp - fn)) / n, (v_tp + v_fn) / n**2)
    # an undefined precision/recall/F1 (empty denominator) counts as 0, as the realised
    # metrics do (scikit-learn's zero_division=0)
    out["precision"] = (tp / npp, v_tp / npp**2) if npp > 0 else (0.0, 0.0)
    actual = tp + fn
    out["recall"] = (
        (tp / actual, (fn**2 * v_tp + tp**2 * v_fn) / actual**4) if actual > 0 else (0.0, 0.0)
    )
    d = npp + actual
    out["f1"] = (
        (2 * tp / d, (4 * (npp + fn) ** 2 * v_tp + 4 * tp**2 * v_fn) / d**4)
        if d > 0
        else (0.0, 0.0)
    )
    auc = ranked.auc(p)
    if auc is None:
        out["roc_auc"] = (None, 0.0)
    else:
        n_pos, n_neg = max(actual, 1.0), max(n - actual, 1.0)
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
            n_pos * n_neg
        )
        out["roc_auc"] = (auc, max(var, 0.0))
    return out


def _realized(
    label: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], ranked: list[_Ranked], k: int
) -> dict[str, float | None]:
    """Realised quality of labelled rows, from their class codes (a label that is no class
    counts as wrong): scikit-learn's per-class precision, recall and F1 (zero_division=0),
    of the positive class (binary) or their unweighted mean (macro)."""
    # lazy: scikit-learn loads only when an estimate is computed
    from sklearn.metrics import precision_recall_fscore_support

    binary = k == 2
    prec, rec, f1, _ = precision_recall_fscore_support(
        label, pred, labels=list(range(k)), average=None, zero_division=0
    )

    def pick(per_class: Any) -> float:
        return float(per_class[-1]) if binary else float(np.mean(per_class))

    out: dict[str, float | None] = {
        "accuracy": float((label == pred).mean()),
        "precision": pick(prec),
        "recall": pick(rec),
        "f1": pick(f1),
    }
    # ROC AUC of each class one-vs-rest on the same ranking as the estimate
    cols = [k - 1] if binary else list(range(k))
    aucs = [ranked[i].auc(np.asarray(label == j, dtype=float)) for i, j in enumerate(cols)]
    known = [a for a in aucs if a is not None]
    out["roc_auc"] = float(np.mean(known)) if len(known) == len(aucs) else None
    return out


def estimate(
    calibrator: Calibrator,
    scores: Any,
    y_pred: Any = None,
    windows: Any = None,
    *,
    labels: Any = None,
    confidence: float = 0.95,
) -> CbpeReport:
    """Estimated accuracy, precision, recall, F1 and ROC AUC per window.

    ``scores`` are the model's own scores, shaped as for
    :func:`chronoml.fairness.calibration.fit_calibrator`.
    ``y_pred`` are the labels it answered (default: the class of the highest
    score). ``windows`` gives each row's window (default: one window, "all");
    windows are reported in sorted order. ``labels``, where some have arrived
    (None/NaN elsewhere), adds the realised metrics beside the estimates.
    """
    if not 0 < confidence < 1:
        raise CbpeError(f"confidence must lie in (0, 1), got {confidence}", "confidence")
    classes = calibrator.classes
    raw = score_matrix(scores, len(classes), "scores")
    n = len(raw)
    if y_pred is None:
        pred_idx = raw.argmax(axis=1).astype(np.int64)
    else:
        pred = as_1d(y_pred, "y_pred", CbpeError)
        if len(pred) != n:
            raise CbpeError(f"{len(pred)} predictions for {n} score rows", "y_pred")
        pred_idx = class_codes(pred, classes)
        if (pred_idx < 0).any():
            bad = pred[pred_idx < 0][0]
            raise CbpeError(f"prediction {bad!r} is not among the classes", "y_pred")
    win = None if windows is None else as_1d(windows, "windows", CbpeError)
    if win is not None and len(win) != n:
        raise CbpeError(f"{len(win)} window keys for {n} rows", "windows")
    lab = None if labels is None else as_1d(labels, "labels", CbpeError)
    if lab is not None and len(lab) != n:
        raise CbpeError(f"{len(lab)} labels for {n} rows", "labels")
    has_label = None if lab is None else labelled_mask(lab)
    lab_idx = None if lab is None else class_codes(lab, classes)

    cal = calibrator.calibrate(raw)
    z = z_value(confidence)
    if win is None:
        parts: list[tuple[str, npt.NDArray[np.int64] | None]] = [("all", None)]
    else:
        codes, keys = pd.factorize(pd.Series(win, dtype=object), sort=True)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1))
        parts = [(str(key), order[bounds[w] : bounds[w + 1]]) for w, key in enumerate(keys)]
    out: list[WindowEstimate] = []
    for key, rows in parts:

        def part(a: npt.NDArray[Any], rows: npt.NDArray[np.int64] | None = rows) -> Any:
            return a if rows is None else a[rows]

        size = n if rows is None else len(rows)
        w_raw, w_pred = part(raw), part(pred_idx)
        cols = [1] if len(classes) == 2 else list(range(len(classes)))
        ranked = [_Ranked.of(w_raw[:, j]) for j in cols]
        # the calibration map is itself estimated from the reference: its error is
        # about the sampling error of the same metric on as many rows as the reference,
        # so the variance is widened by the share that error adds
        inflate = 1 + size / calibrator.reference_rows
        est = _window(part(cal), w_pred, ranked, z, inflate)
        realized, labelled = None, 0
        if has_label is not None and lab_idx is not None:
            mask = part(has_label)
            labelled = int(mask.sum())
            if labelled:
                realized = _realized(
                    part(lab_idx)[mask],
                    w_pred[mask],
                    [r.subset(mask) for r in ranked],
                    len(classes),
                )
        out.append(
            WindowEstimate(
                window=key, rows=size, estimated=est, labelled=labelled, realized=realized
            )
        )
    return CbpeReport(
        task="binary" if calibrator.binary else "multiclass",
        classes=classes,
        average="binary" if calibrator.binary else "macro",
        calibrated=tuple(
            f is not None
            for f in (calibrator.fitted[-1:] if calibrator.binary else calibrator.fitted)
        ),
        confidence=confidence,
        windows=tuple(out),
    )


def _window(
    cal: FArray,
    pred_idx: npt.NDArray[np.int64],
    ranked: list[_Ranked],
    z: float,
    inflate: float,
) -> dict[str, Estimate]:
    k = cal.shape[1]
    if k == 2:
        parts = [_binary(cal[:, 1], pred_idx == 1, ranked[0])]
    else:
        parts = [_binary(cal[:, j], pred_idx == j, ranked[j]) for j in range(k)]
    est: dict[str, Estimate] = {}
    for metric in METRICS:
        if metric == "accuracy" and k > 2:
            q = cal[np.arange(len(cal)), pred_idx]
            value: float | None = float(q.mean())
            var = float((q * (1 - q)).sum()) / len(q) ** 2
        else:
            vals = [p[metric][0] for p in parts]
            if any(v is None for v in vals):
                est[metric] = Estimate(None, None, None)
                continue
            mean = float(np.mean([float(v) for v in vals if v is not None]))
            value = mean
            var = sum(p[metric][1] for p in parts) / len(parts) ** 2
        half = z * math.sqrt(var * inflate)
        v = float(value) if value is not None else 0.0
        est[metric] = Estimate(v, max(0.0, v - half), min(1.0, v + half))
    return est
