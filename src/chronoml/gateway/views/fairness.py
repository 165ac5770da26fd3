"""REST route for fairness: ``GET /v1/endpoints/{endpoint}/fairness``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.errors import ChronomlError
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.gateway.views.monitor import window_args
from chronoml.monitor.fairness import parse_class

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:
    async def get_fairness(request: Request) -> Response:
        """Per group and between groups, over ``?attribute=`` of the decisions' context."""
        endpoint = request.path_params["endpoint"]
        q = request.query_params
        attribute = q.get("attribute")
        if not attribute:
            return error(400, "bad_query", "give ?attribute=NAME (a context key)", "attribute")
        try:
            kw = window_args(request)
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        try:
            rep = await run_in_threadpool(
                lambda: gw.cm.fairness(
                    endpoint,
                    attribute,
                    version=q.get("version"),
                    positive_class=parse_class(q.get("positive_class")),
                    **kw,
                )
            )
        except ChronomlError as exc:
            return for_error(exc)
        return JSON(rep.as_dict())

    return [Route("/v1/endpoints/{endpoint}/fairness", get_fairness, methods=["GET"])]
