"""The raw ASGI path for scoring requests.

``POST /v1/endpoints/{endpoint}/predict`` and ``POST /invocations`` are most
of a gateway's traffic. Starlette's middleware, router, request and response
objects cost about as much CPU per single-row request as the model does, so
these two routes (with no query, or only ``?explain=``) are answered here,
straight from the ASGI messages, by the same :meth:`Gateway.answer` the routed views use:
the same statuses, error bodies, limits and metrics. Everything else,
including a predict with any other query, goes through Starlette as before.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from chronoml.auth import AuthError
from chronoml.errors import InvalidInput, StoreError
from chronoml.gateway import inputs
from chronoml.gateway.access_log import access_log
from chronoml.gateway.responses import error_body
from chronoml.gateway.rules import ACTIONS, Rule, check

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

_PREFIX = "/v1/endpoints/"
_SUFFIX = "/predict"
_JSON = b"application/json"
_INTERNAL_ERROR = b"Internal Server Error"
_RULE = ACTIONS[("POST", "/v1/endpoints/{endpoint}/predict")]
assert _RULE is not None
PREDICT_RULE: Rule = _RULE


def _explain_only(query: bytes) -> tuple[bool, str | None]:
    """Whether the query is empty or only ``explain=``, and that value (None: absent).

    Any other query sends the request the routed way.
    """
    if not query:
        return True, None

    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not pairs or any(name != "explain" for name, _ in pairs):
        return False, None
    return True, pairs[-1][1]  # the last one, as Starlette's QueryParams.get gives it


class GatewayApp(Starlette):
    """Starlette with a raw fast path for scoring requests."""

    def __init__(self, gateway: Gateway, **kw: Any) -> None:
        super().__init__(**kw)
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        send = self._counting(send)
        path: str = scope["path"]
        predict = scope["method"] == "POST" and (path == "/invocations" or path.endswith(_SUFFIX))
        refusal = self.gateway.access.refuse(scope, predict=predict)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        if predict and not scope.get("root_path"):
            fast, explain = _explain_only(scope.get("query_string", b""))
            if fast:
                if path == "/invocations":
                    await self._serve(scope, receive, send, None, explain)
                    return
                if path.startswith(_PREFIX):
                    endpoint = path[len(_PREFIX) : -len(_SUFFIX)]
                    if endpoint and "/" not in endpoint:
                        await self._serve(scope, receive, send, endpoint, explain)
                        return
        body = await _capped_body(receive, scope, self.gateway.settings.max_body_bytes)
        if body is None:
            limit = self.gateway.settings.max_body_bytes
            await _respond(
                send, *error_body(413, "body_too_large", f"request body over {limit} bytes")
            )
            return
        await super().__call__(scope, _replay(body, receive), send)

    def _counting(self, send: Send) -> Send:
        """``send`` that counts each 4xx and 5xx response by status, whichever route gave it."""
        observe = self.gateway.metrics.http_error

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                observe(message["status"])
            await send(message)

        return counted

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str | None, explain: str | None
    ) -> None:
        started = False
        answered = 500
        t0 = time.perf_counter()

        async def respond(status: int, payload: bytes, ctype: bytes = _JSON) -> None:
            nonlocal started, answered
            started = True
            answered = status
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(payload)).encode()),
                        (b"content-type", ctype),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})

        try:
            await self._predict(scope, receive, respond, endpoint, explain)
        except Exception:
            # as Starlette's ServerErrorMiddleware does: answer 500, then let the server log it
            if not started:
                await respond(500, _INTERNAL_ERROR, b"text/plain; charset=utf-8")
            raise
        finally:
            if access_log.isEnabledFor(logging.INFO):
                self.gateway.access.write_line(
                    scope.get("chronoml.principal"),
                    "POST",
                    "/invocations" if endpoint is None else "/v1/endpoints/{endpoint}/predict",
                    answered,
                    t0,
                )

    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        respond: Any,
        endpoint: str | None,
        explain: str | None,
    ) -> None:
        gw = self.gateway
        arrived = time.perf_counter()
        if endpoint is None:
            endpoint = gw.settings.default_endpoint
            if endpoint is None:
                await respond(*gw.no_default_endpoint())
                return
        try:
            principal = await gw.access.principal(scope)
            scope["chronoml.principal"] = principal
            check(principal, PREDICT_RULE, endpoint)
        except (AuthError, StoreError) as exc:
            await respond(*error_body(exc.status, exc.code, exc.message, exc.field))
            return
        declared = unit = ctype = None
        for name, value in scope["headers"]:
            # the first of each, as Starlette's Headers.get gives it
            if name == b"content-length" and declared is None:
                declared = value
            elif name == b"x-chronoml-unit" and unit is None:
                unit = value.decode("latin-1")
            elif name == b"content-type" and ctype is None:
                ctype = value
        limit = gw.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await respond(*error_body(413, "body_too_large", f"request body over {limit} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    await respond(
                        *error_body(413, "body_too_large", f"request body over {limit} bytes")
                    )
                    return
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if ctype is not None and inputs.is_csv(ctype):
            try:
                body = inputs.csv_to_json(body)
            except InvalidInput as exc:
                await respond(*error_body(exc.status, "bad_input", exc.message, exc.field))
                return
        await respond(*await gw.answer(endpoint, body, unit, arrived, explain))


async def _respond(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(payload)).encode()),
                (b"content-type", _JSON),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _capped_body(receive: Receive, scope: Scope, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes (declared or sent)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits as the server's does."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
