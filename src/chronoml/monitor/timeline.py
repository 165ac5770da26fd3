"""An endpoint's serving over time, in buckets on a fixed grid: requests, latency, quality.

Buckets lie on a grid aligned to the epoch (widths from :data:`LADDER`), so
the same bucket is the same whatever window a page asks for. The decision log
is append-only, so a bucket that ended more than ``SETTLE_US`` ago never
changes: its figures are computed once and kept (bounded), and a page over a
million decisions reads only the buckets still open. Quality depends on labels,
which arrive late for old decisions too: per endpoint it keeps, for every
feedback row, what that row changed (one more labelled decision and its
outcome, or a relabelled decision's old outcome swapped for the new one) with
the decision's time and the time the label arrived, and reads only the feedback
rows newer than the last it saw. Quality as of ``T`` sums the changes of the
labels that had arrived by ``T``: an as-of view never shows a label sent later.
A label counts as arrived no earlier than any label with a lower id (arrival
times are made non-decreasing in id order), so each decision's count is the
label it had at ``T``.

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
class _Labels:
    """What each feedback row on one endpoint changed, in id order, as columns."""

    mark: int = 0  # the highest feedback id read
    arrived: int = 0  # the latest arrival time so far (arrivals never go back)
    metric: str | None = None
    versions: dict[str, int] = field(default_factory=dict)
    #: decision time, arrival time, version code, labelled (+1, 0, -1), outcome change
    ts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    at: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    version: npt.NDArray[np.int32] = field(default_factory=lambda: np.empty(0, np.int32))
    dn: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    dsum: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))

    def add(self, rows: list[tuple[int, int, str, Any, Any, Any, int]]) -> None:
        if rows and self.metric is None:
            self.metric = _metric(rows)
        metric = self.metric or "accuracy"
        ts, at, ver, dn, dsum = [], [], [], [], []
        for fid, t, version, output, label, before, recorded_at in rows:
            old = outcome(metric, output, before) if before is not None else None
            new = outcome(metric, output, label)
            self.arrived = max(self.arrived, recorded_at)
            self.mark = fid
            ts.append(t)
            at.append(self.arrived)
            ver.append(self.versions.setdefault(version, len(self.versions)))
            dn.append((new is not None) - (old is not None))
            dsum.append((new or 0.0) - (old or 0.0))
        if ts:
            self.ts = np.concatenate([self.ts, np.asarray(ts, np.int64)])
            self.at = np.concatenate([self.at, np.asarray(at, np.int64)])
            self.version = np.concatenate([self.version, np.asarray(ver, np.int32)])
            self.dn = np.concatenate([self.dn, np.asarray(dn, np.float64)])
            self.dsum = np.concatenate([self.dsum, np.asarray(dsum, np.float64)])


class Timeline:
    """Bucketed serving figures of endpoints, cached where they can no longer change."""

    def __init__(self, store: Store, clock: Callable[[], int] = now_us) -> None:
        self.store = store
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, int, int], Bucket] = OrderedDict()
        self._labels: dict[str, _Labels] = {}
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
        """Quality per bucket of ``[start, end)`` and per version, from the labels that had
        arrived by ``end``."""
        with self._lock:
            state = self._labels.setdefault(endpoint, _Labels())
            state.add(TR.labels_since(self.store, endpoint, state.mark))
            ts, at, ver, dn, dsum = state.ts, state.at, state.version, state.dn, state.dsum
            names = list(state.versions)
            metric = state.metric or "accuracy"
        starts = grid(start, end, width)
        if not starts:
            return Quality(metric, [], {})
        first = starts[0]
        keep = (ts >= first) & (ts < first + len(starts) * width) & (at <= end)
        bucket = (ts[keep] - first) // width
        # the changes are whole numbers of labelled decisions: summed as floats, then rounded
        n = np.rint(np.bincount(bucket, weights=dn[keep], minlength=len(starts))).astype(int)
        total = np.bincount(bucket, weights=dsum[keep], minlength=len(starts))
        points: list[tuple[int, float | None]] = [
            (int(c), float(t) / int(c) if c else None) for c, t in zip(n, total, strict=True)
        ]
        vn = np.rint(np.bincount(ver[keep], weights=dn[keep], minlength=len(names))).astype(int)
        vt = np.bincount(ver[keep], weights=dsum[keep], minlength=len(names))
        versions = {names[i]: (int(vn[i]), float(vt[i])) for i in range(len(names)) if vn[i]}
        return Quality(metric, points, versions)


def _metric(rows: list[tuple[int, int, str, Any, Any, Any, int]]) -> str:
    """Accuracy when outputs are classes, absolute error when they are real numbers."""
    for _, _, _, output, label, _, _ in rows[:200]:
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
