"""The gateway: live endpoints, their batchers and the decision log, and the predict path.

A request's path: parse the body (a float matrix when the model takes only
doubles, a frame otherwise), route it to a variant, predict through that
variant's micro-batcher, log the decisions durably, answer.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from chronoml.archive import Archiver, target_from_settings
from chronoml.auth.access import reads_logger
from chronoml.domain import codec, privacy, routing
from chronoml.errors import ChronomlError, InvalidInput, StoreError
from chronoml.evidence.checkpoints import CheckpointWorker, signing_key
from chronoml.evidence.keys import KeyFileError, SigningKey
from chronoml.evidence.timestamps import Authority
from chronoml.gateway import access_log, batching, inputs
from chronoml.gateway.access import Access
from chronoml.gateway.canary import Canaries
from chronoml.gateway.live import Live, LiveEndpoint
from chronoml.gateway.log import DecisionLog
from chronoml.gateway.metrics import Metrics
from chronoml.gateway.responses import _JSON_OPTIONS, JSON, error, error_body
from chronoml.gateway.views import explain as explain_views
from chronoml.gateway.views.ui_warm import Warmer
from chronoml.monitor.alerts import AlertEngine
from chronoml.monitor.outbox import Outbox
from chronoml.monitor.scheduler import Monitor
from chronoml.privacy import secret
from chronoml.registry.models import LoadedModel, warm_up
from chronoml.retrain.runner import JobRunner
from chronoml.service import Chronoml
from chronoml.settings import Settings
from chronoml.store import archive as SA
from chronoml.store import ledger as SL
from chronoml.store import outcomes
from chronoml.store.partitions import PartitionWorker
from chronoml.timeutil import now_us

log = logging.getLogger("chronoml.gateway")


class Gateway:
    """Request handlers over one Chronoml, its live table and its decision log."""

    def __init__(self, cm: Chronoml, settings: Settings) -> None:
        self.cm = cm
        self.settings = settings
        self.metrics = Metrics()
        self.live = Live(cm.store, cm.registry, fast_calls=settings.fast_model_calls)
        self.access = Access(cm.store, settings)
        self.read_log = reads_logger(cm.store)
        self.log: DecisionLog | None = None
        self._batchers: dict[tuple[str, str, str], batching.Batcher] = {}
        self.monitor: Monitor | None = None
        self.alerts: AlertEngine | None = None  # set before start() to evaluate rules
        self.outbox: Outbox | None = None  # delivers alert webhooks while the server runs
        self.jobs: JobRunner | None = None  # advances retraining jobs while the server runs
        self.signing_key: SigningKey | None = None  # signs the evidence log's checkpoints
        self.checkpoints: CheckpointWorker | None = None
        # moves old decisions to archive files (--archive-after)
        self.archiver: Archiver | None = None
        self.partitions: PartitionWorker | None = None
        self._privacy_secret: bytes | None = None  # loaded when a policy first hashes
        # background work the routes ask for: each started after the rest, stopped first
        self.on_start: list[Callable[[], None]] = []
        self.on_stop: list[Callable[[], None]] = []
        self.ui_warmer: Warmer | None = None  # builds the UI's charts after a start
        self.serving = False  # between start() and stop()

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        # A second start would build a second set of workers over the first and
        # lose them: stop() only reaches the newest, and the others would go on
        # polling (and logging) after the store is gone.
        if self.serving:
            raise RuntimeError("this gateway is already serving: stop it before starting it again")
        self.serving = True
        try:
            self._start()
        except BaseException:  # what did start is stopped again: no thread outlives a failed start
            self.stop()
            raise

    def _start(self) -> None:
        # import the model loaders now, not on the first deploy: a change made
        # elsewhere must go live here within a second
        warm_up()

        # Threads hand work to each other on every batch (loop -> model -> log ->
        # loop); a thread waking up waits for the GIL up to this interval, which
        # would otherwise add its default 5 ms to a commit's latency. Shorter
        # than 2 ms costs more in forced switches than it saves in waiting
        # (measured with bench/serving: 0.5 ms gave 5-15% fewer requests a second).
        sys.setswitchinterval(0.002)
        self.log = DecisionLog(
            self.cm.store,
            on_commit=self.metrics.observe_commit,
            commit_wait_s=self.settings.commit_wait_ms / 1000,
        )
        self.metrics.listener = Canaries(self.cm, self.live, self.metrics.observe_rollback)
        self.live.refresh()
        self.live.start(self.settings.poll_interval_s)
        self.outbox = Outbox(self.cm.store, allow_hosts=self.settings.allow_webhook_hosts)
        self.outbox.start()
        if self.alerts is None:
            self.alerts = AlertEngine(self.cm.store, on_enqueue=self.outbox.wake)
        self.monitor = Monitor(
            self.cm,
            interval_s=self.settings.monitor_interval_s,
            window_us=self.settings.monitor_window_us,
            mirror_to_mlflow=self.settings.monitor_mlflow,
            alerts=self.alerts,
            error_counts=self.metrics.take_counts,
        )
        self.monitor.start()
        self.jobs = JobRunner(self.cm, interval_s=self.settings.retrain_interval_s)
        self.jobs.start()
        if self.settings.archive_after_us > 0:
            target = target_from_settings(self.settings, SA.default_target(self.cm.store))
            self.archiver = Archiver(
                self.cm,
                self.settings.archive_after_us,
                target,
                on_pass=self.metrics.observe_archive,
            )
            self.archiver.start()
        if not self.cm.store.is_sqlite:
            self.partitions = PartitionWorker(
                self.cm.store, self.settings.partition_interval_s, self.settings.detach_after_us
            )
            self.partitions.start()
            self.partitions.wake()
        try:
            # created 0600 on the first start if absent
            self.signing_key, created = signing_key(self.settings, self.cm.store)
        except KeyFileError as exc:  # serve anyway: decisions are still committed to the log
            log.error("no checkpoints will be signed: %s", exc.message)
        else:
            if created:
                log.info("created the signing key %s", self.settings.signing_key_path)
            tsa = self.settings.tsa_url
            self.checkpoints = CheckpointWorker(
                self.cm.store,
                self.signing_key,
                self.settings.checkpoint_interval_s,
                self.settings.checkpoint_dir,
                authority=Authority(tsa, self.settings.allow_webhook_hosts) if tsa else None,
                webhooks=self.settings.checkpoint_webhooks,
                on_enqueue=self.outbox.wake,
            )
            self.checkpoints.start()
        for hook in self.on_start:
            hook()

    def stop(self) -> None:
        for hook in self.on_stop:
            hook()
        if self.archiver is not None:
            self.archiver.stop()
        if self.partitions is not None:
            self.partitions.stop()
        if self.checkpoints is not None:
            self.checkpoints.stop()
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
        access_log.flush()
        self.serving = False

    # --- helpers -----------------------------------------------------------

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
        if inputs.is_csv(request.headers.get("content-type")):
            try:
                body = inputs.csv_to_json(body)
            except InvalidInput as exc:
                status, payload = error_body(exc.status, "bad_input", exc.message, exc.field)
                return Response(payload, status_code=status, media_type=JSON.media_type)
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
            body, raw_context = inputs.split_context(body)
            mat, frame, n = self._rows(body, model)
            context = inputs.context_rows(raw_context, n) if n <= self.settings.max_rows else None
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
                explain=explained.rows if explained is not None else None, context=context,
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
            self._shadow(live, body, model, mat, frame, n, unit, ts, context)
        answer: dict[str, Any] = {
            "predictions": res.outputs,
            "decision_ids": res.ids,
            "model": {"name": model.ref.name, "version": model.ref.version},
            "variant": variant.name,
        }
        if explained is not None:
            answer.update(explained.response(res.ids))
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
                    block_rows=self.settings.ingest_block_rows,
                ),
                on_batch=self.metrics.observe_batch,
                ensure_classes=self._ensure_classes,
                policy_of=lambda: self._policy_of(endpoint),
            )
            self._batchers[key] = b
        return b

    def _policy_of(self, endpoint: str) -> tuple[int, privacy.Policy, bytes] | None:
        """The endpoint's privacy policy for the decision log; None when it keeps everything."""
        p = self.live.privacy.get(endpoint)
        if p is None or p.policy.plain:
            return None
        if self._privacy_secret is None:
            try:
                self._privacy_secret = secret.load(self.settings.privacy_key_path)
            except (OSError, ChronomlError) as exc:
                # fail closed: a decision is not logged with what the policy would remove
                raise StoreError(f"privacy secret unavailable: {exc}") from exc
        return p.event_seq, p.policy, self._privacy_secret

    def _ensure_classes(self, name: str, version: str, classes: Sequence[Any]) -> None:
        outcomes.ensure_classes(self.cm.store, name, version, classes)

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
        context: Sequence[str | None] | None = None,
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
            context=context,
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
        context: Sequence[str | None] | None = None,
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
                context=context,
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


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
