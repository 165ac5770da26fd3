"""Running the app: one process or several workers under uvicorn, or a server in a thread."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette

from chronoml.gateway.access_log import AccessLines
from chronoml.gateway.app import create_app
from chronoml.registry import configure
from chronoml.service import Chronoml
from chronoml.settings import Settings


def access_lines(enabled: bool) -> None:
    """Send the access log (one JSON line per request) to standard error, or turn it off."""
    log = logging.getLogger("chronoml.access")
    log.propagate = False
    log.handlers.clear()
    if enabled:
        try:
            sys.stderr.flush()  # what was written before goes first
            handler: logging.Handler = AccessLines(sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):  # standard error is not a file
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.CRITICAL + 1)


def load_lines() -> None:
    """Send the model loads (which call each model is served with, and why) to standard
    error."""
    log = logging.getLogger("chronoml.live")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)


def serve(
    cm: Chronoml, host: str, port: int, log_level: str, workers: int = 1, access: bool = True
) -> None:
    """Serve until interrupted: in this process, or in ``workers`` processes of their own."""
    configure(cm.settings)
    access_lines(access)
    load_lines()
    os.environ["CHRONOML_ACCESS_LOG"] = "1" if access else "0"
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(frozen_after_start(create_app(cm.settings, cm)), **common)
        return
    # each worker process builds its own app from the same settings
    settings_to_env(cm.settings)
    cm.close()
    # a worker loading its models answers the supervisor's pings late: give it time
    # rather than restarting it in a loop on a busy machine
    uvicorn.run(
        "chronoml.gateway.server:worker_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=60,
        **common,
    )


def frozen_after_start(app: Starlette) -> Starlette:
    """``app`` whose start-up ends by moving every object alive then (the libraries, the
    models) out of the garbage collector's view.

    They live as long as the server, and a full collection would otherwise walk all of
    them: 150-450 ms with every request in flight waiting. Only the server's own process
    does this (the test suite builds many apps in one process).
    """
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[Any]:
        async with inner(a) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app


class BackgroundServer:
    """The app served from a thread of this process (the demo talks to it over HTTP)."""

    def __init__(self, cm: Chronoml, host: str, port: int) -> None:
        app = create_app(cm.settings, cm)
        self.app = app
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning")
        )
        self._thread = threading.Thread(
            target=self._server.run, name="chronoml-server", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def wait(self) -> None:
        """Until the server stops (Ctrl-C or SIGTERM)."""
        self._thread.join()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)


_SETTINGS_ENV = "CHRONOML_SERVER_SETTINGS"


def settings_to_env(settings: Settings) -> None:
    """Hand the server's settings to its worker processes (they inherit the environment)."""
    values = {k: str(v) if k == "home" else v for k, v in dataclasses.asdict(settings).items()}
    os.environ[_SETTINGS_ENV] = orjson.dumps(values).decode()


def worker_app() -> Starlette:
    """The app of one ``chronoml server --workers N`` process (an ASGI factory)."""
    values = orjson.loads(os.environ[_SETTINGS_ENV])
    values["home"] = Path(values["home"])
    settings = Settings(**values)
    configure(settings)
    access_lines(os.environ.get("CHRONOML_ACCESS_LOG", "1") == "1")
    load_lines()
    return frozen_after_start(create_app(settings))
