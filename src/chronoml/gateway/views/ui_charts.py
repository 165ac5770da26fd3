"""The data behind the endpoint and compare pages' charts, as JSON a page embeds.

Everything is aggregated here, on the server, from the bucketed timeline and
the drift grid (which cache what can no longer change): a page ships a few
kilobytes of series, never rows.
"""

from __future__ import annotations

import json
from typing import Any

from chronoml.monitor import drift_grid as G
from chronoml.monitor import timeline as T
from chronoml.store import timeline_reads as TR
from chronoml.store.database import Store
from chronoml.timeutil import parse_time


def embed(data: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def marker_kind(event: dict[str, Any]) -> str:
    """Which marker a ledger event draws as."""
    kind, summary = str(event["kind"]), str(event.get("summary", ""))
    if kind.startswith("alert_"):
        return "alert"
    if kind == "experiment_verdict":
        return "verdict"
    if "promot" in kind or "promot" in summary:
        return "promotion"
    if kind.startswith("job_"):
        return "job"
    if kind == "deploy":
        return "canary" if "canary:" in summary else "deploy"
    if kind == "rollback":
        return "rollback"
    return "change"


def markers(events: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    """Events inside ``[start, end]`` as markers: time in seconds, kind, link to the event."""
    out = []
    for e in events:
        t = parse_time(str(e["effective_at"]))
        if start <= t <= end:
            out.append(
                {
                    "x": t / 1e6,
                    "seq": e["seq"],
                    "kind": marker_kind(e),
                    "label": f"#{e['seq']} {e['kind']}: {e.get('summary', '')}",
                }
            )
    return out


def error_rates(store: Store, endpoint: str, start: int, end: int) -> dict[str, Any]:
    """The monitor's recorded error rates (per window end; versions averaged)."""
    by_end: dict[int, list[float]] = {}
    for t, _version, value in TR.monitored(store, endpoint, "error_rate", start, end):
        if value is not None:
            by_end.setdefault(t, []).append(value)
    xs = sorted(by_end)
    return {"x": [t / 1e6 for t in xs], "rate": [sum(by_end[t]) / len(by_end[t]) for t in xs]}


def endpoint_charts(
    tl: T.Timeline,
    grid: G.DriftGrid,
    endpoint: str,
    events: list[dict[str, Any]],
    start: int,
    end: int,
) -> dict[str, Any]:
    """Every chart of the endpoint page over ``[start, end)``."""
    return {
        "from": start / 1e6,
        "to": end / 1e6,
        "series": T.series(tl, endpoint, start, end),
        "errors": error_rates(tl.store, endpoint, start, end),
        "drift": G.heatmap(grid, endpoint, start, end),
        "markers": markers(events, start, end),
    }


def compare(
    tl: T.Timeline, grid: G.DriftGrid, endpoint: str, a: str, b: str, start: int, end: int
) -> dict[str, Any]:
    """Versions ``a`` and ``b`` of ``endpoint`` over the same span, for charts on one scale."""
    stats = T.by_version(tl, endpoint, start, end)
    out: dict[str, Any] = {"versions": [a, b], "latency_edges": T.LATENCY_EDGES.tolist()}
    drift = {v: G.version_drift(grid, endpoint, start, end, v) for v in (a, b)}
    features = sorted(set(drift[a]) | set(drift[b]), key=lambda f: (f == "prediction", f))
    out["drift"] = {
        "features": features,
        a: [drift[a].get(f) for f in features],
        b: [drift[b].get(f) for f in features],
    }
    rows = {}
    for v in (a, b):
        s = stats.get(v)
        if s is None:
            rows[v] = {"decisions": 0}
            continue
        hist = s.pop("histogram")
        nz = [i for i, c in enumerate(hist.tolist()) if c]
        s["latency_hist"] = {str(i): int(hist[i]) for i in nz}
        rows[v] = s
    out["stats"] = rows
    return out
