"""The web UI's compare, jobs and audit pages, and a decision's proof status."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chronoml.errors import ChronomlError, NotFound, StoreError
from chronoml.evidence import proofs
from chronoml.gateway.responses import error, for_error
from chronoml.gateway.views import ui_charts
from chronoml.monitor.drift_grid import DriftGrid, served_models
from chronoml.monitor.timeline import Timeline
from chronoml.store import checkpoints as SC
from chronoml.store import evidence as SEV
from chronoml.store import jobs as J
from chronoml.store import principals as SP
from chronoml.store import timeline_reads as TR
from chronoml.timeutil import iso, now_us, parse_duration, parse_time

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

Page = Callable[..., HTMLResponse]
READS_SHOWN = 200
JOBS_SHOWN = 50
MAX_WINDOW_US = 366 * 86_400_000_000


def proof_status(gw: Gateway, decision_id: str) -> dict[str, Any]:
    """Whether the decision is proved by a signed checkpoint, in words and a state."""
    key = gw.signing_key
    if key is None:
        return {"state": "unavailable", "text": "this server has no signing key for checkpoints"}
    # a page view never issues a checkpoint: only prove against one already signed
    with gw.cm.store.read() as conn:
        item = SEV.item_in(conn, "decision", decision_id)
        latest = SC.latest_checkpoint(conn)
    if item is None:
        return {"state": "pending", "text": "not in the evidence log yet (it is added in batches)"}
    if latest is None or latest[1] <= int(item[2]):
        return {
            "state": "pending",
            "text": f"in the evidence log at index {item[2]}, not yet covered by a signed "
            "checkpoint (the next one will cover it)",
        }
    try:
        p = proofs.decision_proof(gw.cm, key, decision_id)
    except NotFound as exc:
        return {"state": "pending", "text": f"not proved yet: {exc}"}
    except StoreError as exc:
        return {"state": "bad", "text": f"does NOT verify: {exc}"}
    return {
        "state": "ok",
        "text": f"in the evidence log at index {p['log_index']}, covered by the signed "
        f"checkpoint of size {p['log_size']}",
        "leaf_hash": p["leaf_hash"],
    }


def _span(request: Request) -> tuple[int, int, str]:
    q = request.query_params
    at = parse_time(q["at"]) if q.get("at") else now_us()
    window = q.get("window") or "7d"
    span = parse_duration(window)
    if not 0 < span <= MAX_WINDOW_US:
        raise ValueError("window must be a duration between 1s and 366d")
    return max(at - span, 0), at, window


def routes(
    gw: Gateway,
    page: Page,
    timeline: Timeline,
    grid: DriftGrid,
    verified: Callable[[], Any],
) -> list[Route]:
    cm = gw.cm

    async def compare_page(request: Request) -> Response:
        e = request.path_params["endpoint"]
        q = request.query_params
        try:
            start, end, window = _span(request)
        except ValueError as exc:
            field = "window" if q.get("window") and "duration" in str(exc) else "at"
            if q.get("at"):
                try:
                    parse_time(q["at"])
                except ValueError:
                    field = "at"
            return error(400, "bad_query", str(exc), field)

        def load() -> dict[str, Any]:
            cm.status(e, end)  # an unknown endpoint is a 404
            versions = sorted({v for _, v in served_models(cm.store, e)}, key=_version_key)
            a = q.get("a") or (versions[-2] if len(versions) > 1 else None)
            b = q.get("b") or (versions[-1] if versions else None)
            ctx: dict[str, Any] = {
                "endpoint": e,
                "versions": versions,
                "a": a,
                "b": b,
                "at_iso": iso(end),
                "from_iso": iso(start),
                "window": window,
            }
            for name, v in (("a", a), ("b", b)):
                if v is not None and v not in versions:
                    raise _Bad(name, f"version {v!r} never served {e!r}: one of {versions}")
            if a is not None and b is not None:
                ctx["data_json"] = ui_charts.embed(
                    ui_charts.compare(timeline, grid, e, a, b, start, end)
                )
            return ctx

        try:
            ctx = await run_in_threadpool(load)
        except _Bad as exc:
            return error(400, "bad_query", exc.message, exc.field)
        except ChronomlError as exc:
            return for_error(exc)
        return page("compare", **ctx)

    async def jobs_page(request: Request) -> Response:
        def load() -> list[dict[str, Any]]:
            out = []
            for j in J.listing(cm.store, None, JOBS_SHOWN):
                d = j.to_dict(log=True)
                d["steps"] = J.steps(cm.store, j.id)
                out.append(d)
            return out

        return page("jobs", jobs=await run_in_threadpool(load))

    async def audit_page(request: Request) -> Response:
        def load() -> dict[str, Any]:
            report = verified()
            events = []
            for name in cm.endpoints():
                events += cm.history(name.endpoint).as_dict()["events"]
            events.sort(key=lambda ev: ev["seq"])
            cps = [
                {"id": i, "size": s, "root": r, "created_at": iso(t)}
                for i, s, r, t in TR.checkpoints(cm.store)
            ]
            reads = SP.reads(cm.store, limit=READS_SHOWN)
            for r in reads:
                r["ts"] = iso(int(r["ts"]))
            return {
                "verify": report,
                "events": events,
                "checkpoints": cps,
                "checkpoint_total": TR.checkpoint_count(cm.store),
                "reads": reads,
                "reads_shown": READS_SHOWN,
            }

        return page("audit", **await run_in_threadpool(load))

    return [
        Route("/ui/compare/{endpoint}", compare_page, methods=["GET"]),
        Route("/ui/audit", audit_page, methods=["GET"]),
        Route("/ui/jobs", jobs_page, methods=["GET"]),
    ]


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (1 << 62, v)
