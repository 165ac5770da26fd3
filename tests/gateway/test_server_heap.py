"""The served app leaves what it holds once started out of later garbage collections,
and still collects what is made after."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from starlette.testclient import TestClient

from chronoml.gateway.app import create_app
from chronoml.gateway.server import frozen_after_start


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_served_app_freezes_its_heap_once_started(cm: Any, settings: Any) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = frozen_after_start(create_app(settings, cm))
    try:
        with TestClient(app, base_url="http://127.0.0.1") as c:
            assert c.get("/health").status_code == 200
            assert gc.get_freeze_count() > 0
            # a cycle made while serving is still found and freed
            made = _Node()
            gone = weakref.ref(made)
            del made
            gc.collect()
            assert gone() is None
    finally:
        gc.unfreeze()


def test_an_app_built_for_tests_is_not_frozen(cm: Any, settings: Any) -> None:
    gc.unfreeze()
    with TestClient(create_app(settings, cm), base_url="http://127.0.0.1") as c:
        assert c.get("/health").status_code == 200
        assert gc.get_freeze_count() == 0
