"""Model quality per window, variant and version, once labels have arrived."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from chronoml.store import decision_reads as DR
from chronoml.store.database import Store
from chronoml.timeutil import iso


def _task(outputs: list[Any]) -> str:
    for o in outputs:
        if isinstance(o, float) and not o.is_integer():
            return "regression"
    return "classification"


def metrics_for(outputs: list[Any], labels: list[Any]) -> dict[str, Any]:
    """Quality of labelled decisions: classifier or regressor metrics (scikit-learn)."""
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
    y_true = [str(v) if isinstance(v, str) else int(v) for v in labels]
    y_pred = [str(v) if isinstance(v, str) else int(v) for v in outputs]
    classes = sorted(set(y_true) | set(y_pred), key=str)
    binary = len(classes) <= 2
    avg = "binary" if binary and set(classes) <= {0, 1} else "macro"
    kw: dict[str, Any] = {"average": avg, "zero_division": 0}
    return {
        "task": task,
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "precision": float(m.precision_score(y_true, y_pred, **kw)),
        "recall": float(m.recall_score(y_true, y_pred, **kw)),
        "f1": float(m.f1_score(y_true, y_pred, **kw)),
        "average": avg,
        # the log holds the model's answers (labels), not scores
        "roc_auc": None,
        "roc_auc_note": "needs scores; this model's logged outputs are class labels",
    }


def quality(
    store: Store, endpoint: str, start: int, end: int, *, variant: str | None = None
) -> dict[str, Any]:
    """Label coverage and quality metrics of ``endpoint``'s decisions in ``[start, end)``."""
    rows = DR.outputs_and_labels(store, endpoint, start, end, variant=variant)
    groups: dict[tuple[str, str, str], list[tuple[Any, Any]]] = {}
    for r in rows:
        groups.setdefault((r.variant, r.model_name, r.model_version), []).append(
            (orjson.loads(r.output), None if r.label is None else orjson.loads(r.label))
        )
    variants = []
    for (vname, mname, version), pairs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        labelled = [(o, lab) for o, lab in pairs if lab is not None]
        entry: dict[str, Any] = {
            "variant": vname,
            "model": {"name": mname, "version": version},
            "decisions": len(pairs),
            "labelled": len(labelled),
            "label_coverage": len(labelled) / len(pairs) if pairs else None,
        }
        entry["metrics"] = metrics_for([o for o, _ in labelled], [lab for _, lab in labelled])
        variants.append(entry)
    return {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end), "rows": len(rows)},
        "variants": variants,
    }
