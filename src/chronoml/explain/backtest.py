"""Backtests: what a candidate model would have decided on logged traffic.

The candidate runs on the logged inputs of the answered decisions of a
range; the report compares its outputs with the logged ones and, where
labels arrived, the quality of both. Nothing is written to the decision log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from chronoml.errors import NotFound, Refused
from chronoml.explain.replay import Progress, is_num, model_dict, run
from chronoml.registry import RegistryError
from chronoml.registry.archive import ArtifactError
from chronoml.store import decision_reads as DR
from chronoml.store import ledger as SL
from chronoml.timeutil import iso

if TYPE_CHECKING:
    from chronoml.context import Context
    from chronoml.explain.models import Models
    from chronoml.registry.models import LoadedModel

# at most this many distinct values make an output categorical
CATEGORIES = 20


def candidate_frame(model: LoadedModel, logged: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    """The logged inputs in the shape the candidate takes; a missing column is refused."""

    if model.schema is None:
        return logged.reset_index(drop=True)
    cols: dict[str, Any] = {}
    for c, kind in model.schema:
        if c not in logged.columns:
            raise Refused(
                f"the candidate takes column {c!r}, which the logged decisions of {endpoint} "
                "do not have",
                "model_uri",
            )
        s = logged[c]
        is_text = s.dtype == object
        if (kind == "string") != is_text:
            want = "strings" if kind == "string" else "numbers"
            raise Refused(
                f"the candidate takes {want} in column {c!r}; the logged values are not",
                "model_uri",
            )
        if kind == "float":
            cols[c] = s.to_numpy(dtype=np.float64)
        elif kind == "int":
            v = s.to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(v) & (v == np.round(v))):
                raise Refused(
                    f"the candidate takes integers in column {c!r}; logged values are not",
                    "model_uri",
                )
            cols[c] = s.to_numpy().astype(np.int64)
        elif kind == "bool":
            cols[c] = s.to_numpy().astype(bool)
        else:
            cols[c] = s.to_numpy(dtype=object)
    return pd.DataFrame(cols, copy=False)


def _norm(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def backtest(
    cm: Context,
    models: Models,
    endpoint: str,
    model_uri: str,
    start: int,
    end: int,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """What ``model_uri`` would have decided on ``endpoint``'s answered traffic in ``[start, end)``.

    Compares with what was logged: how often the output differs, how the
    output distribution shifts, and, for decisions with a label, the
    quality of both. Writes nothing to the decision log.
    """

    if not SL.exists(cm.store, endpoint):
        raise NotFound(f"unknown endpoint {endpoint!r}")
    if start >= end:
        raise Refused("the range's start must be before its end", "from")
    try:
        resolved = cm.registry.resolve(model_uri)
    except ArtifactError:
        raise
    except RegistryError as exc:
        raise NotFound(str(exc)) from None
    cand = models.load(resolved.ref)
    t0 = time.perf_counter()
    total = DR.count(cm.store, endpoint, start, end, include_shadow=False)
    if on_total is not None:
        on_total(total)
    ids: list[str] = []
    logged: list[Any] = []
    candidate: list[Any] = []
    served: list[str] = []
    for batch in DR.batches(cm.store, cm.layouts, endpoint, start, end, include_shadow=False):
        values, _ = run(cand, candidate_frame(cand, batch.frame, endpoint))
        ids.extend(batch.ids)
        logged.extend(_norm(orjson.loads(t)) for t in batch.outputs)
        candidate.extend(_norm(v) for v in values)
        served.extend(
            f"{n} v{v}" for n, v in zip(batch.model_names, batch.model_versions, strict=True)
        )
        if progress is not None:
            progress(len(batch))
    changed = [a != b for a, b in zip(logged, candidate, strict=True)]
    by_version = []
    for key, idx in _positions(served).items():
        n_changed = sum(changed[i] for i in idx)
        by_version.append(
            {
                "served_by": key,
                "rows": len(idx),
                "changed": n_changed,
                "share": n_changed / len(idx),
            }
        )
    labels = DR.labels(cm.store, ids) if ids else {}
    labelled = [i for i, d in enumerate(ids) if d in labels]
    n = len(ids)
    return {
        "endpoint": endpoint,
        "candidate": {**model_dict(resolved.ref), "uri": model_uri},
        "window": {"from": iso(start), "to": iso(end), "rows": n},
        "empty": n == 0,
        "changed": {"rows": sum(changed), "share": (sum(changed) / n) if n else None},
        "by_served_version": by_version,
        "outputs": distribution(logged, candidate),
        "quality": quality(
            [labels[ids[i]] for i in labelled],
            [logged[i] for i in labelled],
            [candidate[i] for i in labelled],
        ),
        "decision_log_written": False,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _positions(values: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return out


def _kind(values: list[Any]) -> str:
    if not values:
        return "empty"
    if all(isinstance(v, str | bool) for v in values):
        return "categorical"
    if all(is_num(v) for v in values):
        ints = all(isinstance(v, int) for v in values)
        if ints and len(set(values)) <= CATEGORIES:
            return "categorical"
        return "numeric"
    return "other"


def _shares(values: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        k = str(v) if not isinstance(v, bool) else ("true" if v else "false")
        out[k] = out.get(k, 0) + 1
    n = len(values)
    return {k: c / n for k, c in sorted(out.items())}


def _summary(values: list[Any]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "p05": float(np.quantile(a, 0.05)),
        "p50": float(np.quantile(a, 0.5)),
        "p95": float(np.quantile(a, 0.95)),
    }


def distribution(logged: list[Any], candidate: list[Any]) -> dict[str, Any]:
    """How the candidate's outputs are distributed against the logged ones.

    Categorical outputs (strings, booleans, or at most 20 distinct integers):
    the share of each value and the total variation distance, half the sum
    of the absolute share differences. Numeric outputs: summaries, the
    two-sample Kolmogorov-Smirnov statistic and the mean shift.
    """
    kind = _kind(logged + candidate)
    out: dict[str, Any] = {"kind": kind}
    if kind == "categorical":
        p, q = _shares(logged), _shares(candidate)
        out.update(
            {
                "logged": p,
                "candidate": q,
                "total_variation": 0.5
                * sum(abs(p.get(k, 0) - q.get(k, 0)) for k in set(p) | set(q)),
            }
        )
    elif kind == "numeric":
        # lazy: scipy loads only for this report
        from scipy.stats import ks_2samp

        ks = ks_2samp(np.asarray(logged, dtype=float), np.asarray(candidate, dtype=float))
        out.update(
            {
                "logged": _summary(logged),
                "candidate": _summary(candidate),
                "ks_statistic": float(ks.statistic),
                "ks_pvalue": float(ks.pvalue),
                "mean_shift": float(np.mean(candidate) - np.mean(logged)),
            }
        )
    return out


def quality(labels: list[Any], logged: list[Any], candidate: list[Any]) -> dict[str, Any] | None:
    """Quality of the logged and the candidate outputs on the labelled decisions."""
    if not labels:
        return None
    labels = [_norm(v) for v in labels]
    kind = _kind(labels + logged + candidate)
    if kind == "categorical":
        return {
            "labelled": len(labels),
            "metric": "accuracy",
            "logged": sum(a == y for a, y in zip(logged, labels, strict=True)) / len(labels),
            "candidate": sum(b == y for b, y in zip(candidate, labels, strict=True)) / len(labels),
        }
    if kind == "numeric":
        y = np.asarray(labels, dtype=float)
        a = np.asarray(logged, dtype=float)
        b = np.asarray(candidate, dtype=float)
        return {
            "labelled": len(labels),
            "metric": "mae",
            "logged": float(np.abs(a - y).mean()),
            "candidate": float(np.abs(b - y).mean()),
            "rmse": {
                "logged": float(np.sqrt(((a - y) ** 2).mean())),
                "candidate": float(np.sqrt(((b - y) ** 2).mean())),
            },
        }
    return {"labelled": len(labels), "metric": None, "message": "labels and outputs not comparable"}
