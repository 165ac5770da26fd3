"""The multivariate section of a drift report: PCA reconstruction error of the window,
against a reconstruction fitted on the version's training snapshot.

A shift in the joint distribution of the inputs that leaves every marginal as
it was (two features that stop moving together) passes every per-feature test;
the reconstruction error of a PCA fitted on the training data catches it. The
fit costs a read of the snapshot, so it is kept per artifact (a few at a time).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from chronoml.domain.ledger import ModelRef
from chronoml.domain.snapshot import SnapshotError
from chronoml.fairness.multivariate import (
    DriftInputError,
    ReconstructionModel,
    fit_reconstruction,
    reconstruction_drift,
)
from chronoml.store import snapshots
from chronoml.store.database import Store

_CACHE_SIZE = 8
_fitted: OrderedDict[str, ReconstructionModel | str] = OrderedDict()
_lock = threading.Lock()


def _fit(store: Store, ref: ModelRef, columns: list[str]) -> ReconstructionModel | str:
    """The reconstruction of ``ref``'s training snapshot over ``columns``, or why there is none."""
    key = f"{ref.artifact_digest}:{','.join(columns)}"
    with _lock:
        if key in _fitted:
            _fitted.move_to_end(key)
            return _fitted[key]
    got: ReconstructionModel | str
    info = ref.data_snapshot
    snap = store.get_snapshot(str(info["id"])) if info else None
    if snap is None:
        got = "the version's training snapshot is not in this store"
    else:
        try:
            df = snapshots.load(snap)
            usable = [
                c
                for c in columns
                if c in df.columns
                and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
            ]
            got = fit_reconstruction(df, features=usable)
        except (SnapshotError, DriftInputError) as exc:
            got = str(exc)
    with _lock:
        _fitted[key] = got
        while len(_fitted) > _CACHE_SIZE:
            _fitted.popitem(last=False)
    return got


def section(
    store: Store, ref: ModelRef, current: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, Any]:
    """The ``multivariate`` entry of a variant's drift report."""
    numeric = [c for c, v in current.items() if np.asarray(v).dtype.kind in "fiub" and len(v) > 0]
    if len(numeric) < 2:
        return {"status": "skipped", "reason": "fewer than two numeric inputs in this window"}
    model = _fit(store, ref, sorted(numeric))
    if isinstance(model, str):
        return {"status": "skipped", "reason": model}
    frame = pd.DataFrame({c: np.asarray(current[c], dtype=float) for c in model.features})
    try:
        report = reconstruction_drift(model, frame)
    except DriftInputError as exc:
        return {"status": "skipped", "reason": exc.message}
    [w] = report.windows
    return {"status": "ok", **report.to_dict(), **w.to_dict()}
