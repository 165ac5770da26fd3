"""The endpoint pages' start-up build: every endpoint built once, a page waits for it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.gateway.views.ui_warm import Warmer


def test_a_page_during_the_build_waits_for_it_and_a_failure_stops_nothing() -> None:
    order: list[str] = []
    release = threading.Event()
    building = threading.Event()

    def build(e: str) -> None:
        if e == "broken":
            raise RuntimeError("no such table")
        building.set()
        release.wait(30)
        order.append(f"built {e}")

    w = Warmer(lambda: ["broken", "churn", "fraud"], build)
    w.start()
    assert building.wait(30)

    def page() -> None:
        with w.lock("churn"):
            order.append("page churn")

    viewer = threading.Thread(target=page)
    viewer.start()
    viewer.join(0.2)
    assert order == []  # the page is waiting for the build of its endpoint
    release.set()
    viewer.join(30)
    assert w.done.wait(30) and w.took_s is not None
    w.stop()
    assert order[0] == "built churn" and set(order) == {"built churn", "page churn", "built fraud"}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_server_builds_its_endpoints_at_start(cm: Any, settings: Any, models: Any) -> None:
    app = create_app(settings, cm)
    with admin_client(app) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200
    again = create_app(settings, cm)
    warmer = again.state.gateway.ui_warmer
    assert warmer is not None and not warmer.done.is_set()  # nothing runs before the start
    with admin_client(again) as c:
        assert warmer.done.wait(60) and warmer.took_s is not None
        assert c.get("/ui/endpoints/cancer").status_code == 200
