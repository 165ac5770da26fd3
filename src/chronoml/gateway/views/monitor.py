"""REST routes for feedback and quality."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.errors import InvalidInput, NotFound, Refused
from chronoml.gateway.access import actor_of
from chronoml.gateway.inputs import check_context
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.monitor.estimated import EstimateError
from chronoml.monitor.feedback import FeedbackError, Label
from chronoml.monitor.scheduler import history
from chronoml.monitor.slices import SliceError
from chronoml.timeutil import parse_duration, parse_time

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def window_args(request: Request) -> dict[str, Any]:
    """``window``, ``from``, ``to`` and ``variant`` query parameters; ValueError if bad."""
    q = request.query_params
    kw: dict[str, Any] = {"variant": q.get("variant")}
    if q.get("window"):
        kw["window_us"] = parse_duration(q["window"])
    if q.get("from"):
        kw["start"] = parse_time(q["from"])
    if q.get("to"):
        kw["end"] = parse_time(q["to"])
    return kw


def routes(gw: Gateway) -> list[Route]:

    async def post_feedback(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return error(400, "bad_body", "body must be a JSON object")
        items = body.get("labels", [body] if "decision_id" in body else None)
        if not isinstance(items, list) or not items:
            return error(
                422, "bad_input", "give decision_id and label (or labels: [...])", "decision_id"
            )
        labels = []
        for i, it in enumerate(items):
            if not isinstance(it, dict) or "decision_id" not in it:
                return error(422, "bad_input", f"label {i}: needs decision_id and label", "label")
            if it.get("time") is not None and not isinstance(it["time"], str):
                return error(
                    422, "bad_input", f"label {i}: time must be an ISO 8601 string", "time"
                )
            if "label" not in it and "context" not in it:
                return error(
                    422, "bad_input", f"label {i}: needs a label, a context or both", "label"
                )
            try:
                t = parse_time(it["time"]) if it.get("time") else None
                ctx = check_context(it["context"]) if it.get("context") is not None else None
            except InvalidInput as exc:
                return error(422, "bad_input", exc.message, exc.field)
            except ValueError as exc:
                return error(422, "bad_input", str(exc), "time")
            labels.append(Label(str(it["decision_id"]), it.get("label"), t, ctx))
        update = bool(body.get("update", False))
        try:
            result = await run_in_threadpool(
                lambda: gw.cm.feedback(labels, update=update, actor=actor_of(request))
            )
        except FeedbackError as exc:
            return error(exc.status, "bad_feedback", exc.message, exc.field)
        return JSON(result.as_dict())

    async def get_quality(request: Request) -> Response:
        q = request.query_params
        try:
            kw = window_args(request)
            bins: dict[str, Any] = {"bins": int(q["bins"])} if q.get("bins") else {}
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        endpoint = request.path_params["endpoint"]
        try:
            ref: dict[str, Any] = {
                "reference_start": parse_time(q["reference_from"])
                if q.get("reference_from")
                else None,
                "reference_end": parse_time(q["reference_to"]) if q.get("reference_to") else None,
            }
        except ValueError as exc:
            return error(400, "bad_query", str(exc), "reference_from")
        try:
            if q.get("estimate") in ("true", "1"):
                return JSON(
                    await run_in_threadpool(lambda: gw.cm.estimated_quality(endpoint, **kw, **ref))
                )
            by = q.get("by") or None
            return JSON(
                await run_in_threadpool(lambda: gw.cm.quality(endpoint, **kw, by=by, **bins))
            )
        except (EstimateError, SliceError) as exc:
            return for_error(exc)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(400, "bad_query", exc.message, exc.field)

    async def get_monitoring(request: Request) -> Response:

        endpoint = request.path_params["endpoint"]
        try:
            await run_in_threadpool(gw.cm.status, endpoint)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        metric = request.query_params.get("metric")
        rows = await run_in_threadpool(lambda: history(gw.cm, endpoint, metric))
        return JSON({"endpoint": endpoint, "results": rows})

    async def run_monitoring(request: Request) -> Response:
        if gw.monitor is None:
            return error(503, "not_ready", "monitoring is not running")
        results = await run_in_threadpool(gw.monitor.run_once)
        return JSON(
            {
                "results": [
                    {
                        "endpoint": r.endpoint,
                        "variant": r.variant,
                        "version": r.model_version,
                        "metrics": r.metrics,
                    }
                    for r in results
                ]
            }
        )

    return [
        Route("/v1/monitoring/run", run_monitoring, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/monitoring", get_monitoring, methods=["GET"]),
        Route("/v1/feedback", post_feedback, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/quality", get_quality, methods=["GET"]),
    ]
