"""The ASGI app: REST API, prediction gateway and dashboard.

Built by :func:`create_app` from one :class:`~chronoml.settings.Settings`;
nothing happens at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.gateway import v2
from chronoml.gateway.access import guard_all
from chronoml.gateway.fast import GatewayApp
from chronoml.gateway.gateway import Gateway
from chronoml.gateway.views import alerts as alert_views
from chronoml.gateway.views import audit as audit_views
from chronoml.gateway.views import endpoints as endpoint_views
from chronoml.gateway.views import explain as explain_views
from chronoml.gateway.views import fairness as fairness_views
from chronoml.gateway.views import loop as loop_views
from chronoml.gateway.views import monitor as monitor_views
from chronoml.gateway.views import privacy as privacy_views
from chronoml.gateway.views import snapshots as snapshot_views
from chronoml.gateway.views import tokens as token_views
from chronoml.gateway.views import ui as ui_views
from chronoml.service import Chronoml
from chronoml.settings import Settings

__all__ = ["Gateway", "create_app"]


def create_app(settings: Settings, cm: Chronoml | None = None) -> Starlette:
    """Build the ASGI app. The store must be migrated (``chronoml db upgrade``)."""
    chron = cm or Chronoml.open(settings)
    gw = Gateway(chron, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(gw.start)
        try:
            yield
        finally:
            await run_in_threadpool(gw.stop)

    def r(path: str, fn: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
        return Route(path, fn, methods=methods)

    routes = [
        r("/v1/endpoints/{endpoint}/predict", gw.predict, ["POST"]),
        r("/invocations", gw.invocations, ["POST"]),
        r("/ping", gw.ping, ["GET"]),
        *v2.routes(gw),
        *endpoint_views.routes(gw),
        *monitor_views.routes(gw),
        *alert_views.routes(gw),
        *explain_views.routes(gw),
        *loop_views.routes(gw),
        *token_views.routes(gw),
        *audit_views.routes(gw),
        *snapshot_views.routes(gw),
        *privacy_views.routes(gw),
        *fairness_views.routes(gw),
        *ui_views.routes(gw),
    ]
    app = GatewayApp(gw, routes=guard_all(gw.access, routes), lifespan=lifespan)
    app.state.gateway = gw
    return app
