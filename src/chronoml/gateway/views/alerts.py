"""REST routes for alert rules and their webhook deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.auth import Action, AuthError, redact
from chronoml.auth.policy import check_webhooks, redacted_rule
from chronoml.domain.alerts import RuleError, parse_rule
from chronoml.gateway.access import principal_of
from chronoml.gateway.responses import JSON, error
from chronoml.monitor import outbox
from chronoml.monitor.alerts import AlertEngine

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:
    """``GET /v1/alerts``, ``GET /v1/alerts/outbox``, ``PUT`` and ``DELETE /v1/alerts/{name}``."""

    def engine() -> AlertEngine:
        running = getattr(gw, "alerts", None)
        return running if isinstance(running, AlertEngine) else AlertEngine(gw.cm.store)

    async def rules() -> list[dict[str, Any]]:
        return [redacted_rule(r) for r in await run_in_threadpool(engine().status)]

    async def list_alerts(request: Request) -> Response:
        return JSON({"rules": await rules()})

    async def outbox_status(request: Request) -> Response:
        report = await run_in_threadpool(outbox.status, gw.cm.store)
        if not principal_of(request).can(Action.READ_DELIVERY_ERRORS):
            # where deliveries fail says what the server's network holds: admins only
            report["errors"] = [
                {"id": e["id"], "attempts": e["attempts"], "next_attempt_at": e["next_attempt_at"]}
                for e in report["errors"]
            ]
            report["errors_redacted"] = "the targets and errors need role admin"
        else:
            for e in report["errors"]:
                e["url"] = redact(str(e["url"]))
        return JSON(report)

    async def put_alert(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            spec = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(spec, dict):
            return error(400, "bad_body", "body must be a JSON object (a rule)")
        eng = engine()
        try:
            parsed = parse_rule(spec, name)
            check_webhooks(parsed, gw.settings.allow_webhook_hosts)
            rule = await run_in_threadpool(eng.put, parsed)
        except RuleError as exc:
            return error(422, "bad_rule", exc.message, exc.field)
        except AuthError as exc:
            return error(422, "bad_rule", exc.message, exc.field)
        states = await rules()
        return JSON({"rule": next(s for s in states if s["name"] == rule.name)})

    async def delete_alert(request: Request) -> Response:
        name = request.path_params["name"]
        if not await run_in_threadpool(engine().remove, name):
            return error(404, "not_found", f"no alert rule named {name!r}")
        return JSON({"deleted": name})

    return [
        Route("/v1/alerts", list_alerts, methods=["GET"]),
        Route("/v1/alerts/outbox", outbox_status, methods=["GET"]),
        Route("/v1/alerts/{name}", put_alert, methods=["PUT"]),
        Route("/v1/alerts/{name}", delete_alert, methods=["DELETE"]),
    ]
