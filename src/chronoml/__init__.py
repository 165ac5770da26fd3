"""chronoml: which model was live, trained on what, decided what, and why.

The public Python API::

    import chronoml, mlflow
    chronoml.setup_mlflow()                          # MLflow store inside CHRONOML_HOME
    snap = chronoml.snapshot(df, name="customers")   # Snapshot(id="sha256:...", ...)
    with mlflow.start_run():
        chronoml.log_snapshot(snap)
        mlflow.sklearn.log_model(model, name="model", registered_model_name="churn", ...)
    cm = chronoml.open()
    cm.deploy("churn", "models:/churn/1")
    cm.status("churn", at=chronoml.parse_time("2026-03-03T14:02"))
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chronoml.errors import ChronomlError, NotFound, Refused, StoreError
from chronoml.settings import Settings
from chronoml.timeutil import parse_time

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from chronoml.domain.snapshot import Snapshot, SnapshotError
    from chronoml.service import Chronoml
    from chronoml.training_sets import BuiltDataset

__version__ = "0.1.0"

__all__ = [
    "Chronoml",
    "ChronomlError",
    "NotFound",
    "Refused",
    "Settings",
    "Snapshot",
    "SnapshotError",
    "StoreError",
    "__version__",
    "build_dataset",
    "load_snapshot",
    "log_snapshot",
    "open",
    "parse_time",
    "setup_mlflow",
    "snapshot",
]


def open(settings: Settings | None = None) -> Chronoml:
    """Open chronoml on ``CHRONOML_HOME`` / ``CHRONOML_STORE`` (or ``settings``)."""
    # lazy: the store and the registry load only when chronoml is opened
    from chronoml.service import Chronoml

    return Chronoml.open(settings)


def snapshot(
    data: pd.DataFrame | str | os.PathLike[str], name: str, *, settings: Settings | None = None
) -> Snapshot:
    """Store an immutable copy of ``data`` (a DataFrame or CSV/Parquet path).

    Returns a :class:`Snapshot` whose id is ``sha256:`` over every value.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import snapshots

    cm = open(settings)
    try:
        return snapshots.take(cm.store, data, name, actor=cm.actor())
    finally:
        cm.close()


def build_dataset(
    labels: pd.DataFrame | str | os.PathLike[str],
    *,
    entity: str,
    time: str,
    features: Mapping[str, Any],
    name: str,
    prefix: bool = False,
    settings: Settings | None = None,
) -> BuiltDataset:
    """Join labels to feature tables as of each label's time; store it as snapshot ``name``.

    ``labels`` and each value of ``features`` are a snapshot reference (``sha256:...``,
    ``NAME@latest``, ``NAME@TIME``), a CSV/Parquet path or a DataFrame; a feature value
    may also be a mapping with ``source`` and ``ttl`` (``"30d"``), ``created_at``,
    ``entity`` or ``time``. Each label row gets, per table, the latest row of its entity
    with ``t - ttl <= time <= t`` (and ``created_at <= t``). Every reference is resolved
    and every column checked before anything is written.
    """
    # lazy: the join engine (DuckDB) loads only when a training set is built
    from chronoml.training_sets import build, feature_input

    cm = open(settings)
    try:
        return build(
            cm,
            labels,
            entity=entity,
            time=time,
            features=[feature_input(k, v) for k, v in features.items()],
            name=name,
            prefix=prefix,
        )
    finally:
        cm.close()


def load_snapshot(ref: str, *, settings: Settings | None = None) -> pd.DataFrame:
    """The data of a snapshot, its hash checked on read.

    ``ref`` is an id (``sha256:...``), ``NAME@latest`` or ``NAME@TIME`` (the latest
    snapshot of that name taken at or before TIME). Inside an MLflow run, the run is
    linked to the snapshot (once), as :func:`log_snapshot` does.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import snapshots

    cm = open(settings)
    try:
        return snapshots.load(cm.store, ref)
    finally:
        cm.close()


def log_snapshot(snap: Snapshot) -> None:
    """Link the active MLflow run, and the versions it registers, to ``snap``."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.registry import log_snapshot as _log

    _log(snap)


def setup_mlflow(experiment: str = "chronoml", settings: Settings | None = None) -> str:
    """Point ``mlflow`` at chronoml's MLflow store and set ``experiment``; returns the URI."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.registry import setup_mlflow as _setup

    return _setup(experiment, settings)


def __getattr__(name: str) -> Any:
    # pandas and numpy load only when a snapshot is touched: `chronoml --help`
    # and other light commands stay fast
    if name in ("Snapshot", "SnapshotError"):
        # lazy: pandas loads only when a snapshot is touched
        from chronoml.domain import snapshot

        return getattr(snapshot, name)
    if name == "Chronoml":
        # lazy: the store and the registry load only when chronoml is opened
        from chronoml.service import Chronoml

        return Chronoml
    raise AttributeError(f"module 'chronoml' has no attribute {name!r}")
