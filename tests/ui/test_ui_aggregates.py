"""The server-side aggregates behind the UI's charts, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from chronoml.domain import codec
from chronoml.domain import ledger as L
from chronoml.domain.profiling import build_profile
from chronoml.ids import new_ids
from chronoml.monitor.drift_grid import (
    DriftGrid,
    bins,
    heatmap,
    histogram,
    js_distance,
    served_models,
)
from chronoml.monitor.timeline import Timeline, by_version
from chronoml.store import Store, schema
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

M = 60_000_000  # one minute in microseconds
T0 = 1_800_000_000 * 1_000_000 - (1_800_000_000 * 1_000_000) % (60 * M)  # an hour boundary


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    s.upgrade()
    return s


def _log(store: Store, ts: list[int], lat: list[float], outputs: list[str]) -> list[str]:
    sch = (("x", "float"),)
    layout = codec.layout_id(sch)
    D.Layouts(store).ensure(layout, sch)
    nums, txts = codec.encode(pd.DataFrame({"x": [0.0] * len(ts)}), sch)
    ids = new_ids(len(ts))
    D.insert_many(
        store,
        [
            D.DecisionRow(i, t, "e", "a", "m", "1", 1, False, None, i, layout, n, tx, o, None, la)
            for i, t, n, tx, o, la in zip(ids, ts, nums, txts, outputs, lat, strict=True)
        ],
    )
    return ids


def _label(store: Store, pairs: list[tuple[str, str]], at: int = T0) -> None:
    rows = [
        {"decision_id": d, "label": y, "label_num": None, "recorded_at": at, "actor": "t"}
        for d, y in pairs
    ]
    with store.write() as conn:
        conn.execute(insert(schema.feedback), rows)


def test_buckets_cut_at_the_as_of_time_and_are_not_kept_cut(store: Store) -> None:
    # ten decisions in the hour's first minute, the last five after T0 + 30 s
    ts = [T0 + i * 6_000_000 for i in range(10)]
    _log(store, ts, [float(i + 1) for i in range(10)], ["0"] * 10)
    tl = Timeline(store, clock=lambda: T0 + 120 * M)  # long settled
    cut = tl.buckets("e", T0, T0 + 30_000_000, M)
    assert [(b, bk.requests) for b, bk in cut] == [(T0, 5)]
    assert cut[0][1].p50 == 3.0
    whole = tl.buckets("e", T0, T0 + 2 * M, M)
    assert [bk.requests for _, bk in whole] == [10, 0]
    assert whole[0][1].p50 == 5.5
    assert whole[0][1].p99 == pytest.approx(9.91)


def test_quality_follows_the_latest_label_of_each_decision(store: Store) -> None:
    ids = _log(store, [T0 + i for i in range(4)], [1.0] * 4, ["1", "1", "0", "0"])
    tl = Timeline(store, clock=lambda: T0 + 120 * M)
    _label(store, [(ids[0], "1"), (ids[1], "1")])
    q = tl.quality("e", T0, T0 + M, M)
    assert q.metric == "accuracy" and q.points == [(2, 1.0)]
    # a relabel replaces the outcome it had; a new label adds one
    _label(store, [(ids[1], "0"), (ids[2], "0")])
    q = tl.quality("e", T0, T0 + M, M)
    assert q.points == [(3, 2 / 3)]
    stats = by_version(tl, "e", T0, T0 + M)
    assert stats["1"]["labelled"] == 3 and stats["1"]["decisions"] == 4


def test_quality_as_of_a_time_uses_only_the_labels_that_had_arrived(store: Store) -> None:
    # four decisions in the hour's first minute; labels arrive over the next hour
    ids = _log(store, [T0 + i for i in range(4)], [1.0] * 4, ["1", "1", "0", "0"])
    tl = Timeline(store, clock=lambda: T0 + 120 * M)
    _label(store, [(ids[0], "1"), (ids[1], "1")], at=T0 + 10 * M)
    assert tl.quality("e", T0, T0 + 60 * M, 60 * M).points == [(2, 1.0)]
    # later: one decision relabelled wrong, one more labelled wrong
    _label(store, [(ids[1], "0"), (ids[2], "1")], at=T0 + 40 * M)
    now = tl.quality("e", T0, T0 + 60 * M, 60 * M)
    assert now.points == [(3, 1 / 3)]
    # as of T0 + 30 min neither had arrived: the page then showed 2 right of 2
    then = tl.quality("e", T0, T0 + 30 * M, 60 * M)
    assert then.points == [(2, 1.0)] and then.versions == {"1": (2, 2.0)}
    assert by_version(tl, "e", T0, T0 + 30 * M)["1"]["quality"] == 1.0
    # before any label had arrived, no quality at all
    assert tl.quality("e", T0, T0 + 5 * M, 60 * M).points == [(0, None)]
    # a label whose clock ran behind (a lower time after a higher id) counts from when
    # the labels before it had arrived, so the decision never shows a label it lost
    _label(store, [(ids[3], "0")], at=T0 + 20 * M)
    assert tl.quality("e", T0, T0 + 30 * M, 60 * M).points == [(2, 1.0)]
    assert tl.quality("e", T0, T0 + 50 * M, 60 * M).points == [(4, 2 / 4)]


def test_drift_is_one_scale_that_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5000)})
    p = build_profile(ref).features["x"]
    labels, counts = bins(p)
    assert labels[0].startswith("<") and labels[-1].startswith(">")
    same = js_distance(counts, histogram(p, rng.normal(size=2000)))
    small = js_distance(counts, histogram(p, rng.normal(0.5, size=2000)))
    far = js_distance(counts, histogram(p, rng.normal(50, size=2000)))
    assert same is not None and small is not None and far is not None
    assert same < 0.1 < small < far
    assert far == pytest.approx(1.0)  # every value above the reference's range: disjoint
    h = histogram(p, np.array([-1e9, np.nan, 1e9]))
    assert h[0] == 1 and h[-1] == 1 and h.sum() == 2  # missing values are dropped


def _deploy(store: Store, version: str, at: int) -> int:
    ref = L.ModelRef("m", version, f"run{version}", f"sha256:{int(version):064x}")
    v = L.Variant(name=f"m-v{version}", model=ref, weight=0, shadow=False)
    payload = {"variant": v.to_dict(), "weight_bp": None, "model_uri": f"models:/m/{version}"}
    return SL.append(store, L.Change("deploy", "e", "t", payload), effective_at=at, now=at).seq


def _two_versions(store: Store) -> D.Layouts:
    """v1 answers 500 decisions from T0 (one each 6 s), v2 500 shifted ones from T0 + 1 h."""
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "y": rng.normal(size=3000)})
    prof = build_profile(ref, (ref["x"] > 0).astype(float).to_numpy())
    for v in ("1", "2"):
        store.put_profile(f"sha256:{int(v):064x}", "m", v, "sha256:snap", prof.to_bytes())
    seqs = {"1": _deploy(store, "1", T0), "2": _deploy(store, "2", T0 + 60 * M)}
    sch = (("x", "float"), ("y", "float"))
    layout = codec.layout_id(sch)
    layouts = D.Layouts(store)
    layouts.ensure(layout, sch)
    rows = []
    for v, start, shift in (("1", T0, 0.0), ("2", T0 + 60 * M, 3.0)):
        df = pd.DataFrame({"x": rng.normal(shift, size=500), "y": rng.normal(size=500)})
        nums, txts = codec.encode(df, sch)
        for i, did in enumerate(new_ids(500)):
            out = "1" if df["x"].iloc[i] > 0 else "0"
            rows.append(
                D.DecisionRow(did, start + i * M // 10, "e", f"m-v{v}", "m", v, seqs[v], False,
                              None, did, layout, nums[i], txts[i], out, float(out), 1.0)
            )  # fmt: skip
    D.insert_many(store, rows)
    return layouts


def test_heatmap_marks_the_version_change_and_shows_both_distributions(store: Store) -> None:
    layouts = _two_versions(store)
    grid = DriftGrid(store, layouts, clock=lambda: T0 + 600 * M)
    h = heatmap(grid, "e", T0, T0 + 120 * M)
    assert h["features"] == ["x", "y"]
    versions = [w["version"] for w in h["windows"] if w["rows"]]
    assert versions[0] == "m-v1 v1" and versions[-1] == "m-v2 v2"
    changed = [w for w in h["windows"] if w["changed"]]
    assert len(changed) == 1 and changed[0]["version"] == "m-v2 v2"
    x_row, y_row = h["values"]
    i = h["windows"].index(changed[0])
    assert x_row[i] > 0.5 > y_row[i]  # x shifted under v2, y did not
    assert max(v for v in x_row[:i] if v is not None) < 0.35  # 50 rows a window: some noise
    dist = h["distributions"]["x"]
    assert len(dist["reference"]) == len(dist["window"]) == len(dist["labels"])
    assert sum(dist["window"]) == pytest.approx(1.0)
    assert h["prediction"][i] is not None


def test_an_open_window_is_its_settled_hours_and_the_rest(store: Store) -> None:
    layouts = _two_versions(store)
    served = served_models(store, "e")
    span = [(T0, T0 + 110 * M)]
    # long after: one pass over the whole window
    whole = DriftGrid(store, layouts, clock=lambda: T0 + 600 * M).cells("e", span, served)[0]
    # 100 minutes in, the window is still open: its first hour is read and kept on its own
    live = DriftGrid(store, layouts, clock=lambda: T0 + 100 * M)
    split = live.cells("e", span, served)[0]
    assert ("e", T0, T0 + 60 * M) in live._cells
    assert ("e", T0, T0 + 110 * M) not in live._cells
    key = {(c.variant, c.version): c for c in whole}
    assert sorted(key) == sorted((c.variant, c.version) for c in split)
    for c in split:
        w = key[(c.variant, c.version)]
        assert c.rows == w.rows and c.rows == 500
        for f, h in w.features.items():
            assert np.array_equal(c.features[f], h), f
        assert w.prediction is not None and c.prediction is not None
        assert np.array_equal(c.prediction, w.prediction)
