"""A model that crashes or hangs while loading is refused, and the process that asked lives on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pytest

from chronoml.domain.ledger import ModelRef
from chronoml.errors import Refused
from chronoml.registry.probe import check_format, flavors, probe

REF = ModelRef(name="evil", version="1", run_id="r", artifact_digest="sha256:" + "0" * 64)


class Crashes(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # what a hostile pickle may do on load

    def predict(self, context, model_input):  # type: ignore[no-untyped-def]  # mlflow reads hints
        return model_input


class Hangs(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        time.sleep(3600)

    def predict(self, context, model_input):  # type: ignore[no-untyped-def]  # mlflow reads hints
        return model_input


class Fine(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context, model_input):  # type: ignore[no-untyped-def]  # mlflow reads hints
        return model_input


def _saved(tmp_path: Path, model: Any, name: str) -> Path:
    path = tmp_path / name
    mlflow.pyfunc.save_model(str(path), python_model=model, pip_requirements=["mlflow"])
    return path


def test_a_model_that_kills_its_loader_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path, Crashes(), "crashes")
    with pytest.raises(Refused, match="died of signal 9"):
        probe(REF, path)
    assert os.getpid()  # still here


def test_a_model_that_hangs_while_loading_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path, Hangs(), "hangs")
    with pytest.raises(Refused, match="did not finish loading"):
        probe(REF, path, timeout_s=3)


def test_a_model_that_loads_passes(tmp_path: Path) -> None:
    probe(REF, _saved(tmp_path, Fine(), "fine"))


def test_model_formats_refuse_pickled_flavors(tmp_path: Path) -> None:
    path = _saved(tmp_path, Fine(), "fine")
    assert flavors(path) == ["python_function"]
    check_format(path, ())  # no list: any
    with pytest.raises(Refused, match="--model-formats") as err:
        check_format(path, ("lightgbm", "onnx"))
    assert err.value.field == "model_uri"
    check_format(path, ("python_function",))
