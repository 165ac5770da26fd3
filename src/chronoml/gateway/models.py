"""Loading archived models for serving.

A model is loaded from chronoml's archived copy, whose digest is checked
against the ledger first, so what serves is byte for byte what was deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from chronoml.domain.ledger import ModelRef
from chronoml.gateway.inputs import Schema, schema_from_mlflow


@dataclass
class LoadedModel:
    """A deployed model ready to predict."""

    ref: ModelRef
    path: Path
    schema: Schema | None
    predict: Callable[[pd.DataFrame], Any]
    flavor: str
    raw: Any


def load_model(ref: ModelRef, path: Path) -> LoadedModel:
    """Load the MLflow model at ``path`` (already digest-checked by the caller)."""
    import mlflow.pyfunc

    # suppress_warnings skips MLflow's pip-requirements comparison (~0.4 s a load)
    pyfunc_model = mlflow.pyfunc.load_model(str(path), suppress_warnings=True)
    meta = pyfunc_model.metadata
    schema = schema_from_mlflow(meta.get_input_schema())
    loader = meta.flavors.get("python_function", {}).get("loader_module", "")
    predict: Callable[[pd.DataFrame], Any] = pyfunc_model.predict
    raw: Any = None
    flavor = loader.rsplit(".", 1)[-1] or "pyfunc"
    if loader == "mlflow.sklearn" and schema is not None:
        # Inputs were already checked against the signature; the sklearn
        # model's own predict is what the pyfunc wrapper would call, minus
        # its per-call schema enforcement.
        raw = pyfunc_model.get_raw_model()
        if hasattr(raw, "feature_names_in_"):
            predict = raw.predict
        else:
            # fitted on a bare array: give it one, as it was trained
            fitted_on_array = raw.predict
            predict = lambda df: fitted_on_array(df.to_numpy())  # noqa: E731
    return LoadedModel(ref=ref, path=path, schema=schema, predict=predict, flavor=flavor, raw=raw)


def warm_up() -> None:
    """Import the model loaders and common estimator modules ahead of the first deploy."""
    import importlib

    for name in (
        "mlflow.pyfunc",
        "mlflow.sklearn",
        "sklearn.pipeline",
        "sklearn.preprocessing",
        "sklearn.linear_model",
        "sklearn.ensemble",
        "sklearn.tree",
    ):
        try:
            importlib.import_module(name)
        except ImportError:  # a flavor that is not installed: nothing to warm
            continue
