"""The REST views of the audit: verify the ledger and the evidence log, prove a decision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.errors import NotFound, StoreError
from chronoml.evidence import audit as EA
from chronoml.evidence import proofs
from chronoml.evidence import timestamps as TS
from chronoml.gateway.responses import JSON, error

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:
    """``/v1/audit/verify`` and ``/v1/decisions/{id}/proof``."""

    async def verify(request: Request) -> Response:
        decisions = request.query_params.get("decisions", "").lower() in {"1", "true", "yes"}

        chain = await run_in_threadpool(gw.cm.verify)
        keys = [gw.signing_key.verifier()] if gw.signing_key is not None else []
        evidence = await run_in_threadpool(
            lambda: EA.verify(gw.cm.store, decisions=decisions, keys=keys)
        )
        # the server holds no authority certificate: each timestamp's imprint is checked
        stamps = await run_in_threadpool(TS.check_stored, gw.cm.store)
        ok = chain.ok and evidence.ok and stamps.ok
        body = {
            "ok": ok,
            "events": chain.events,
            "head": chain.head,
            "first_bad_seq": chain.first_bad_seq,
            "reason": chain.reason,
            "evidence": evidence.to_dict(),
            "timestamps": stamps.to_dict(),
        }
        return JSON(body, status_code=200 if ok else 409)

    async def proof(request: Request) -> Response:
        key = gw.signing_key
        if key is None:
            return error(503, "no_signing_key", "this server has no signing key for checkpoints")
        decision_id = request.path_params["id"]
        try:
            body = await run_in_threadpool(proofs.decision_proof, gw.cm, key, decision_id)
        except NotFound as exc:
            return error(404, "not_found", str(exc), "id")
        except StoreError as exc:
            return error(409, "evidence_mismatch", str(exc))
        return JSON(body)

    return [
        Route("/v1/audit/verify", verify, methods=["GET"]),
        Route("/v1/decisions/{id}/proof", proof, methods=["GET"]),
    ]
