"""Quality estimated before labels arrive (CBPE) from the scores in the decision log.

The reference is a labelled window of the same version's decisions with
scores: the one asked for (``--reference-from/--reference-to``), or by default
the version's labelled decisions in the 30 days before the window. Its
scores are calibrated against its labels
(:func:`chronoml.fairness.calibration.fit_calibrator`); the window's confusion matrix
is then estimated from its own scores, and realized quality is shown beside
the estimate wherever labels have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from chronoml.errors import InvalidInput
from chronoml.fairness.calibration import CbpeError, fit_calibrator
from chronoml.fairness.cbpe import estimate
from chronoml.store import outcomes as O
from chronoml.store import scored_blocks as SB
from chronoml.store.database import Store
from chronoml.timeutil import iso

DEFAULT_REFERENCE_US = 30 * 86_400_000_000
MIN_REFERENCE = 50  # labelled and scored decisions a calibration needs


class EstimateError(InvalidInput):
    """Quality cannot be estimated for this question; ``field`` and the message say why."""

    code = "cannot_estimate"


@dataclass(frozen=True)
class Reference:
    """Where the calibration comes from."""

    start: int
    end: int
    explicit: bool


def _scored(
    got: SB.Scored, idx: np.ndarray[Any, Any], width: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    scores = got.scores(width)[idx]
    keep = ~np.isnan(scores).any(axis=1)
    return idx[keep], scores[keep]


def estimate_version(
    store: Store,
    endpoint: str,
    model_name: str,
    version: str,
    start: int,
    end: int,
    reference: Reference,
    *,
    variant: str | None = None,
    window: SB.Scored | None = None,
) -> dict[str, Any]:
    """Estimated and realized quality of one version's decisions in ``[start, end)``
    (``window``: those decisions, when the caller has read them already)."""
    classes = O.classes_of(store, model_name, version)
    if classes is None:
        raise EstimateError(
            f"{model_name} v{version} logs no class scores (it offers no predict_proba, or is "
            "not a classifier): CBPE needs them",
            "scores",
            422,
        )
    cur = (
        window
        if window is not None
        else SB.scored(store, endpoint, start, end, variant=variant, version=version)
    )
    rows, scores = _scored(cur, np.arange(len(cur)), len(classes))
    if not len(rows):
        raise EstimateError("no decision with scores in this window", "window", 422)
    ref = SB.scored(store, endpoint, reference.start, reference.end, version=version)
    ref_rows, ref_scores = _scored(ref, np.flatnonzero(pd.notna(ref.labels)), len(classes))
    field = "reference_from" if reference.explicit else "reference"
    if len(ref_rows) < MIN_REFERENCE:
        raise EstimateError(
            f"the reference ({iso(reference.start)} to {iso(reference.end)}) holds "
            f"{len(ref_rows)} labelled decisions of v{version} with scores; CBPE needs at "
            f"least {MIN_REFERENCE} (give --reference-from/--reference-to)",
            field,
            422,
        )
    ref_labels = ref.labels[ref_rows]
    unknown = sorted({str(v) for v in pd.unique(ref_labels)} - {str(c) for c in classes})
    if unknown:
        raise EstimateError(f"reference label {unknown[0]!r} is not a class of the model", field)
    try:
        cal = fit_calibrator(ref_scores, ref_labels, classes=classes)
        rep = estimate(
            cal,
            scores,
            cur.outputs[rows],
            labels=cur.labels[rows],
        )
    except CbpeError as exc:
        raise EstimateError(exc.message, exc.field, 422) from None
    [w] = rep.windows
    out = rep.to_dict()
    out.pop("windows")
    return {
        **out,
        "model": {"name": model_name, "version": version},
        "decisions": len(cur),
        "scored": len(rows),
        "labelled": w.labelled,
        "reference": {
            "from": iso(reference.start),
            "to": iso(reference.end),
            "rows": len(ref_rows),
        },
        "estimated": {k: v.to_dict() for k, v in w.estimated.items()},
        "realized": None if w.realized is None else dict(w.realized),
    }


def estimated_quality(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    reference_start: int | None = None,
    reference_end: int | None = None,
    variant: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """CBPE estimates per variant and version of ``endpoint`` over ``[start, end)``."""
    if (reference_start is None) != (reference_end is None):
        raise EstimateError("give both --reference-from and --reference-to", "reference_to", 400)
    if reference_start is not None and reference_end is not None:
        if reference_end <= reference_start:
            raise EstimateError("the reference ends before it starts", "reference_to", 400)
        ref = Reference(reference_start, reference_end, True)
    else:
        ref = Reference(start - DEFAULT_REFERENCE_US, start, False)
    got = SB.scored(store, endpoint, start, end, variant=variant, version=version)
    if len(got) == 0:
        raise EstimateError("no decisions in this window", "window", 422)
    variants = []
    groups = got.groups()
    for vname, mname, ver in groups:
        # one variant and version: the window read is already theirs
        mine = got if len({(v, x) for v, _, x in groups}) == 1 else None
        entry = estimate_version(
            store, endpoint, mname, ver, start, end, ref, variant=vname, window=mine
        )
        variants.append({"variant": vname, **entry})
    return {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end), "rows": len(got)},
        "variants": variants,
    }
