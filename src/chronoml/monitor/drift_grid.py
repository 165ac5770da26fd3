"""Drift over time on one scale: every feature (and the prediction) in every window.

Each cell is the Jensen-Shannon distance (base 2: 0 = the same distribution,
1 = disjoint) between the window's values and the reference profile of the
version that decided them, over the reference's own histogram bins plus one
bin below and one above its range (numeric), or its categories plus "other".
Unlike a p-value, it grows with drift and does not shrink as windows grow, so
one colour scale serves the whole heatmap. The verdicts of the drift report
(its method and threshold per feature) stay in the report; this is the picture.

Windows lie on the same epoch-aligned grid as :mod:`chronoml.monitor.timeline`;
a window's histograms never change once it has settled, so they are kept.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.domain.ledger import ModelRef
from chronoml.domain.profile import CategoricalProfile, FeatureProfile, NumericProfile, Profile
from chronoml.monitor.timeline import grid, width_for
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import timed_columns as TC
from chronoml.store.blocks import SETTLE_US
from chronoml.store.database import Store
from chronoml.timeutil import iso, now_us

MAX_WINDOWS = 24
CACHE_WINDOWS = 4096
#: A window still open is recomputed at most this often (the heatmap's newest column lags by
#: at most this much; reading it means decoding the blocks it overlaps).
OPEN_TTL_US = 30_000_000
#: A window still open is read as its settled hours, each kept, and the rest.
PIECE_US = 3_600_000_000
#: A view whose end is this close to the clock is a live one ("now"), not an as-of one.
LIVE_US = 1_000_000
Counts = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Cell:
    """One (variant, version)'s histograms in one window."""

    variant: str
    version: str
    digest: str
    rows: int
    features: dict[str, Counts]
    prediction: Counts | None


def bins(p: FeatureProfile) -> tuple[list[str], Counts]:
    """Bin labels and the reference's count in each."""
    if isinstance(p, NumericProfile):
        e = p.histogram_edges
        labels = [f"< {e[0]:.4g}"]
        labels += [f"{a:.4g} to {b:.4g}" for a, b in itertools.pairwise(e)]
        labels.append(f"> {e[-1]:.4g}")
        return labels, np.array([0, *p.histogram_counts, 0], dtype=np.float64)
    cats = [str(c) for c in p.categories]
    return [*cats, "other"], np.append(p.counts.astype(np.float64), 0.0)


def histogram(p: FeatureProfile, values: npt.NDArray[Any]) -> Counts:
    """The window's counts in the bins of :func:`bins` (missing values dropped)."""
    if isinstance(p, NumericProfile):
        try:
            v = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            return np.zeros(len(p.histogram_counts) + 2)
        v = v[np.isfinite(v)]
        edges = np.asarray(p.histogram_edges)
        idx = np.searchsorted(edges, v, side="right")  # 0: below, len(edges): above
        idx[v == edges[-1]] = len(edges) - 1  # the last bin is closed, as numpy's
        return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    assert isinstance(p, CategoricalProfile)
    s = pd.Series(values, dtype=object).dropna()
    index = {c: i for i, c in enumerate(p.categories)}
    codes = s.map(index).fillna(len(index)).to_numpy(dtype=np.int64)
    return np.bincount(codes, minlength=len(index) + 1).astype(np.float64)


def js_distance(ref: Counts, cur: Counts) -> float | None:
    """Jensen-Shannon distance, base 2, of two histograms on the same bins."""
    if ref.sum() <= 0 or cur.sum() <= 0:
        return None
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2

    def kl(a: Counts) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


class DriftGrid:
    """Windowed histograms of endpoints, cached once a window has settled."""

    def __init__(self, store: Store, layouts: D.Layouts, clock: Callable[[], int] = now_us) -> None:
        self.store = store
        self.layouts = layouts
        self.clock = clock
        self._cells: OrderedDict[tuple[str, int, int], list[Cell]] = OrderedDict()
        self._open: dict[tuple[str, int], tuple[int, int, list[Cell]]] = {}
        self._profiles: dict[str, Profile | None] = {}
        self._lock = threading.Lock()

    def profile(self, digest: str) -> Profile | None:
        if digest not in self._profiles:
            raw = self.store.get_profile(digest)
            self._profiles[digest] = None if raw is None else Profile.from_bytes(raw)
        return self._profiles[digest]

    def cells(
        self,
        endpoint: str,
        spans: list[tuple[int, int]],
        served: dict[tuple[str, str], ModelRef],
    ) -> list[list[Cell]]:
        """Each span's cells; the spans not kept yet are read together, in one pass."""
        now = self.clock()
        out: list[list[Cell] | None] = []
        with self._lock:
            for start, end in spans:
                hit = self._cells.get((endpoint, start, end))
                recent = self._open.get((endpoint, start))
                # a live view may reuse the open window read less than OPEN_TTL_US ago
                live = recent is not None and recent[0] > now - OPEN_TTL_US
                if hit is None and live and 0 <= end - recent[1] <= OPEN_TTL_US:  # type: ignore[index]
                    hit = recent[2]  # type: ignore[index]
                out.append(hit)
        todo = [i for i, c in enumerate(out) if c is None]
        if todo:
            got = self._read_split(endpoint, [spans[i] for i in todo], served, now)
            with self._lock:
                for i, cells in zip(todo, got, strict=True):
                    out[i] = cells
                    start, end = spans[i]
                    if end <= now - SETTLE_US:
                        self._cells[(endpoint, start, end)] = cells
                    elif end >= now - LIVE_US:  # a live view ("now"), not an as-of one
                        self._open[(endpoint, start)] = (now, end, cells)
                while len(self._cells) > CACHE_WINDOWS:
                    self._cells.popitem(last=False)
        return [c or [] for c in out]

    def _read_split(
        self,
        endpoint: str,
        spans: list[tuple[int, int]],
        served: dict[tuple[str, str], ModelRef],
        now: int,
    ) -> list[list[Cell]]:
        """Like :meth:`_read`, but a window still open is read as its settled hours (each
        kept once read) and the open rest: a live view reads at most the newest hour again."""
        settled = now - SETTLE_US
        cut = settled - settled % PIECE_US
        pieces: list[list[tuple[int, int]]] = []
        for start, end in spans:
            if end <= settled or cut - start < PIECE_US or start % PIECE_US:
                pieces.append([(start, end)])
            else:
                hours = [(h, h + PIECE_US) for h in range(start, min(cut, end), PIECE_US)]
                pieces.append(hours + ([(cut, end)] if end > cut else []))
        flat = sorted({p for ps in pieces for p in ps})
        with self._lock:
            kept = {p: self._cells.get((endpoint, *p)) for p in flat}
        missing = [p for p in flat if kept[p] is None]
        if missing:
            for p, cells in zip(missing, self._read(endpoint, missing, served), strict=True):
                kept[p] = cells
            with self._lock:
                for p in missing:
                    if p[1] <= settled and p[1] - p[0] == PIECE_US:
                        self._cells[(endpoint, *p)] = kept[p]  # type: ignore[assignment]
        return [_merge([kept[p] or [] for p in ps]) for ps in pieces]

    def _read(
        self,
        endpoint: str,
        spans: list[tuple[int, int]],
        served: dict[tuple[str, str], ModelRef],
    ) -> list[list[Cell]]:
        acc: list[dict[tuple[str, str], Cell]] = [{} for _ in spans]
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        for part in TC.parts(self.store, self.layouts, endpoint, lo, hi):
            ref = served.get((part.variant, part.version))
            prof = self.profile(ref.artifact_digest) if ref is not None else None
            if ref is None or prof is None:
                continue
            for i, (start, end) in enumerate(spans):
                a, b = (int(x) for x in np.searchsorted(part.ts, [start, end]))
                if a >= b:
                    continue
                feats = {
                    f: histogram(p, part.columns[f][a:b])
                    for f, p in prof.features.items()
                    if f in part.columns
                }
                pred = None
                if prof.prediction is not None:
                    pred = histogram(prof.prediction, part.outputs[a:b])
                rows = b - a
                old = acc[i].get((part.variant, part.version))
                if old is not None:  # another block, or the raw rows, of the same version
                    feats = {f: h + old.features[f] for f, h in feats.items() if f in old.features}
                    if pred is not None and old.prediction is not None:
                        pred = pred + old.prediction
                    rows += old.rows
                acc[i][(part.variant, part.version)] = Cell(
                    part.variant, part.version, ref.artifact_digest, rows, feats, pred
                )
        return [list(a.values()) for a in acc]


def _merge(groups: list[list[Cell]]) -> list[Cell]:
    """The cells of adjacent spans as one span's: counts of the same version added."""
    if len(groups) == 1:
        return groups[0]
    acc: dict[tuple[str, str], Cell] = {}
    for cells in groups:
        for c in cells:
            old = acc.get((c.variant, c.version))
            if old is None:
                acc[(c.variant, c.version)] = c
                continue
            feats = {f: h + old.features[f] for f, h in c.features.items() if f in old.features}
            pred = None
            if c.prediction is not None and old.prediction is not None:
                pred = c.prediction + old.prediction
            acc[(c.variant, c.version)] = Cell(
                c.variant, c.version, c.digest, c.rows + old.rows, feats, pred
            )
    return list(acc.values())


def served_models(store: Store, endpoint: str) -> dict[tuple[str, str], ModelRef]:
    """Every (variant, version) that ever served ``endpoint``, with its model."""
    served: dict[tuple[str, str], ModelRef] = {}
    for e in SL.history(store, endpoint):
        for v in e.state or ():
            served[(v.name, v.model.version)] = v.model
    return served


def heatmap(g: DriftGrid, endpoint: str, start: int, end: int) -> dict[str, Any]:
    """Features x windows of drift for the main version of each window, version changes
    marked, and per feature the reference against the newest window with data."""
    served = served_models(g.store, endpoint)
    width = width_for(end - start, MAX_WINDOWS)
    windows: list[dict[str, Any]] = []
    mains: list[Cell | None] = []
    starts = grid(start, end, width)
    spans = [(b, min(b + width, end)) for b in starts]
    for b, cells in zip(starts, g.cells(endpoint, spans, served), strict=True):
        main = max(cells, key=lambda c: c.rows) if cells else None
        mains.append(main)
        windows.append(
            {
                "x": b / 1e6,
                "from": iso(b),
                "to": iso(min(b + width, end)),
                "rows": sum(c.rows for c in cells),
                "version": None if main is None else f"{main.variant} v{main.version}",
            }
        )
    last_version = None
    for wd in windows:
        wd["changed"] = (
            wd["version"] is not None and last_version is not None and wd["version"] != last_version
        )
        if wd["version"] is not None:
            last_version = wd["version"]
    features: list[str] = []
    for m in mains:
        if m is not None:
            features += [f for f in m.features if f not in features]
    values = []
    for f in features:
        row: list[float | None] = []
        for m in mains:
            prof = g.profile(m.digest) if m is not None else None
            if m is None or prof is None or f not in m.features:
                row.append(None)
                continue
            row.append(js_distance(bins(prof.features[f])[1], m.features[f]))
        values.append(row)
    prediction: list[float | None] = []
    for m in mains:
        prof = g.profile(m.digest) if m is not None else None
        if m is None or prof is None or prof.prediction is None or m.prediction is None:
            prediction.append(None)
        else:
            prediction.append(js_distance(bins(prof.prediction)[1], m.prediction))
    dists: dict[str, Any] = {}
    newest = next((i for i in range(len(mains) - 1, -1, -1) if mains[i] is not None), None)
    if newest is not None:
        m = mains[newest]
        assert m is not None
        prof = g.profile(m.digest)
        assert prof is not None
        for f in features:
            if f in m.features:
                labels, ref = bins(prof.features[f])
                dists[f] = _shares(labels, ref, m.features[f])
        if prof.prediction is not None and m.prediction is not None:
            labels, ref = bins(prof.prediction)
            dists["prediction"] = _shares(labels, ref, m.prediction)
    return {
        "measure": "Jensen-Shannon distance to the reference (0 = same, 1 = disjoint)",
        "width_s": width // 1_000_000,
        "windows": windows,
        "features": features,
        "values": values,
        "prediction": prediction,
        "distributions": dists,
        "distributions_window": None if newest is None else windows[newest],
    }


def _shares(labels: list[str], ref: Counts, cur: Counts) -> dict[str, Any]:
    return {
        "labels": labels,
        "reference": (ref / max(ref.sum(), 1)).round(5).tolist(),
        "window": (cur / max(cur.sum(), 1)).round(5).tolist(),
        "distance": js_distance(ref, cur),
    }


def version_drift(
    g: DriftGrid, endpoint: str, start: int, end: int, version: str
) -> dict[str, float | None]:
    """One version's drift per feature (and prediction) over the whole span, merged from
    the windows' histograms."""
    served = served_models(g.store, endpoint)
    width = width_for(end - start, MAX_WINDOWS)
    merged: dict[str, Counts] = {}
    digest = None
    spans = [(b, min(b + width, end)) for b in grid(start, end, width)]
    for cells in g.cells(endpoint, spans, served):
        for c in cells:
            if c.version != version:
                continue
            digest = c.digest
            items = list(c.features.items())
            if c.prediction is not None:
                items.append(("prediction", c.prediction))
            for f, h in items:
                merged[f] = merged[f] + h if f in merged else h.copy()
    prof = g.profile(digest) if digest else None
    if prof is None:
        return {}
    out: dict[str, float | None] = {}
    for f, h in merged.items():
        p = prof.prediction if f == "prediction" else prof.features.get(f)
        if p is not None:
            out[f] = js_distance(bins(p)[1], h)
    return out
