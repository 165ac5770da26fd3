"""Model quality per window, variant and version, once labels have arrived."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chronoml.monitor.slices import DEFAULT_BINS, SliceError, Slicing, breakdown, slicing
from chronoml.store import decision_reads as DR
from chronoml.store import outcomes as O
from chronoml.store.database import Store
from chronoml.store.decisions import Layouts
from chronoml.timeutil import iso


def _task(outputs: list[Any]) -> str:
    for o in outputs:
        if isinstance(o, float) and not o.is_integer():
            return "regression"
    return "classification"


def metrics_for(
    outputs: list[Any],
    labels: list[Any],
    scores: np.ndarray[Any, Any] | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Quality of labelled decisions: classifier or regressor metrics (scikit-learn).

    ``scores`` (one row of class scores per decision, NaN where none was logged)
    in the order of ``classes`` give ROC AUC and log loss as well.
    """
    # lazy: scikit-learn loads only for the models that need it
    from sklearn import metrics as m

    task = _task(outputs)
    if not outputs:
        return {"task": None}
    if task == "regression":
        y, p = np.asarray(labels, dtype=float), np.asarray(outputs, dtype=float)
        out: dict[str, Any] = {
            "task": task,
            "mae": float(m.mean_absolute_error(y, p)),
            "rmse": float(np.sqrt(m.mean_squared_error(y, p))),
            "r2": float(m.r2_score(y, p)) if len(y) > 1 else None,
        }
        return out
    y_true = [_cls(v) for v in labels]
    y_pred = [_cls(v) for v in outputs]
    classes_seen = sorted(set(y_true) | set(y_pred), key=str)
    binary = len(classes_seen) <= 2
    avg = "binary" if binary and set(classes_seen) <= {0, 1} else "macro"
    kw: dict[str, Any] = {"average": avg, "zero_division": 0}
    out = {
        "task": task,
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "precision": float(m.precision_score(y_true, y_pred, **kw)),
        "recall": float(m.recall_score(y_true, y_pred, **kw)),
        "f1": float(m.f1_score(y_true, y_pred, **kw)),
        "average": avg,
    }
    out.update(score_metrics(y_true, scores, classes))
    return out


def _cls(v: Any) -> Any:
    return str(v) if isinstance(v, str) else int(v)


def score_metrics(
    y_true: list[Any], scores: np.ndarray[Any, Any] | None, classes: Sequence[Any] | None
) -> dict[str, Any]:
    """ROC AUC and log loss of labelled decisions from their logged class scores."""
    # lazy: scikit-learn loads only for the models that need it
    from sklearn import metrics as m

    none = {"roc_auc": None, "log_loss": None}
    if scores is None or classes is None:
        return {
            **none,
            "roc_auc_note": "needs scores; this model's logged outputs are class labels",
        }
    have = ~np.isnan(scores).any(axis=1)
    if not have.any():
        return {**none, "roc_auc_note": "none of these decisions has logged scores"}
    order = [_cls(c) for c in classes]
    y = [t for t, ok in zip(y_true, have, strict=True) if ok]
    p = scores[have]
    unknown = set(y) - set(order)
    if unknown:
        shown = sorted(map(str, unknown))[0]
        return {**none, "roc_auc_note": f"label {shown!r} is not one of the model's classes"}
    out: dict[str, Any] = {"scored": int(have.sum())}
    out["log_loss"] = float(m.log_loss(y, np.clip(p, 1e-15, 1.0), labels=order))
    present = set(y)
    if len(present) < 2:
        out["roc_auc"] = None
        out["roc_auc_note"] = "every labelled decision has the same label"
    elif len(order) == 2:
        out["roc_auc"] = float(m.roc_auc_score([t == order[1] for t in y], p[:, 1]))
    elif present == set(order):
        out["roc_auc"] = float(
            m.roc_auc_score(y, p / p.sum(axis=1, keepdims=True), multi_class="ovr", labels=order)
        )
    else:
        out["roc_auc"] = None
        out["roc_auc_note"] = "multiclass ROC AUC needs every class among the labels"
    return out


def _figures(got: O.Outcomes, classes: list[Any] | None) -> Callable[[list[int]], dict[str, Any]]:
    def figures(idx: list[int]) -> dict[str, Any]:
        scores = (
            O.unpack_scores([got.scores[i] for i in idx], len(classes))
            if classes is not None
            else None
        )
        return metrics_for(
            [got.outputs[i] for i in idx], [got.labels[i] for i in idx], scores, classes
        )

    return figures


def input_column(
    store: Store, endpoint: str, start: int, end: int, ids: list[str], name: str
) -> tuple[np.ndarray[Any, Any] | None, list[str]]:
    """Model input ``name`` of each decision ``ids`` of ``endpoint``'s window ``[start, end)``
    (None where its input layout lacks it), or None when no decision's layout has it; and
    the names of the window's model inputs."""
    position = {d: i for i, d in enumerate(ids)}
    out = np.full(len(ids), None, dtype=object)
    names: set[str] = set()
    found = False
    for batch in DR.batches(store, Layouts(store), endpoint, start, end, include_shadow=False):
        names.update(batch.frame.columns)
        if name not in batch.frame.columns:
            continue
        at = np.fromiter((position.get(d, -1) for d in batch.ids), np.int64, len(batch))
        mine = at >= 0
        if mine.any():
            found = True
            out[at[mine]] = batch.frame[name].to_numpy(dtype=object)[mine]
    if not found:
        return None, sorted(names)
    if all(isinstance(v, float | int) and not isinstance(v, bool) for v in out.tolist()):
        return out.astype(np.float64), sorted(names)
    return out, sorted(names)


def quality(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None = None,
    by: str | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Label coverage and quality metrics of ``endpoint``'s decisions in ``[start, end)``;
    with ``by`` (a model input or a context attribute, numbers with many values in ``bins``
    quantile bins; see :mod:`chronoml.monitor.slices`), also per slice, the worst marked."""
    got = O.outcomes(store, endpoint, start, end, variant=variant, with_context=by is not None)
    sliced: Slicing | None = None
    if by is not None:
        if not len(got):
            raise SliceError("no decisions in this window to break down", "window")
        values, names = None, None
        in_context = any(c.get(by) is not None for c in got.context)
        # the inputs are read only when ``by`` may be one (or to name them when it is neither)
        if by in DR.input_names(store) or not in_context:
            values, names = input_column(store, endpoint, start, end, got.ids, by)
        inputs = None if values is None else {by: values}
        sliced = slicing(by, got.context, inputs, bins=bins, input_names=names)
    variants = []
    for (vname, mname, version), idx in sorted(got.groups().items(), key=lambda kv: -len(kv[1])):
        labelled = [i for i in idx if got.labels[i] is not None]
        entry: dict[str, Any] = {
            "variant": vname,
            "model": {"name": mname, "version": version},
            "decisions": len(idx),
            "labelled": len(labelled),
            "label_coverage": len(labelled) / len(idx) if idx else None,
        }
        classes = O.classes_of(store, mname, version)
        scores = (
            O.unpack_scores([got.scores[i] for i in labelled], len(classes))
            if classes is not None
            else None
        )
        entry["metrics"] = metrics_for(
            [got.outputs[i] for i in labelled],
            [got.labels[i] for i in labelled],
            scores,
            classes,
        )
        if sliced is not None and by is not None:
            entry["by"] = {
                **sliced.describe(by),
                **breakdown(sliced.keys, idx, labelled, _figures(got, classes)),
            }
        variants.append(entry)
    return {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end), "rows": len(got)},
        "variants": variants,
    }
