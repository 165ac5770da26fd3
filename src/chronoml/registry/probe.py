"""Before a model goes live: which formats it is stored in, and a first load in a child process.

Loading a pickled model (scikit-learn, a cloudpickle pyfunc) runs code the
model's author chose. :func:`check_format` refuses flavors a server was not
told to accept (``--model-formats``); :func:`probe` loads the model in a
child process first (forked; a fresh interpreter for LightGBM and XGBoost), so a
model that crashes or hangs while loading takes down the child, never the gateway.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from chronoml.domain.ledger import ModelRef
from chronoml.errors import Refused
from chronoml.registry.models import load_model

# flavors whose files are unpickled when loaded
PICKLED = frozenset({"sklearn", "python_function", "pytorch", "statsmodels", "spark"})


def flavors(path: Path) -> list[str]:
    """The flavors an MLflow model directory names in its MLmodel file."""
    try:
        meta = yaml.safe_load((path / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Refused(f"{path} is not an MLflow model: {exc}", "model_uri") from None
    found = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(found, dict):
        raise Refused(f"{path}/MLmodel names no flavors", "model_uri")
    return sorted(str(f) for f in found)


def check_format(path: Path, allowed: Iterable[str]) -> None:
    """Refuse a model none of whose own flavors is allowed (empty ``allowed``: any)."""
    allow = {a.strip().lower() for a in allowed if a.strip()}
    if not allow:
        return
    own = [f for f in flavors(path) if f != "python_function"] or ["python_function"]
    if not any(f in allow for f in own):
        raise Refused(
            f"the model is stored as {', '.join(own)}; this server loads only "
            f"{', '.join(sorted(allow))} (--model-formats)",
            "model_uri",
        )


def _load_in_child(ref: ModelRef, path: str) -> None:
    # the child's only job: load (and so unpickle) the model, then leave: no probe calls
    try:
        load_model(ref, Path(path), calls=False)
    except BaseException:
        os._exit(1)
    os._exit(0)


# flavors whose libraries load and predict on OpenMP threads: a child forked from a
# thread that already ran them inherits a thread pool without its threads and hangs, so
# these are checked in a fresh interpreter instead (slower to start, nothing inherited)
_OPENMP = frozenset({"lightgbm", "xgboost"})


def probe(ref: ModelRef, path: Path, timeout_s: float = 120.0) -> None:
    """Load the model in a child process; refuse it if the child fails, dies or hangs."""
    ctx = (
        multiprocessing.get_context("spawn")
        if _OPENMP.intersection(flavors(path))
        else multiprocessing.get_context("fork")
    )
    child = ctx.Process(target=_load_in_child, args=(ref, str(path)), daemon=True)
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        child.join(5)
        raise Refused(
            f"{ref.name} v{ref.version} did not finish loading within {timeout_s:g} s", "model_uri"
        )
    if child.exitcode != 0:
        how = (
            f"died of signal {-child.exitcode}"
            if child.exitcode and child.exitcode < 0
            else "failed"
        )
        raise Refused(f"{ref.name} v{ref.version} {how} while loading", "model_uri")
