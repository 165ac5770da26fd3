"""The child process of a callable entrypoint, and a helper for training code.

``python -m chronoml.retrain.entry module:function '{"data_version": ..., ...}'``
imports ``module`` (the working directory is on the import path) and calls
``function(**params)``. A non-zero exit (an exception) fails the job; the
traceback is in the job's log.

Training code (a callable or an MLflow Project's script) gets its data with
:func:`training_data`, and links what it registers as usual::

    from chronoml.retrain.entry import training_data

    def train(data_version: str) -> None:
        snap, df = training_data(data_version)
        with mlflow.start_run():
            chronoml.log_snapshot(snap)
            mlflow.sklearn.log_model(..., registered_model_name="churn")
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from chronoml.domain.snapshot import Snapshot
from chronoml.settings import Settings
from chronoml.store import snapshots
from chronoml.store.database import Store

if TYPE_CHECKING:
    import pandas as pd


def training_data(data_version: str | None = None) -> tuple[Snapshot, pd.DataFrame]:
    """The snapshot ``data_version`` (default: the job's, ``CHRONOML_SNAPSHOT_ID``) and its data.

    Reads chronoml's store named by ``CHRONOML_HOME`` / ``CHRONOML_STORE``,
    which the job sets for its entrypoint; the data is checked against its id.
    """

    sid = data_version or os.environ.get("CHRONOML_SNAPSHOT_ID")
    if not sid:
        raise RuntimeError("no data_version given and CHRONOML_SNAPSHOT_ID is not set")
    handed = os.environ.get("CHRONOML_SNAPSHOT")
    if handed:  # the job's own snapshot, handed over whole: no store to open
        record = json.loads(handed)
        if record["id"] == sid:
            handed_snap = Snapshot(
                id=record["id"],
                name=record["name"],
                rows=int(record["rows"]),
                created_at=int(record["created_at"]),
                columns=tuple((str(c), str(k)) for c, k in record["columns"]),
                path=record["path"],
            )
            return handed_snap, snapshots.load(handed_snap)
    settings = Settings.from_env()
    store = Store.open(settings.database_url, settings.home)
    try:
        snap = store.get_snapshot(sid)
    finally:
        store.close()
    if snap is None:
        raise RuntimeError(f"snapshot {sid} is not in the store at {settings.database_url}")
    return snap, snapshots.load(snap)


def snapshot_record(snap: Snapshot) -> dict[str, Any]:
    """What a job hands its training process of its snapshot (read back by :func:`training_data`)."""
    return {
        "id": snap.id,
        "name": snap.name,
        "rows": snap.rows,
        "created_at": snap.created_at,
        "columns": [list(c) for c in snap.columns],
        "path": snap.path,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(
            "usage: python -m chronoml.retrain.entry module:function PARAMS_JSON", file=sys.stderr
        )
        return 2
    target, raw = argv[1], argv[2]
    module_name, func_name = target.split(":", 1)
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        print(f"{target}: {module_name} has no function {func_name!r}", file=sys.stderr)
        return 2
    params = json.loads(raw)
    print(f"chronoml: calling {target}({', '.join(f'{k}={v!r}' for k, v in params.items())})")
    sys.stdout.flush()
    fn(**params)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
