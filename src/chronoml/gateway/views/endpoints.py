"""The REST views of endpoints and decisions: what is live, changes, lineage."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chronoml.auth import Action
from chronoml.domain.canary import Guardrails
from chronoml.domain.ledger import event_summary
from chronoml.endpoints import event_dict
from chronoml.errors import NotFound, Refused
from chronoml.gateway.access import actor_of, principal_of
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.gateway.views.monitor import window_args
from chronoml.monitor.reports import parse_overrides, to_html
from chronoml.monitor.slices import SliceError
from chronoml.timeutil import parse_time

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:
    """``/``, ``/health``, ``/metrics``, ``/v1/endpoints...``, ``/v1/decisions/{id}``."""

    async def list_endpoints(request: Request) -> Response:
        principal = principal_of(request)
        rows = await run_in_threadpool(gw.cm.endpoints)
        visible = [r.as_dict() for r in rows if principal.can(Action.READ_STATUS, r.endpoint)]
        return JSON({"endpoints": visible})

    async def get_endpoint(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        at = request.query_params.get("at")
        try:
            t = parse_time(at) if at else None
        except ValueError as exc:
            return error(400, "bad_time", str(exc), "at")
        return await _call(gw.cm.status, endpoint, t)

    async def drift(request: Request) -> Response:
        q = request.query_params
        try:
            kw = window_args(request)
            kw["overrides"] = parse_overrides(
                [m.replace(":", "=", 1) for m in q.getlist("method")],
                [t.replace(":", "=", 1) for t in q.getlist("threshold")],
            )
            kw["by"] = q.get("by") or None
            if q.get("bins"):
                kw["bins"] = int(q["bins"])
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        endpoint = request.path_params["endpoint"]
        try:
            report = await run_in_threadpool(lambda: gw.cm.drift(endpoint, **kw))
        except SliceError as exc:
            return for_error(exc)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(400, "bad_query", exc.message, exc.field)
        if q.get("format") == "html":
            return HTMLResponse(to_html(report.as_dict()))
        return JSON(report.as_dict())

    async def history(request: Request) -> Response:
        return await _call(gw.cm.history, request.path_params["endpoint"])

    async def put_endpoint(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        try:
            spec = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(spec, dict):
            return error(400, "bad_body", "body must be a JSON object")
        actor = actor_of(request)
        if "weights" in spec:
            weights = spec["weights"]
            if not isinstance(weights, dict):
                return error(422, "bad_input", "weights must map variant to percent", "weights")
            return await _change(gw.cm.set_weights, endpoint, weights, actor=actor)
        if "model_uri" not in spec:
            return error(
                422, "bad_input", "give model_uri (deploy) or weights (split)", "model_uri"
            )
        allowed = {"model_uri", "weight", "shadow", "variant", "allow_unlinked_data", "canary"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            return error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
        for key in ("model_uri", "variant"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                return error(422, "bad_input", f"{key} must be a string", key)
        for key in ("shadow", "allow_unlinked_data"):
            if spec.get(key) is not None and not isinstance(spec[key], bool):
                return error(422, "bad_input", f"{key} must be true or false", key)
        weight = spec.get("weight")
        guardrails = None
        if spec.get("canary") is not None:
            # "canary": 5, or {"percent": 5, "max_error_rate": .., "max_p99_ms": .., "min_requests": ..}
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
        return await _change(
            gw.cm.deploy,
            endpoint,
            str(spec["model_uri"]),
            weight=weight,
            shadow=bool(spec.get("shadow", False)),
            variant=spec.get("variant"),
            allow_unlinked_data=bool(spec.get("allow_unlinked_data", False)),
            actor=actor,
            canary=guardrails,
            probe_first=True,
        )

    async def rollback(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        reason = request.query_params.get("reason")
        return await _change(gw.cm.rollback, endpoint, reason, actor=actor_of(request))

    async def retire(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        return await _change(gw.cm.retire, endpoint, actor=actor_of(request))

    async def _change(fn: Callable[..., Any], endpoint: str, *args: Any, **kw: Any) -> Response:
        try:
            ev = await run_in_threadpool(fn, endpoint, *args, **kw)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(422, "refused", exc.message, exc.field)
        # make the change live here before answering; other replicas follow by polling
        await run_in_threadpool(gw.live.refresh)
        status = await run_in_threadpool(gw.cm.status, endpoint)
        body: dict[str, Any] = {
            "event": {**event_dict(ev), "summary": event_summary(ev)},
            "status": status.as_dict(),
        }
        card = (ev.payload or {}).get("model_card") if ev.kind == "deploy" else None
        if card is not None:
            body["model_card"] = card
            if card.get("error"):
                body["warnings"] = [f"the model card was not stored: {card['error']}"]
        return JSON(body)

    async def _call(fn: Callable[..., Any], *args: Any) -> Response:
        try:
            return JSON((await run_in_threadpool(fn, *args)).as_dict())
        except NotFound as exc:
            return error(404, "not_found", str(exc))

    # --- decisions ----------------------------------------------------------

    async def decision(request: Request) -> Response:
        principal = principal_of(request)
        decision_id = request.path_params["id"]
        try:
            d = await run_in_threadpool(gw.cm.decision, decision_id)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        principal.require(Action.READ_STATUS, d.endpoint)
        if principal.can(Action.READ_INPUTS, d.endpoint):
            await run_in_threadpool(gw.read_log, principal, [decision_id], "GET /v1/decisions/{id}")
        else:
            # a viewer sees the lineage and the output, not who it was or what they sent
            d = d.without_inputs("auditor")
        return JSON(d.as_dict())

    async def health(request: Request) -> Response:
        return JSON(
            {"status": "ok", "endpoints": sorted(gw.live.endpoints), "errors": gw.live.errors}
        )

    async def metrics_view(request: Request) -> Response:
        if gw.log is not None:
            gw.metrics.queue_depth.set(gw.log.depth)
        gw.metrics.observe_calls(
            (endpoint, variant, model.ref.version, model.model_call)
            for endpoint, live in gw.live.endpoints.items()
            for variant, model in live.models.items()
        )
        data, ctype = gw.metrics.render()
        return Response(data, media_type=ctype)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_view, methods=["GET"]),
        Route("/v1/endpoints", list_endpoints, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}", get_endpoint, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}", put_endpoint, methods=["PUT"]),
        Route("/v1/endpoints/{endpoint}/history", history, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}/drift", drift, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}/rollback", rollback, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/retire", retire, methods=["POST"]),
        Route("/v1/decisions/{id}", decision, methods=["GET"]),
    ]
