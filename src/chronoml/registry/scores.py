"""Class scores in what a plain MLflow pyfunc returns.

A ``python_function`` model that is a classifier often answers with its class
probabilities instead of labels: a frame with one column per class, a
``(rows, classes)`` array, or a dict holding them (``probabilities``, with
``classes`` and per-row ``label``/``predictions`` when it has them). Such an
output is recognised per batch (every value in [0, 1], each row summing to 1
within 1e-6, at least two classes) and its scores are logged like those of
``predict_proba``. The answer stays what the model returned, row by row; a dict
answers each row's label (the given one, else the class of the highest score).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PROBABILITY_KEYS = ("probabilities", "probability", "scores")
LABEL_KEYS = ("label", "labels", "predictions", "prediction")
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class OutputScores:
    """A batch's answer (one entry per row, as the model meant it) and its class scores."""

    answer: Any
    classes: tuple[Any, ...]
    scores: np.ndarray[Any, Any]  # (rows, classes) float64


def _probabilities(m: Any, n: int) -> np.ndarray[Any, Any] | None:
    try:
        p = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2 or n == 0:
        return None
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        return None
    if (np.abs(p.sum(axis=1) - 1.0) > _SUM_TOLERANCE).any():
        return None
    return p


def _class(c: Any) -> Any:
    c = c.item() if hasattr(c, "item") else c
    if isinstance(c, str):
        try:
            return int(c)  # "0", "1": the labels the model was trained on are integers
        except ValueError:
            return c
    return c


def split_scores(pred: Any, n: int) -> OutputScores | None:
    """The class scores in a pyfunc's output for ``n`` rows, or None when it holds none."""
    if isinstance(pred, pd.DataFrame):
        if pred.shape[1] < 2 or not all(k.kind == "f" for k in pred.dtypes):
            return None
        p = _probabilities(pred.to_numpy(), n)
        if p is None:
            return None
        return OutputScores(pred, tuple(_class(c) for c in pred.columns), p)
    if isinstance(pred, np.ndarray):
        if pred.dtype.kind != "f":
            return None
        p = _probabilities(pred, n)
        return None if p is None else OutputScores(pred, tuple(range(p.shape[1])), p)
    if isinstance(pred, Mapping):
        key = next((k for k in PROBABILITY_KEYS if k in pred), None)
        if key is None:
            return None
        p = _probabilities(pred[key], n)
        if p is None:
            return None
        given = pred.get("classes")
        classes = (
            tuple(_class(c) for c in given)
            if given is not None and len(given) == p.shape[1]
            else tuple(range(p.shape[1]))
        )
        label_key = next((k for k in LABEL_KEYS if k in pred), None)
        if label_key is not None and len(pred[label_key]) == n:
            answer = [_class(v) for v in pred[label_key]]
        else:
            answer = [classes[i] for i in p.argmax(axis=1)]
        return OutputScores(answer, classes, p)
    return None
