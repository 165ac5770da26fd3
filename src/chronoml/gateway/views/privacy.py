"""REST routes for privacy: an endpoint's input policy, and erasing a subject's inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.errors import ChronomlError
from chronoml.gateway.access import principal_of
from chronoml.gateway.responses import JSON, error, for_error

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

_POLICY_FIELDS = ("features", "context", "unit_key")


async def _object(request: Request) -> dict[str, Any] | JSON:
    try:
        spec = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        return error(400, "bad_json", f"body is not valid JSON: {exc}")
    if not isinstance(spec, dict):
        return error(400, "bad_body", "body must be a JSON object")
    return spec


def routes(gw: Gateway) -> list[Route]:
    """``GET|PUT /v1/endpoints/{endpoint}/privacy``, ``POST /v1/erasures``."""

    async def get_policy(request: Request) -> Response:
        try:
            got = await run_in_threadpool(gw.cm.privacy, request.path_params["endpoint"])
            return JSON(got.as_dict())
        except ChronomlError as exc:
            return for_error(exc)

    async def put_policy(request: Request) -> Response:
        spec = await _object(request)
        if isinstance(spec, JSON):
            return spec
        unknown = sorted(set(spec) - set(_POLICY_FIELDS))
        if unknown:
            return error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
        for key in ("features", "context"):
            rules = spec.get(key)
            if rules is not None and (
                not isinstance(rules, dict) or not all(isinstance(k, str) for k in rules)
            ):
                return error(422, "bad_input", f"{key} must map names to keep|hash|drop", key)
        actor = principal_of(request).actor
        try:
            out = await run_in_threadpool(
                lambda: gw.cm.set_privacy(
                    request.path_params["endpoint"],
                    features=spec.get("features"),
                    context=spec.get("context"),
                    unit_key=spec.get("unit_key"),
                    actor=actor,
                )
            )
        except ChronomlError as exc:
            return for_error(exc)
        await run_in_threadpool(gw.live.refresh)  # this server applies it before answering
        return JSON(out.as_dict())

    async def post_erasure(request: Request) -> Response:
        spec = await _object(request)
        if isinstance(spec, JSON):
            return spec
        unknown = sorted(set(spec) - {"unit"})
        if unknown:
            return error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
        unit = spec.get("unit")
        if not isinstance(unit, str) or not unit:
            return error(422, "bad_input", "unit must be the unit key to erase", "unit")
        actor = principal_of(request).actor
        try:
            out = await run_in_threadpool(gw.cm.erase, unit, actor)
        except ChronomlError as exc:
            return for_error(exc)
        return JSON(out.as_dict())

    return [
        Route("/v1/endpoints/{endpoint}/privacy", get_policy, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}/privacy", put_policy, methods=["PUT"]),
        Route("/v1/erasures", post_erasure, methods=["POST"]),
    ]
