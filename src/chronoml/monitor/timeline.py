"""An endpoint's serving over time, in buckets on a fixed grid: requests, latency, quality.

Buckets lie on a grid aligned to the epoch (widths from :data:`LADDER`), so
the same bucket is the same whatever window a page asks for. The decision log
is append-only, so a bucket that ended more than ``SETTLE_US`` ago never
changes: its figures are computed once and kept (bounded), and a page over a
million decisions reads only the buckets still open. Quality depends on labels,
which arrive late for old decisions too: per bucket and version it keeps the
sum of outcomes and counts, and adds only the feedback rows newer than the last
it saw (a relabelled decision swaps its old outcome for the new one). Quality
is that of the labels known now, also in an as-of view.

Per bucket and version a latency histogram on fixed log-spaced bins is kept,
so any span's percentiles per version (the compare page) merge from buckets;
the per-bucket p50/p99 of the chart are exact.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from chronoml.monitor.ab_outcomes import outcome
from chronoml.store import timeline_reads as TR
from chronoml.store.blocks import SETTLE_US
from chronoml.store.database import Store
from chronoml.timeutil import now_us

S = 1_000_000
#: Bucket widths a chart may use, in microseconds.
LADDER = tuple(w * S for w in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400))
MAX_BUCKETS = 120
#: Latency histogram bins: 0.001 ms to 100 s, log-spaced (each bin spans 3.7%).
LATENCY_EDGES = np.geomspace(1e-3, 1e5, 501)
#: Buckets kept (each holds one 2 KB histogram per version): about 10 MB per version.
CACHE_BUCKETS = 5_000


def width_for(span: int, most: int = MAX_BUCKETS) -> int:
    """The narrowest width of the ladder that covers ``span`` in at most ``most`` buckets."""
    for w in LADDER:
        if span / w <= most:
            return w
    return LADDER[-1] * (span // (LADDER[-1] * most) + 1)


def grid(start: int, end: int, width: int) -> list[int]:
    """Starts of the grid's buckets that overlap ``[start, end)``."""
    first = start - start % width
    return list(range(first, end, width))


@dataclass
class Bucket:
    requests: int = 0
    p50: float | None = None
    p99: float | None = None
    #: version -> (decisions, latency histogram counts)
    versions: dict[str, tuple[int, npt.NDArray[np.int32]]] = field(default_factory=dict)


@dataclass
class Quality:
    metric: str
    #: per bucket: (labelled, mean outcome)
    points: list[tuple[int, float | None]]
    #: version -> (labelled, sum of outcomes)
    versions: dict[str, tuple[int, float]]


@dataclass
class _Outcomes:
    """Running outcome sums of one endpoint on one grid width."""

    mark: int = 0
    metric: str | None = None
    #: bucket start -> version -> [labelled, sum of outcomes]
    sums: dict[int, dict[str, list[float]]] = field(default_factory=dict)


class Timeline:
    """Bucketed serving figures of endpoints, cached where they can no longer change."""

    def __init__(self, store: Store, clock: Callable[[], int] = now_us) -> None:
        self.store = store
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, int, int], Bucket] = OrderedDict()
        self._outcomes: dict[tuple[str, int], _Outcomes] = {}
        self._lock = threading.Lock()

    def buckets(self, endpoint: str, start: int, end: int, width: int) -> list[tuple[int, Bucket]]:
        starts = grid(start, end, width)
        settled = self.clock() - SETTLE_US
        with self._lock:
            got = {b: self._buckets.get((endpoint, width, b)) for b in starts}
        missing = [b for b in starts if got[b] is None]
        if missing:
            # a bucket past ``end`` (an as-of view) is cut there and not kept
            fresh = self._compute(endpoint, missing[0], min(missing[-1] + width, end), width)
            with self._lock:
                for b in missing:
                    got[b] = fresh.get(b, Bucket())
                    if b + width <= min(settled, end):
                        self._buckets[(endpoint, width, b)] = got[b]  # type: ignore[assignment]
                while len(self._buckets) > CACHE_BUCKETS:
                    self._buckets.popitem(last=False)
        return [(b, got[b] or Bucket()) for b in starts]

    def _compute(self, endpoint: str, start: int, end: int, width: int) -> dict[int, Bucket]:
        s = TR.served(self.store, endpoint, start, end)
        if not len(s.ts):
            return {}
        order = np.argsort(s.ts, kind="stable")
        ts, lat, ver = s.ts[order], s.latency_ms[order], s.version[order]
        keys = (ts - start) // width
        cuts = np.flatnonzero(np.diff(keys)) + 1
        out: dict[int, Bucket] = {}
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ts)], strict=True):
            b = start + int(keys[lo]) * width
            part, vpart = lat[lo:hi], ver[lo:hi]
            p50, p99 = np.percentile(part, [50, 99])
            bucket = Bucket(int(hi - lo), float(p50), float(p99))
            for code in np.unique(vpart):
                sel = part[vpart == code]
                hist = np.histogram(np.clip(sel, 1e-3, 1e5), LATENCY_EDGES)[0].astype(np.int32)
                bucket.versions[s.versions[int(code)]] = (len(sel), hist)
            out[b] = bucket
        return out

    def quality(self, endpoint: str, start: int, end: int, width: int) -> Quality:
        with self._lock:
            state = self._outcomes.setdefault((endpoint, width), _Outcomes())
            rows = TR.labels_since(self.store, endpoint, state.mark)
            if rows and state.metric is None:
                state.metric = _metric(rows)
            metric = state.metric or "accuracy"
            for fid, ts, version, output, label, before in rows:
                acc = state.sums.setdefault(ts - ts % width, {}).setdefault(version, [0, 0.0])
                old = outcome(metric, output, before) if before is not None else None
                if old is not None:
                    acc[0] -= 1
                    acc[1] -= old
                new = outcome(metric, output, label)
                if new is not None:
                    acc[0] += 1
                    acc[1] += new
                state.mark = fid
            points: list[tuple[int, float | None]] = []
            per: dict[str, list[float]] = {}
            for b in grid(start, end, width):
                n, total = 0, 0.0
                for version, (vn, vt) in state.sums.get(b, {}).items():
                    n, total = n + int(vn), total + vt
                    acc = per.setdefault(version, [0, 0.0])
                    acc[0] += vn
                    acc[1] += vt
                points.append((n, total / n if n else None))
        return Quality(metric, points, {k: (int(n), t) for k, (n, t) in per.items()})


def _metric(rows: list[tuple[int, int, str, Any, Any, Any]]) -> str:
    """Accuracy when outputs are classes, absolute error when they are real numbers."""
    for _, _, _, output, label, _ in rows[:200]:
        if isinstance(output, float) and not output.is_integer():
            return "abs_error"
        if isinstance(label, float) and not label.is_integer():
            return "abs_error"
    return "accuracy"


def percentiles(hist: npt.NDArray[np.int64], qs: tuple[float, ...]) -> list[float | None]:
    """Percentiles from a latency histogram (each the geometric middle of its bin)."""
    n = int(hist.sum())
    if not n:
        return [None for _ in qs]
    cum = np.cumsum(hist)
    mids = np.sqrt(LATENCY_EDGES[:-1] * LATENCY_EDGES[1:])
    return [float(mids[int(np.searchsorted(cum, q / 100 * n))]) for q in qs]


def series(tl: Timeline, endpoint: str, start: int, end: int) -> dict[str, Any]:
    """The charts' data: x in seconds, one list per figure (None where no data)."""
    width = width_for(end - start)
    got = tl.buckets(endpoint, start, end, width)
    q = tl.quality(endpoint, start, end, width)
    per_minute = 60 * S / width
    return {
        "width_s": width // S,
        "x": [b / S for b, _ in got],
        "requests": [bk.requests for _, bk in got],
        "per_minute": [round(bk.requests * per_minute, 3) for _, bk in got],
        "p50": [bk.p50 for _, bk in got],
        "p99": [bk.p99 for _, bk in got],
        "quality_metric": q.metric,
        "quality": [v for _, v in q.points],
        "labelled": [n for n, _ in q.points],
    }


def by_version(tl: Timeline, endpoint: str, start: int, end: int) -> dict[str, dict[str, Any]]:
    """Per version over the span: decisions, p50/p99 latency, the latency histogram, quality."""
    width = width_for(end - start)
    hists: dict[str, npt.NDArray[np.int64]] = {}
    counts: dict[str, int] = {}
    for _, bk in tl.buckets(endpoint, start, end, width):
        for v, (n, h) in bk.versions.items():
            counts[v] = counts.get(v, 0) + n
            hists[v] = hists[v] + h if v in hists else h.astype(np.int64)
    q = tl.quality(endpoint, start, end, width)
    out: dict[str, dict[str, Any]] = {}
    for v in counts:
        p50, p90, p99 = percentiles(hists[v], (50, 90, 99))
        n, total = q.versions.get(v, (0, 0.0))
        out[v] = {
            "decisions": counts[v],
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "histogram": hists[v],
            "quality_metric": q.metric,
            "labelled": n,
            "quality": total / n if n else None,
        }
    return out
