"""The ASGI app: REST API, prediction gateway and dashboard.

Built by :func:`create_app` from one :class:`~chronoml.settings.Settings`;
nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chronoml.domain import codec, routing
from chronoml.errors import InvalidInput, StoreError
from chronoml.gateway import batching, inputs
from chronoml.gateway.live import Live, LiveEndpoint
from chronoml.gateway.log import DecisionLog
from chronoml.gateway.metrics import Metrics
from chronoml.gateway.views import explain as explain_views
from chronoml.registry.models import LoadedModel
from chronoml.service import Chronoml, NotFound, Refused, event_dict
from chronoml.settings import Settings
from chronoml.store import ledger as SL
from chronoml.timeutil import now_us, parse_time

log = logging.getLogger("chronoml.gateway")


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_JSON_OPTIONS)


def error_body(status: int, code: str, message: str, field: str | None = None) -> tuple[int, bytes]:
    """An error's status and JSON body: ``{"error": {"code", "message", "field"}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return status, orjson.dumps({"error": body}, option=_JSON_OPTIONS)


def error(status: int, code: str, message: str, field: str | None = None) -> JSON:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSON({"error": body}, status_code=status)


class Gateway:
    """Request handlers over one Chronoml, its live table and its decision log."""

    def __init__(self, cm: Chronoml, settings: Settings) -> None:
        self.cm = cm
        self.settings = settings
        self.metrics = Metrics()
        self.live = Live(cm.store, cm.registry)
        self.log: DecisionLog | None = None
        self._batchers: dict[tuple[str, str, str], batching.Batcher] = {}
        self.monitor: Any = None
        self.alerts: Any = None  # an alert engine; set before start() to evaluate rules
        self.outbox: Any = None  # delivers alert webhooks while the server runs
        self.jobs: Any = None  # advances retraining jobs while the server runs

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        # import the model loaders now, not on the first deploy: a change made
        # elsewhere must go live here within a second
        from chronoml.registry.models import warm_up

        warm_up()

        # Threads hand work to each other on every batch (loop -> model -> log ->
        # loop); a thread waking up waits for the GIL up to this interval, which
        # would otherwise add its default 5 ms to a commit's latency. Shorter
        # than 2 ms costs more in forced switches than it saves in waiting
        # (measured with bench/serving: 0.5 ms gave 5-15% fewer requests a second).
        sys.setswitchinterval(0.002)
        self.log = DecisionLog(self.cm.store, on_commit=self.metrics.observe_commit)
        from chronoml.gateway.canary import Canaries

        self.metrics.listener = Canaries(self.cm, self.live, self.metrics.observe_rollback)
        self.live.refresh()
        self.live.start(self.settings.poll_interval_s)
        from chronoml.monitor.alerts import AlertEngine
        from chronoml.monitor.outbox import Outbox

        self.outbox = Outbox(self.cm.store)
        self.outbox.start()
        if self.alerts is None:
            self.alerts = AlertEngine(self.cm.store, on_enqueue=self.outbox.wake)
        from chronoml.monitor.scheduler import Monitor

        self.monitor = Monitor(
            self.cm,
            interval_s=self.settings.monitor_interval_s,
            window_us=self.settings.monitor_window_us,
            mirror_to_mlflow=self.settings.monitor_mlflow,
            alerts=self.alerts,
            error_counts=self.metrics.take_counts,
        )
        self.monitor.start()
        from chronoml.retrain.runner import JobRunner

        self.jobs = JobRunner(self.cm, interval_s=self.settings.retrain_interval_s)
        self.jobs.start()

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.outbox is not None:
            self.outbox.stop()
        self.live.stop()
        for b in self._batchers.values():
            b.close()
        if self.log is not None:
            self.log.close()

    # --- helpers -----------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        token = self.settings.token
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    def _actor(self, request: Request) -> str:
        who = request.headers.get("x-chronoml-actor")
        host = request.client.host if request.client else "unknown"
        return f"{who or 'api'}@{host}"

    async def _body(self, request: Request) -> bytes | JSON:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, "body_too_large", f"request body over {limit} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, "body_too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # --- predict -----------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        return await self.predict_on(request, request.path_params["endpoint"])

    async def invocations(self, request: Request) -> Response:
        """MLflow's scoring URL, answered by the configured default endpoint."""
        endpoint = self.settings.default_endpoint
        if endpoint is None:
            status, payload = self.no_default_endpoint()
            return Response(payload, status_code=status, media_type=JSON.media_type)
        return await self.predict_on(request, endpoint)

    def no_default_endpoint(self) -> tuple[int, bytes]:
        return error_body(
            404,
            "no_default_endpoint",
            "POST /invocations needs a default endpoint: start the server with "
            "--default-endpoint NAME, or use /v1/endpoints/{endpoint}/predict",
        )

    async def ping(self, request: Request) -> Response:
        return JSON({"status": "ok"})

    async def predict_on(self, request: Request, endpoint: str) -> Response:
        """Answer one scoring request on ``endpoint`` (MLflow formats)."""
        arrived = time.perf_counter()
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        unit = request.headers.get("x-chronoml-unit")
        explain = request.query_params.get("explain")
        status, payload = await self.answer(endpoint, body, unit, arrived, explain)
        return Response(payload, status_code=status, media_type=JSON.media_type)

    async def answer(
        self,
        endpoint: str,
        body: bytes,
        unit: str | None,
        arrived: float,
        explain: str | None = None,
    ) -> tuple[int, bytes]:
        """The status and JSON body answering a scoring request on ``endpoint``.

        Shared by the routed view and the raw ASGI path (:mod:`chronoml.gateway.fast`);
        ``explain`` is the value of ``?explain=``, None when the query has none.
        """
        live = self.live.get(endpoint)
        if live is None:
            exists = await run_in_threadpool(SL.exists, self.cm.store, endpoint)
            if exists:
                return error_body(409, "nothing_live", f"endpoint {endpoint!r} has nothing live")
            return error_body(404, "unknown_endpoint", f"unknown endpoint {endpoint!r}")
        try:
            variant = live.router.route(endpoint, unit)
        except routing.NothingAnswers:
            return error_body(
                409,
                "nothing_answers",
                f"endpoint {endpoint!r} has only shadow variants: nothing answers",
            )
        model = live.models[variant.name]
        try:
            mat, frame, n = self._rows(body, model)
        except InvalidInput as exc:
            return error_body(exc.status, "bad_input", exc.message, exc.field)
        if n > self.settings.max_rows:
            return error_body(
                413, "too_many_rows", f"{n} rows; at most {self.settings.max_rows} per request"
            )
        # ?explain=true: explained before anything is logged (an unexplainable model logs nothing)
        explained = None
        if explain is not None:
            got = await explain_views.inline(self, explain, model, mat, frame)
            if isinstance(got, Response):
                return got.status_code, bytes(got.body)
            explained = got
        ts = now_us()
        labels = (endpoint, variant.name, model.ref.version)
        try:
            res = await self.decide(
                live, variant.name, model, mat, frame, n, unit, ts, arrived,
                explain=explain_views.log_rows(explained),
            )  # fmt: skip
        except StoreError as exc:
            self.metrics.count(*labels, 503)
            return error_body(503, "store_unavailable", f"decision log unavailable: {exc}")
        except batching.Overloaded as exc:
            self.metrics.count(*labels, 503)
            return error_body(503, "overloaded", f"too many requests waiting: {exc}")
        except TimeoutError:
            self.metrics.count(*labels, 504)
            return error_body(
                504,
                "model_timeout",
                f"model {model.ref.name} v{model.ref.version} did not answer within "
                f"{self.settings.predict_timeout_s:g} s",
            )
        except batching.ModelFailed as exc:
            self.metrics.count(*labels, 500)
            return error_body(
                500, "model_error", f"model {model.ref.name} v{model.ref.version} failed: {exc}"
            )
        self.metrics.count(*labels, 200)
        self.metrics.observe_latency(*labels, time.perf_counter() - arrived)
        if live.shadows:
            self._shadow(live, body, model, mat, frame, n, unit, ts)
        answer: dict[str, Any] = {
            "predictions": res.outputs,
            "decision_ids": res.ids,
            "model": {"name": model.ref.name, "version": model.ref.version},
            "variant": variant.name,
        }
        if explained is not None:
            answer.update(explain_views.response(res.ids, explained))
        return 200, orjson.dumps(answer, option=_JSON_OPTIONS)

    def _rows(
        self, body: bytes, model: LoadedModel
    ) -> tuple[np.ndarray[Any, Any] | None, pd.DataFrame | None, int]:
        """The request's rows for ``model``: a float matrix when possible, else a frame."""
        mat = inputs.float_matrix(body, model.schema)
        if mat is not None:
            return mat, None, int(mat.shape[0])
        _fmt, cols, n = inputs.parse_body(body)
        if n > self.settings.max_rows:
            return None, None, n
        return None, codec.conform(cols, model.schema), n

    def _batcher(self, endpoint: str, variant: str, model: LoadedModel) -> batching.Batcher:
        key = (endpoint, variant, model.ref.artifact_digest)
        b = self._batchers.get(key)
        if b is None:
            assert self.log is not None
            b = batching.Batcher(
                endpoint,
                variant,
                model,
                self.log,
                self.cm.layouts.ensure,
                batching.BatchSettings(
                    max_batch_rows=self.settings.max_batch_rows,
                    max_wait_s=self.settings.max_wait_ms / 1000,
                    max_queue_rows=self.settings.max_queue_rows,
                ),
                on_batch=self.metrics.observe_batch,
            )
            self._batchers[key] = b
        return b

    async def decide(
        self,
        live: LiveEndpoint,
        variant: str,
        model: LoadedModel,
        mat: np.ndarray[Any, Any] | None,
        frame: pd.DataFrame | None,
        n: int,
        unit: str | None,
        ts: int,
        arrived: float,
        *,
        shadow: bool = False,
        explain: Callable[[list[str]], Sequence[tuple[Any, ...]]] | None = None,
    ) -> batching.Result:
        """Predict through the variant's batcher; returns once the decisions are committed
        (with ``explain``'s rows for their ids, in the same transaction)."""
        job = batching.Job(
            n=n,
            mat=mat,
            frame=frame,
            unit=unit,
            ts=ts,
            t0=arrived,
            event_seq=live.state.seq or 0,
            shadow=shadow,
            fut=asyncio.get_running_loop().create_future(),
            explain=explain,
        )
        fut = self._batcher(live.state.endpoint, variant, model).submit(job)
        # one timer rather than wait_for's extra future and callbacks per request
        timer = asyncio.get_running_loop().call_later(self.settings.predict_timeout_s, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    def _shadow(
        self,
        live: LiveEndpoint,
        body: bytes,
        answered_by: LoadedModel,
        mat: np.ndarray[Any, Any] | None,
        frame: pd.DataFrame | None,
        n: int,
        unit: str | None,
        ts: int,
    ) -> None:
        """Send a copy to each shadow variant; never awaited by the request."""
        for v in live.shadows:
            model = live.models[v.name]
            m, f = mat, frame
            if model.schema != answered_by.schema:
                try:
                    m, f, n = self._rows(body, model)
                except InvalidInput as exc:
                    log.warning("shadow %s skipped a request: %s", v.name, exc.message)
                    continue
            job = batching.Job(
                n=n,
                mat=m,
                frame=f,
                unit=unit,
                ts=ts,
                t0=time.perf_counter(),
                event_seq=live.state.seq or 0,
                shadow=True,
                fut=asyncio.get_running_loop().create_future(),
            )
            try:
                self._batcher(live.state.endpoint, v.name, model).submit(job)
            except batching.Overloaded:
                self.metrics.shadow_dropped.labels(live.state.endpoint, v.name).inc()
                continue
            job.fut.add_done_callback(self._shadow_done(live.state.endpoint, v.name))

    def _shadow_done(self, endpoint: str, variant: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                log.warning("shadow %s on %s failed: %s", variant, endpoint, exc)

        return done

    # --- endpoints ---------------------------------------------------------

    async def list_endpoints(self, request: Request) -> Response:
        return JSON({"endpoints": await run_in_threadpool(self.cm.endpoints)})

    async def get_endpoint(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        at = request.query_params.get("at")
        try:
            t = parse_time(at) if at else None
        except ValueError as exc:
            return error(400, "bad_time", str(exc), "at")
        return await self._call(self.cm.status, endpoint, t)

    async def drift(self, request: Request) -> Response:
        from chronoml.gateway.views.monitor import window_args
        from chronoml.monitor.reports import parse_overrides, to_html

        q = request.query_params
        try:
            kw = window_args(request)
            kw["overrides"] = parse_overrides(
                [m.replace(":", "=", 1) for m in q.getlist("method")],
                [t.replace(":", "=", 1) for t in q.getlist("threshold")],
            )
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        endpoint = request.path_params["endpoint"]
        try:
            report = await run_in_threadpool(lambda: self.cm.drift(endpoint, **kw))
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(400, "bad_query", exc.message, exc.field)
        if q.get("format") == "html":
            return HTMLResponse(to_html(report))
        return JSON(report)

    async def history(self, request: Request) -> Response:
        return await self._call(self.cm.history, request.path_params["endpoint"])

    async def put_endpoint(self, request: Request) -> Response:
        if not self._authorised(request):
            return error(401, "unauthorised", "this server needs a bearer token for changes")
        endpoint = request.path_params["endpoint"]
        try:
            spec = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(spec, dict):
            return error(400, "bad_body", "body must be a JSON object")
        actor = self._actor(request)
        if "weights" in spec:
            weights = spec["weights"]
            if not isinstance(weights, dict):
                return error(422, "bad_input", "weights must map variant to percent", "weights")
            return await self._change(self.cm.set_weights, endpoint, weights, actor=actor)
        if "model_uri" not in spec:
            return error(
                422, "bad_input", "give model_uri (deploy) or weights (split)", "model_uri"
            )
        allowed = {"model_uri", "weight", "shadow", "variant", "allow_unlinked_data", "canary"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            return error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
        weight = spec.get("weight")
        guardrails = None
        if spec.get("canary") is not None:
            # "canary": 5, or {"percent": 5, "max_error_rate": .., "max_p99_ms": .., "min_requests": ..}
            from chronoml.domain.canary import Guardrails

            c = spec["canary"]
            c = c if isinstance(c, dict) else {"percent": c}
            try:
                guardrails = Guardrails.from_dict(c)
            except (TypeError, ValueError) as exc:
                return error(422, "bad_input", f"canary: {exc}", "canary")
            if weight is not None:
                return error(422, "bad_input", "give canary or weight, not both", "canary")
            weight = c.get("percent")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
            return error(422, "bad_input", "weight must be a number of percent", "weight")
        return await self._change(
            self.cm.deploy,
            endpoint,
            str(spec["model_uri"]),
            weight=weight,
            shadow=bool(spec.get("shadow", False)),
            variant=spec.get("variant"),
            allow_unlinked_data=bool(spec.get("allow_unlinked_data", False)),
            actor=actor,
            canary=guardrails,
        )

    async def rollback(self, request: Request) -> Response:
        if not self._authorised(request):
            return error(401, "unauthorised", "this server needs a bearer token for changes")
        endpoint = request.path_params["endpoint"]
        reason = request.query_params.get("reason")
        return await self._change(self.cm.rollback, endpoint, reason, actor=self._actor(request))

    async def retire(self, request: Request) -> Response:
        if not self._authorised(request):
            return error(401, "unauthorised", "this server needs a bearer token for changes")
        endpoint = request.path_params["endpoint"]
        return await self._change(self.cm.retire, endpoint, actor=self._actor(request))

    async def _change(
        self, fn: Callable[..., Any], endpoint: str, *args: Any, **kw: Any
    ) -> Response:
        try:
            ev = await run_in_threadpool(fn, endpoint, *args, **kw)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(422, "refused", exc.message, exc.field)
        # make the change live here before answering; other replicas follow by polling
        await run_in_threadpool(self.live.refresh)
        status = await run_in_threadpool(self.cm.status, endpoint)
        from chronoml.domain.ledger import event_summary

        return JSON({"event": {**event_dict(ev), "summary": event_summary(ev)}, "status": status})

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Response:
        try:
            return JSON(await run_in_threadpool(fn, *args))
        except NotFound as exc:
            return error(404, "not_found", str(exc))

    # --- decisions and audit ----------------------------------------------

    async def decision(self, request: Request) -> Response:
        return await self._call(self.cm.decision, request.path_params["id"])

    async def verify(self, request: Request) -> Response:
        report = await run_in_threadpool(self.cm.verify)
        body = {
            "ok": report.ok,
            "events": report.events,
            "head": report.head,
            "first_bad_seq": report.first_bad_seq,
            "reason": report.reason,
        }
        return JSON(body, status_code=200 if report.ok else 409)

    async def health(self, request: Request) -> Response:
        return JSON(
            {"status": "ok", "endpoints": sorted(self.live.endpoints), "errors": self.live.errors}
        )

    async def metrics_view(self, request: Request) -> Response:
        if self.log is not None:
            self.metrics.queue_depth.set(self.log.depth)
        data, ctype = self.metrics.render()
        return Response(data, media_type=ctype)

    async def dashboard(self, request: Request) -> Response:
        from chronoml.gateway.views.dashboard import render

        html = await run_in_threadpool(render, self.cm)
        return HTMLResponse(html)


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def create_app(settings: Settings, cm: Chronoml | None = None) -> Starlette:
    """Build the ASGI app. The store must be migrated (``chronoml db upgrade``)."""
    from chronoml.gateway import v2

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
        r("/", gw.dashboard, ["GET"]),
        r("/health", gw.health, ["GET"]),
        r("/metrics", gw.metrics_view, ["GET"]),
        r("/v1/endpoints", gw.list_endpoints, ["GET"]),
        r("/v1/endpoints/{endpoint}", gw.get_endpoint, ["GET"]),
        r("/v1/endpoints/{endpoint}", gw.put_endpoint, ["PUT"]),
        r("/v1/endpoints/{endpoint}/history", gw.history, ["GET"]),
        r("/v1/endpoints/{endpoint}/drift", gw.drift, ["GET"]),
        r("/v1/endpoints/{endpoint}/predict", gw.predict, ["POST"]),
        r("/invocations", gw.invocations, ["POST"]),
        r("/ping", gw.ping, ["GET"]),
        *v2.routes(gw),
        r("/v1/endpoints/{endpoint}/rollback", gw.rollback, ["POST"]),
        r("/v1/endpoints/{endpoint}/retire", gw.retire, ["POST"]),
        r("/v1/decisions/{id}", gw.decision, ["GET"]),
        r("/v1/audit/verify", gw.verify, ["GET"]),
    ]
    from chronoml.gateway.views import monitor as monitor_views

    routes += monitor_views.routes(gw)
    from chronoml.gateway.views import alerts as alert_views

    routes += alert_views.routes(gw)
    routes += explain_views.routes(gw)
    from chronoml.gateway.views import loop as loop_views

    routes += loop_views.routes(gw)
    from chronoml.gateway.fast import GatewayApp

    app = GatewayApp(gw, routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app


_SETTINGS_ENV = "CHRONOML_SERVER_SETTINGS"


def settings_to_env(settings: Settings) -> None:
    """Hand the server's settings to its worker processes (they inherit the environment)."""
    import dataclasses
    import os

    values = {k: str(v) if k == "home" else v for k, v in dataclasses.asdict(settings).items()}
    os.environ[_SETTINGS_ENV] = orjson.dumps(values).decode()


def worker_app() -> Starlette:
    """The app of one ``chronoml server --workers N`` process (an ASGI factory)."""
    import os
    from pathlib import Path

    from chronoml.registry import configure

    values = orjson.loads(os.environ[_SETTINGS_ENV])
    values["home"] = Path(values["home"])
    settings = Settings(**values)
    configure(settings)
    return create_app(settings)
