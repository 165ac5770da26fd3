"""REST routes for data snapshots: list them, and show one by reference with where it went."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml import snapshots
from chronoml.errors import ChronomlError
from chronoml.gateway.responses import JSON, for_error
from chronoml.store import snapshots as snapshot_store

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:

    async def list_snapshots(request: Request) -> Response:
        name = request.query_params.get("name") or None
        found = await run_in_threadpool(snapshot_store.named, gw.cm.store, name)
        return JSON(
            {
                "snapshots": [
                    {**s.to_dict(), "taken_by": s.actor, "built": s.lineage is not None}
                    for s in found
                ]
            }
        )

    async def get_snapshot(request: Request) -> Response:
        ref = request.path_params["ref"]
        try:
            found = await run_in_threadpool(snapshots.details, gw.cm, ref)
        except ChronomlError as exc:
            return for_error(exc)
        return JSON(found.to_dict())

    return [
        Route("/v1/snapshots", list_snapshots, methods=["GET"]),
        Route("/v1/snapshots/{ref}", get_snapshot, methods=["GET"]),
    ]
