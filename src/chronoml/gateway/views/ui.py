"""The web UI under ``/ui/``: server-rendered pages, each with a bookmarkable URL.

Every page is a plain GET whose query carries what it shows (``?at=`` for the
as-of time), so a link or a bookmark gives the same view again. Logging in
stores the token in an HttpOnly, SameSite=Strict cookie the access checks read
when a request has no Authorization header.
"""

from __future__ import annotations

import functools
import gzip
import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from chronoml.auth import AuthError
from chronoml.auth.roles import Action
from chronoml.domain.alerts import split_subject
from chronoml.errors import ChronomlError, NotFound
from chronoml.gateway.access import SESSION_COOKIE, principal_of
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.gateway.views import ui_charts, ui_pages
from chronoml.gateway.views.ui_warm import Warmer
from chronoml.monitor.drift_grid import DriftGrid
from chronoml.monitor.timeline import Timeline
from chronoml.store import alerts as SA
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import timeline_reads as TR
from chronoml.timeutil import iso, now_us, parse_duration, parse_time

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

_env = Environment(loader=PackageLoader("chronoml", "templates"), autoescape=select_autoescape())
_ASSETS = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "chart.umd.min.js": "text/javascript",
    "chartjs-chart-matrix.min.js": "text/javascript",
    "charts.js": "text/javascript",
}
#: The span the endpoint page charts when the URL does not say (``?window=``).
DEFAULT_WINDOW = "7d"
_COLORS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e")
#: How long the overview reuses a verification of the whole chain.
VERIFY_CACHE_S = 60.0


@functools.cache
def _asset(name: str, gzipped: bool) -> bytes:
    """A shipped file, read once (the chart library compresses to a third)."""
    data = resources.files("chronoml.gateway").joinpath(f"static/{name}").read_bytes()
    return gzip.compress(data, mtime=0) if gzipped else data


def _page(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(f"ui/{name}.html").render(**context))


def bands(events: list[dict[str, Any]], end: int) -> list[dict[str, Any]]:
    """What was live between consecutive state changes, as shares of the whole span."""
    changes = [e for e in events if e.get("state") is not None]
    if not changes:
        return []
    start = changes[0]["t"]
    span = max(end - start, 1)
    out = []
    for i, e in enumerate(changes):
        stop = changes[i + 1]["t"] if i + 1 < len(changes) else end
        label = ", ".join(e["state"]) or "nothing live"
        out.append(
            {
                "share": max((stop - e["t"]) / span, 0.01),
                "label": f"#{e['seq']}: {label}",
                "start_iso": iso(e["t"]),
                "color": _COLORS[i % len(_COLORS)],
            }
        )
    return out


def weight_series(events: list[dict[str, Any]], end: int) -> dict[str, Any]:
    """Each variant's weight after every state change, for a stepped chart (seconds on x)."""
    changes = [e for e in events if e.get("weights") is not None]
    names = sorted({n for e in changes for n in e["weights"]})
    xs = [e["t"] / 1e6 for e in changes]
    ys = [[e["weights"].get(n, 0.0) for e in changes] for n in names]
    if changes:
        xs.append(end / 1e6)
        for y in ys:
            y.append(y[-1])
    return {"x": xs, "names": names, "ys": ys}


def routes(gw: Gateway) -> list[Route]:
    cm = gw.cm
    verified: dict[str, Any] = {}
    timeline = Timeline(cm.store)
    grid = DriftGrid(cm.store, cm.layouts)

    def default_view(e: str) -> None:
        events = cm.history(e).as_dict()["events"]
        at = now_us()
        ui_charts.endpoint_charts(
            timeline, grid, e, events, at - parse_duration(DEFAULT_WINDOW), at
        )

    warmer = Warmer(lambda: [ep.endpoint for ep in cm.endpoints()], default_view)
    gw.on_start.append(warmer.start)
    gw.on_stop.append(warmer.stop)
    gw.ui_warmer = warmer

    def verification() -> tuple[Any, float]:
        # the whole chain is recomputed at most once a minute, not on every view
        if not verified or time.time() - verified["at"] > VERIFY_CACHE_S:
            verified.update(report=cm.verify(), at=time.time())
        return verified["report"], float(verified["at"])

    def overview_data() -> dict[str, Any]:
        report, at = verification()
        totals = gw.metrics.totals()
        firing: dict[str, list[str]] = {}
        for rule, subject, st in SA.all_states(cm.store):
            if st.firing:
                firing.setdefault(split_subject(subject)[0], []).append(rule)
        eps = []
        for ep in cm.endpoints():
            n, errors = totals.get(ep.endpoint, (0, 0))
            rate = f"{errors / n:.1%}" if n else "n/a"
            drift = TR.latest(cm.store, ep.endpoint, "drifted_share")
            eps.append(
                {
                    **ep.as_dict(),
                    "requests": n,
                    "error_rate": rate,
                    "alerts": sorted(firing.get(ep.endpoint, [])),
                    "drift": None if drift is None else {"share": drift[1], "at": iso(drift[0])},
                }
            )
        return {
            "endpoints": eps,
            "verify": report,
            "verified_at": iso(int(at * 1e6)),
            "cache_s": int(VERIFY_CACHE_S),
        }

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", 307)

    async def overview(request: Request) -> Response:
        return _page("overview", **await run_in_threadpool(overview_data))

    async def login_form(request: Request) -> Response:
        return _page("login", next=request.query_params.get("next", "/ui/"))

    async def login(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "bad_request", "body is not JSON", "token")
        token = body.get("token") if isinstance(body, dict) else None
        target = body.get("next") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target.startswith("/ui/"):
            target = "/ui/"  # never an open redirect
        if not isinstance(token, str) or not token.strip():
            return error(400, "bad_request", "give a token", "token")
        try:
            await gw.access.principal({**request.scope, "headers": _bearer(token.strip())})
        except AuthError as exc:
            return for_error(exc)
        response = JSON({"next": target})
        response.set_cookie(
            SESSION_COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            path="/",
            max_age=12 * 3600,
        )
        return response

    async def endpoint_page(request: Request) -> Response:
        e = request.path_params["endpoint"]
        at_text = request.query_params.get("at")
        window_text = request.query_params.get("window") or DEFAULT_WINDOW
        try:
            at = parse_time(at_text) if at_text else now_us()
        except ValueError as exc:
            return error(400, "bad_query", str(exc), "at")
        try:
            span = parse_duration(window_text)
        except ValueError as exc:
            return error(400, "bad_query", str(exc), "window")
        if not 0 < span <= 366 * 86_400_000_000:
            return error(400, "bad_query", "window must be between 1s and 366d", "window")
        try:
            context = await run_in_threadpool(_endpoint_context, e, at, span)
        except ChronomlError as exc:
            return for_error(exc)
        context["window"] = window_text
        return _page("endpoint", **context)

    def _endpoint_context(e: str, at: int, span: int) -> dict[str, Any]:
        status = cm.status(e, at).as_dict()
        events = cm.history(e).as_dict()["events"]
        with warmer.lock(e):  # during the start-up build: wait for it, then reuse it
            charts = ui_charts.endpoint_charts(timeline, grid, e, events, max(at - span, 0), at)
        raw = {ev.seq: ev for ev in SL.history(cm.store, e)}
        marks = []
        for ev in events:
            le = raw.get(ev["seq"])
            state = le.state if le is not None else None
            marks.append(
                {
                    "seq": ev["seq"],
                    "t": le.effective_at if le is not None else 0,
                    "state": None if state is None else [v.name for v in state],
                    "weights": None
                    if state is None
                    else {v.name: (0.0 if v.shadow else v.weight / 100) for v in state},
                }
            )
        end = now_us()
        return {
            "endpoint": e,
            "at_iso": iso(at),
            "status": status,
            "events": events,
            "bands": bands(marks, end),
            "weights_json": json.dumps(weight_series(marks, end)).replace("<", "\\u003c"),
            "charts_json": ui_charts.embed(charts),
            "decisions": D.recent_ids(cm.store, e),
        }

    async def decision_page(request: Request) -> Response:
        principal = principal_of(request)
        decision_id = request.path_params["id"]
        try:
            d = await run_in_threadpool(cm.decision, decision_id)
        except NotFound as exc:
            return for_error(exc)
        principal.require(Action.READ_STATUS, d.endpoint)
        if principal.can(Action.READ_INPUTS, d.endpoint):
            await run_in_threadpool(gw.read_log, principal, [decision_id], "GET /ui/decisions/{id}")
        else:
            d = d.without_inputs("auditor")
        proof = await run_in_threadpool(ui_pages.proof_status, gw, decision_id)
        return _page(
            "decision",
            d=d.as_dict(),
            output=json.dumps(d.output),
            proof=proof,
            can_replay=principal.can(Action.REPLAY, d.endpoint),
        )

    def verify_now() -> Any:
        # the audit page always recomputes, and refreshes the overview's cached answer
        report = cm.verify()
        verified.update(report=report, at=time.time())
        return report

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _ASSETS:
            return error(404, "not_found", f"no asset {name!r}", "name")
        headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(_asset(name, True), media_type=_ASSETS[name], headers=headers)
        return Response(_asset(name, False), media_type=_ASSETS[name], headers=headers)

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui/", overview, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/endpoints/{endpoint}", endpoint_page, methods=["GET"]),
        Route("/ui/decisions/{id}", decision_page, methods=["GET"]),
        *ui_pages.routes(gw, _page, timeline, grid, verify_now),
        Route("/ui/static/{name}", asset, methods=["GET"]),
    ]


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]
