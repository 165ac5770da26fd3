"""The server's background work lives exactly as long as its lifespan."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app


def _ours(before: set[threading.Thread]) -> list[str]:
    # the access log's writer is one per process, not the gateway's
    return sorted(
        t.name
        for t in threading.enumerate()
        if t not in before and t.name.startswith("chronoml-") and t.name != "chronoml-access-log"
    )


def test_a_second_start_of_a_serving_app_is_refused(cm: Any, settings: Any) -> None:
    before = set(threading.enumerate())
    app = create_app(settings, cm)
    gw = app.state.gateway
    with admin_client(app) as c:
        outbox, monitor = gw.outbox, gw.monitor
        assert outbox is not None and outbox.running
        with pytest.raises(RuntimeError, match="already serving"), TestClient(app):
            pass
        # the running workers are still the ones the first start made
        assert gw.outbox is outbox and gw.monitor is monitor and outbox.running
        assert c.get("/ping").status_code == 200
    assert not outbox.running
    assert _ours(before) == []  # nothing the server started outlives it


def test_a_stopped_app_starts_again_and_stops_everything(cm: Any, settings: Any) -> None:
    before = set(threading.enumerate())
    app = create_app(settings, cm)
    for _ in range(2):
        with admin_client(app) as c:
            assert c.get("/ping").status_code == 200
        assert _ours(before) == []


def test_a_start_that_fails_half_way_stops_what_it_began(cm: Any, settings: Any) -> None:
    before = set(threading.enumerate())
    app = create_app(settings, cm)
    gw = app.state.gateway

    def broken() -> None:  # the last step of a start, after every worker is running
        raise RuntimeError("a start hook failed")

    gw.on_start.append(broken)
    with pytest.raises(RuntimeError, match="a start hook failed"), TestClient(app):
        pass
    assert _ours(before) == []  # the workers it had started are stopped again
    assert not gw.serving
    gw.on_start.remove(broken)
    with admin_client(app) as c:  # and it can start cleanly afterwards
        assert c.get("/ping").status_code == 200
    assert _ours(before) == []
