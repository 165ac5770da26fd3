"""The calibration step of CBPE: isotonic maps of each class's score, fitted on labelled
reference data.

``calibration="auto"`` (the default) calibrates a class only where it helps
out of sample, as NannyML decides: ten stratified 90/10 splits of the
reference, isotonic fitted on each 90%, and the expected calibration error
(ten equal-count bins) of the pooled 10% parts compared before and after.
``"isotonic"`` always calibrates and ``"none"`` never does.

Every fit on one score column (the ten splits' and the final one) starts from
one sort of the reference, since an isotonic fit is mostly its sort. Rows with the same score are merged into
one point weighted by their count, as scikit-learn's ``IsotonicRegression``
does, before scikit-learn's ``isotonic_regression`` (pool adjacent violators);
the resulting maps are the same as scikit-learn's, which the tests check.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.fairness._common import FairnessError, as_1d, labelled_mask

Calibration = Literal["auto", "isotonic", "none"]
FArray = npt.NDArray[np.float64]


class CbpeError(FairnessError):
    """CBPE cannot estimate from this input; ``field`` names the input and the message says why."""


def class_codes(values: npt.NDArray[Any], classes: tuple[Any, ...]) -> npt.NDArray[np.int64]:
    """Each value's position among ``classes`` (-1: none of them), matched by equality as
    ``values == class`` would, one comparison per distinct value."""
    found, distinct = pd.factorize(pd.Series(values, dtype=object))
    table = np.full(len(distinct) + 1, -1, dtype=np.int64)  # the last: no value (None)
    for i, v in enumerate(distinct.tolist()):
        for j, c in enumerate(classes):
            if v == c:
                table[i] = j
                break
    return table[np.asarray(found, dtype=np.int64)]


@dataclass(frozen=True)
class IsotonicMap:
    """A fitted isotonic calibration map: linear between its points, constant past the ends
    (what scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts)."""

    x: FArray
    y: FArray

    def predict(self, scores: FArray) -> FArray:
        return np.asarray(np.interp(scores, self.x, self.y), dtype=float)


@dataclass(frozen=True)
class Calibrator:
    """Per-class isotonic calibrators fitted on labelled reference data (None: left as is)."""

    classes: tuple[Any, ...]
    fitted: tuple[IsotonicMap | None, ...]  # per score column; None: left as is
    reference_rows: int

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def calibrate(self, scores: FArray) -> FArray:
        """Calibrated class probabilities, shape (n, classes)."""
        cols = [
            scores[:, j] if f is None else f.predict(scores[:, j])
            for j, f in enumerate(self.fitted)
        ]
        if self.binary:
            p = np.clip(cols[-1], 0.0, 1.0)
            return np.column_stack([1 - p, p])
        out = np.column_stack(cols)
        total = out.sum(axis=1, keepdims=True)
        uniform = np.full_like(out, 1 / out.shape[1])
        return np.asarray(np.divide(out, total, out=uniform, where=total != 0), dtype=float)


def score_matrix(scores: Any, n_classes: int | None, field: str) -> FArray:
    if scores is None:
        raise CbpeError(
            "no scores: the model logs class labels only, and CBPE needs the probability "
            "of each class (a model with predict_proba)",
            field,
        )
    try:
        arr = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise CbpeError(
            "scores must be numbers (probabilities); some are not, or some are missing", field
        ) from None
    if arr.ndim == 1:
        arr = np.column_stack([1 - arr, arr])
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise CbpeError("no scores to estimate from (empty)", field)
    if not np.isfinite(arr).all():
        raise CbpeError("scores contain missing or infinite values", field)
    if n_classes is not None and arr.shape[1] != n_classes:
        raise CbpeError(f"{arr.shape[1]} score columns for {n_classes} classes", field)
    return arr


def _ece(y: npt.NDArray[Any], p: FArray, bins: int = 10) -> float:
    order = np.argsort(p, kind="stable")
    y, p = y[order], p[order]
    n = len(p)
    if n <= 2 * bins:
        bins = max(n // 2, 1)
    width = n // bins
    edges = list(range(0, n + 1, width))
    edges[-1] = n
    total = 0.0
    for a, b in itertools.pairwise(edges):
        total += (b - a) / n * abs(float(p[a:b].mean()) - float(y[a:b].mean()))
    return total


def _splits(
    y: npt.NDArray[Any], n_splits: int, test_share: float, seed: int
) -> list[npt.NDArray[np.int64]]:
    """The test parts of stratified random train/test splits: each class keeps its share
    in the test part (the train part is the rest)."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]
    return [
        np.sort(
            np.concatenate(
                [rng.choice(m, max(1, round(len(m) * test_share)), replace=False) for m in members]
            )
        )
        for _ in range(n_splits)
    ]


class _SortedScores:
    """One score column of the reference, sorted once for every fit on it.

    An isotonic fit sorts its input, and sorting is most of its cost: fitting ten
    splits and the whole reference from one sort gives the same maps for a tenth
    of the work. Rows with the same score are merged into one point weighted by
    their count, as scikit-learn's ``IsotonicRegression`` does before its
    pool-adjacent-violators step (scikit-learn's ``isotonic_regression`` here).
    """

    def __init__(self, p: FArray, y: FArray) -> None:
        self.order = np.argsort(p)
        self.p = p[self.order]
        if (self.p[1:] == self.p[:-1]).any():
            # tied scores: keep them in row order, as the splits' calibration error expects
            self.order = np.argsort(p, kind="stable")
            self.p = p[self.order]
        self.y = y[self.order]
        first = np.r_[True, self.p[1:] != self.p[:-1]]
        self.values = self.p[first]
        self.point = np.cumsum(first) - 1  # each sorted row's distinct value
        self.distinct = len(self.values) == len(p)
        self.rank = np.empty(len(p), dtype=np.int64)
        self.rank[self.order] = np.arange(len(p))

    def fit(self, keep: npt.NDArray[np.bool_] | None = None) -> IsotonicMap:
        """The isotonic map of the rows ``keep`` (in sorted order; default all)."""
        # lazy: scikit-learn loads only when a calibrator is fitted
        from sklearn.isotonic import isotonic_regression

        if self.distinct:  # no tied scores (the usual case for real-valued ones): no merging
            x = self.p if keep is None else self.p[keep]
            fitted = np.asarray(
                isotonic_regression(self.y if keep is None else self.y[keep]), dtype=float
            )
        else:
            point = self.point if keep is None else self.point[keep]
            y = self.y if keep is None else self.y[keep]
            w = np.bincount(point, minlength=len(self.values)).astype(float)
            total = np.bincount(point, weights=y, minlength=len(self.values))
            have = w > 0
            x = self.values[have]
            fitted = np.asarray(
                isotonic_regression(total[have] / w[have], sample_weight=w[have]), dtype=float
            )
        # the map is flat inside each run of equal fitted values: its two ends carry it
        # (scikit-learn keeps the same points), and predicting then searches far fewer
        step = fitted[1:] != fitted[:-1]
        ends = np.r_[True, step] | np.r_[step, True]
        return IsotonicMap(x[ends], fitted[ends])

    def auc(self) -> float:
        """ROC AUC of the scores against the labels, tied scores counted half."""
        pos = np.bincount(self.point, weights=self.y, minlength=len(self.values))
        neg = np.bincount(self.point, minlength=len(self.values)) - pos
        below = np.cumsum(neg) - neg  # negatives with a strictly lower score
        n_pos, n_neg = pos.sum(), neg.sum()
        return float((pos * (below + neg / 2)).sum() / (n_pos * n_neg))


def _helps(y: FArray, sorted_: _SortedScores) -> bool:
    """NannyML's rule: calibrate when out-of-sample calibration error drops."""
    if sorted_.auc() > 0.999:
        return False
    yt, before, after = [], [], []
    for test in _splits(y, 10, 0.1, 42):
        # the test rows in score order: the pooled parts below sort in runs
        in_test = np.zeros(len(sorted_.y), dtype=bool)
        in_test[sorted_.rank[test]] = True
        iso = sorted_.fit(~in_test)
        p = sorted_.p[in_test]
        yt.append(sorted_.y[in_test])
        before.append(p)
        after.append(iso.predict(p))
    y_all = np.concatenate(yt)
    return _ece(y_all, np.concatenate(before)) > _ece(y_all, np.concatenate(after))


def fit_calibrator(
    reference_scores: Any,
    reference_labels: Any,
    *,
    classes: Sequence[Any] | None = None,
    calibration: Calibration = "auto",
) -> Calibrator:
    """Fit the calibrators on labelled reference data.

    ``reference_scores`` is the probability of the positive class (binary,
    one dimension) or one column per class in the order of ``classes``
    (default: the sorted distinct labels). Binary: the positive class is the
    last of ``classes``.
    """
    if calibration not in ("auto", "isotonic", "none"):
        raise CbpeError(
            f"calibration must be auto, isotonic or none, got {calibration!r}", "calibration"
        )
    labels = as_1d(reference_labels, "reference_labels", CbpeError)
    if len(labels) == 0:
        raise CbpeError("the reference has no rows", "reference_labels")
    if not labelled_mask(labels).all():
        raise CbpeError("every reference row needs its label", "reference_labels")
    distinct = sorted(pd.unique(labels).tolist(), key=str)
    if len(distinct) < 2:
        raise CbpeError(
            f"the reference has one class only ({distinct[0]!r}): calibration needs both "
            "positive and negative examples",
            "reference_labels",
        )
    cls = tuple(classes) if classes is not None else tuple(distinct)
    unknown = [c for c in distinct if c not in cls]
    if unknown:
        raise CbpeError(f"reference label {unknown[0]!r} is not among the classes", "classes")
    scores = score_matrix(reference_scores, len(cls), "reference_scores")
    if len(scores) != len(labels):
        raise CbpeError(
            f"{len(scores)} reference scores for {len(labels)} labels", "reference_scores"
        )
    cols = [len(cls) - 1] if len(cls) == 2 else list(range(len(cls)))
    fitted: list[IsotonicMap | None] = [None] * len(cls)
    codes = class_codes(labels, cls)
    for j in cols:
        y = np.asarray(codes == j, dtype=float)
        if not 0 < y.sum() < len(y):
            raise CbpeError(
                f"class {cls[j]!r} is {'absent from' if y.sum() == 0 else 'all of'} the "
                "reference: it cannot be calibrated",
                "reference_labels",
            )
        if calibration == "none":
            continue
        sorted_ = _SortedScores(scores[:, j], y)
        if calibration == "isotonic" or _helps(y, sorted_):
            fitted[j] = sorted_.fit()
    return Calibrator(cls, tuple(fitted), len(labels))
