"""REST views of principals (``/v1/whoami``, ``/v1/tokens``, the log of input reads) and
of the API itself (``/openapi.json``, ``/docs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chronoml import __version__
from chronoml.auth.access import create_token, list_tokens, revoke_token
from chronoml.errors import ChronomlError
from chronoml.gateway import openapi
from chronoml.gateway.access import principal_of
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.store import principals as SP
from chronoml.window import Window

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

MAX_READS = 10_000


def routes(gw: Gateway) -> list[Route]:
    """``GET /v1/whoami``, ``GET|POST /v1/tokens``, ``DELETE /v1/tokens/{name}``,
    ``GET /v1/audit/reads``."""

    async def openapi_json(request: Request) -> Response:
        return JSON(openapi.spec(__version__))

    async def docs(request: Request) -> Response:
        return HTMLResponse(openapi.docs_page())

    async def whoami(request: Request) -> Response:
        return JSON(principal_of(request).to_dict())

    async def get_tokens(request: Request) -> Response:
        records = await run_in_threadpool(list_tokens, gw.cm.store)
        return JSON({"tokens": [r.to_dict() for r in records]})

    async def post_token(request: Request) -> Response:
        try:
            spec = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(spec, dict):
            return error(400, "bad_body", "body must be a JSON object")
        unknown = sorted(set(spec) - {"name", "role", "endpoint", "expires"})
        if unknown:
            return error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
        for key in ("name", "role"):
            if not isinstance(spec.get(key), str):
                return error(422, "bad_input", f"{key} must be a string", key)
        for key in ("endpoint", "expires"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                return error(422, "bad_input", f"{key} must be a string", key)
        try:
            secret, record = await run_in_threadpool(
                lambda: create_token(
                    gw.cm.store,
                    spec["name"],
                    spec["role"],
                    by=principal_of(request),
                    endpoints=spec.get("endpoint") or "*",
                    expires=spec.get("expires"),
                )
            )
        except ChronomlError as exc:
            return for_error(exc)
        gw.access.forget()
        # the only time the secret leaves the server
        return JSON({"token": record.to_dict(), "secret": secret}, status_code=201)

    async def delete_token(request: Request) -> Response:
        name = request.path_params["name"]
        done = await run_in_threadpool(
            lambda: revoke_token(gw.cm.store, name, by=principal_of(request))
        )
        gw.access.forget()
        if not done:
            return error(404, "not_found", f"no active token named {name!r}")
        return JSON({"revoked": name})

    async def audit_reads(request: Request) -> Response:
        q = request.query_params
        try:
            since = Window.parse(None, q["since"], None).start if q.get("since") else None
            limit = int(q.get("limit", "1000"))
        except ChronomlError as exc:
            return for_error(exc)
        except ValueError:
            return error(400, "bad_query", "limit must be an integer", "limit")
        if not 1 <= limit <= MAX_READS:
            return error(400, "bad_query", f"limit must be between 1 and {MAX_READS}", "limit")
        rows = await run_in_threadpool(
            lambda: SP.reads(
                gw.cm.store,
                decision_id=q.get("decision"),
                principal=q.get("principal"),
                since=since,
                limit=limit,
            )
        )
        return JSON({"reads": rows})

    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/v1/tokens", get_tokens, methods=["GET"]),
        Route("/v1/tokens", post_token, methods=["POST"]),
        Route("/v1/tokens/{name}", delete_token, methods=["DELETE"]),
        Route("/v1/audit/reads", audit_reads, methods=["GET"]),
    ]
