"""Point-in-time joins against a brute-force oracle, edge by edge, and every bad input."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronoml.datasets import DatasetError, FeatureSpec, JoinSpec, build_training_set

S = 1_000_000  # microseconds in a second
T0 = pd.Timestamp("2025-03-01")


def ts(seconds: float | None, unit: str = "us", tz: str | None = None) -> Any:
    if seconds is None:
        return pd.NaT
    t = T0 + pd.Timedelta(seconds=seconds)
    return t.tz_localize(tz) if tz else t


def times(seconds: Sequence[float | None], unit: str = "us", tz: str | None = None) -> Any:
    """A time column (an array, so a frame built with an index does not realign it)."""
    s = pd.Series([ts(x) for x in seconds], dtype=f"datetime64[{unit}]")
    return (s.dt.tz_localize(tz) if tz else s).array


# --- the oracle -----------------------------------------------------------------------


def _ns(value: Any) -> int | None:
    return None if pd.isna(value) else int(pd.Timestamp(value).value)


def oracle(labels: pd.DataFrame, spec: JoinSpec) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """For each label row and table, a plain loop over every feature row of the table."""
    out: dict[str, list[Any]] = {}
    missing: dict[str, int] = {}
    for f in spec.features:
        table = f.source if isinstance(f.source, pd.DataFrame) else pd.read_parquet(f.source)
        ent, tim = f.entity or spec.entity, f.time or spec.time
        keys = {ent, tim, f.created_at}
        cols = list(f.columns) if f.columns else [c for c in table.columns if c not in keys]
        picks: list[int | None] = []
        for i in range(len(labels)):
            e, t = labels[spec.entity].iloc[i], _ns(labels[spec.time].iloc[i])
            best: tuple[int, int, int] | None = None
            if t is not None and not pd.isna(e):
                for pos in range(len(table)):
                    if pd.isna(table[ent].iloc[pos]) or table[ent].iloc[pos] != e:
                        continue
                    k = _ns(table[tim].iloc[pos])
                    if k is None:
                        continue
                    c = _ns(table[f.created_at].iloc[pos]) if f.created_at else None
                    c = k if c is None else c
                    if k > t or c > t:
                        continue
                    if f.ttl is not None and k < t - f.ttl * 1000:
                        continue
                    if best is None or (k, c, pos) > best:
                        best = (k, c, pos)
            picks.append(None if best is None else best[2])
        missing[f.name] = sum(p is None for p in picks)
        for col in cols:
            out[f"{f.name}.{col}"] = [None if p is None else table[col].iloc[p] for p in picks]
    return out, missing


def assert_matches_oracle(labels: pd.DataFrame, spec: JoinSpec) -> None:
    got = build_training_set(labels, spec)
    want, missing = oracle(labels, spec)
    assert dict(got.missing) == missing
    assert len(got.frame) == len(labels)
    assert list(got.frame.index) == list(labels.index)
    for c in labels.columns:  # the labels' own columns are untouched, in order
        assert got.frame[c].tolist() == labels[c].tolist()
    for key, expected in want.items():
        name, col = key.split(".", 1)
        actual = got.frame[got.columns[name][col]].tolist()
        for row, (a, b) in enumerate(zip(actual, expected, strict=True)):
            if b is None or pd.isna(b):
                assert pd.isna(a), (key, row, a, b)
            else:
                assert a == b, (key, row, a, b)


# --- property: agreement on generated data --------------------------------------------


@dataclass
class Case:
    labels: pd.DataFrame
    tables: list[pd.DataFrame]
    ttls: list[int | None]
    created: list[bool]


SECONDS = st.integers(min_value=0, max_value=20)


def with_far_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Add rows of an entity no label has, so far apart and so finely timed that the
    engine cannot pack time and row number into one integer and takes its other path."""
    # 16 of them, so the row number needs 5 bits on top of 58 for the microseconds.
    start = np.datetime64("0001-01-01T00:00:00.000001", "us") + np.arange(8)
    end = np.datetime64("9999-12-31", "us") + np.arange(8)
    far = pd.DataFrame(
        {
            "e": np.full(16, 99, dtype=np.int64),
            "t": np.concatenate([start, end]),
            "x": np.zeros(16),
            "n": -np.arange(1, 17, dtype=np.int64),
        }
    )
    if "c" in frame.columns:
        far["c"] = far["t"]
    return pd.concat([far.iloc[:8], frame, far.iloc[8:]], ignore_index=True)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n_labels = draw(st.integers(0, 12))
    entities = st.integers(0, 3)
    labels = pd.DataFrame(
        {
            "e": np.array([draw(entities) for _ in range(n_labels)], dtype=np.int64),
            "t": times([draw(st.one_of(SECONDS, st.none())) for _ in range(n_labels)]),
            "label": list(range(n_labels)),
        },
        index=[draw(st.integers(0, 3)) for _ in range(n_labels)],  # duplicates too
    )
    tables, ttls, created = [], [], []
    for j in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 15))
        t = [draw(st.one_of(SECONDS, st.none())) for _ in range(n)]
        frame = pd.DataFrame(
            {
                "e": np.array([draw(entities) for _ in range(n)], dtype=np.int64),
                "t": times(t),
                "x": [float(draw(st.integers(0, 99))) for _ in range(n)],
                "n": np.arange(n, dtype=np.int64) + 100 * j,
            }
        )
        has_created = draw(st.booleans())
        if has_created:
            delays = [draw(st.sampled_from([0, 0, 1, 3, 10, None, -2])) for _ in range(n)]
            frame["c"] = times(
                [None if x is None or d is None else x + d for x, d in zip(t, delays, strict=True)]
            )
        if draw(st.booleans()):
            frame = with_far_rows(frame)
        tables.append(frame)
        ttls.append(draw(st.sampled_from([None, 0, 2 * S, 5 * S, 30 * 86400 * S])))
        created.append(has_created)
    return Case(labels, tables, ttls, created)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.booleans())
def test_agrees_with_oracle_cell_for_cell(case: Case, via_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        features = []
        for j, (frame, ttl, has_c) in enumerate(
            zip(case.tables, case.ttls, case.created, strict=True)
        ):
            source: Any = frame
            if via_parquet:
                source = Path(d) / f"f{j}.parquet"
                frame.to_parquet(source)
            features.append(
                FeatureSpec(f"f{j}", source, ttl=ttl, created_at="c" if has_c else None)
            )
        assert_matches_oracle(case.labels, JoinSpec("e", "t", tuple(features)))


# --- the edges, one by one --------------------------------------------------------------


def one(
    labels_s: list[float | None], feat_s: list[float], ttl: int | None = None, **kw: Any
) -> list[Any]:
    labels = pd.DataFrame({"e": [1] * len(labels_s), "t": times(labels_s)})
    feat = pd.DataFrame({"e": [1] * len(feat_s), "t": times(feat_s), "x": range(len(feat_s))})
    for k, v in kw.items():
        feat[k] = v
    created = "c" if "c" in kw else None
    spec = JoinSpec("e", "t", (FeatureSpec("f", feat, ttl=ttl, created_at=created),))
    assert_matches_oracle(labels, spec)
    return build_training_set(labels, spec).frame["x"].tolist()


def na(values: list[Any]) -> list[Any]:
    return [None if pd.isna(v) else v for v in values]


def test_feature_at_exactly_the_label_time_is_used() -> None:
    assert na(one([10], [5, 10, 11])) == [1]


def test_ttl_bound_is_inclusive_and_one_second_past_it_is_not() -> None:
    assert na(one([40], [10], ttl=30 * S)) == [0]
    assert na(one([41], [10], ttl=30 * S)) == [None]
    assert na(one([10], [10], ttl=0)) == [0]


def test_cold_start_gives_nulls_and_is_counted() -> None:
    labels = pd.DataFrame({"e": [1, 1, 2], "t": times([1, 9, 9])})
    feat = pd.DataFrame({"e": [1], "t": times([5]), "x": [7.0]})
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),)))
    assert na(got.frame["x"].tolist()) == [None, 7.0, None]
    assert got.missing == {"f": 2}


def test_duplicate_label_rows_are_all_kept_in_order() -> None:
    labels = pd.DataFrame({"e": [1, 1, 1], "t": times([9, 3, 9]), "y": [0, 1, 2]}, index=[4, 4, 1])
    feat = pd.DataFrame({"e": [1, 1], "t": times([2, 8]), "x": [1.0, 2.0]})
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),))).frame
    assert list(got.index) == [4, 4, 1]
    assert got["y"].tolist() == [0, 1, 2]
    assert got["x"].tolist() == [2.0, 1.0, 2.0]


def test_duplicate_feature_times_go_to_the_later_row() -> None:
    assert na(one([10], [5, 5, 5])) == [2]


def test_duplicate_feature_times_go_to_the_later_row_when_times_are_far_apart() -> None:
    labels = pd.DataFrame({"e": [1, 1], "t": times([10, 4])})
    feat = with_far_rows(
        pd.DataFrame({"e": [1, 1, 1], "t": times([5, 5, 5]), "x": [1.0, 2.0, 3.0], "n": [0, 1, 2]})
    )
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),)))
    assert na(got.frame["x"].tolist()) == [3.0, None]


def test_duplicate_feature_times_go_to_the_later_created_at_first() -> None:
    assert na(one([10], [5, 5, 5], c=times([7, 9, 6]))) == [1]


def test_value_created_after_the_label_falls_back_to_the_previous_row() -> None:
    # row 1 (time 8) was recorded at 12: at 10 it is not known yet, so row 0 is used.
    assert na(one([10, 12], [5, 8], c=times([5, 12]))) == [0, 1]


def test_late_backfill_does_not_hide_a_newer_row() -> None:
    # row 0 (time 3) was recorded at 9, after row 1 (time 6, recorded at 6): from 9 on
    # both are known and the newer event, row 1, wins.
    assert na(one([5, 7, 10], [3, 6], c=times([9, 6]))) == [None, 1, 1]


def test_only_late_rows_give_null() -> None:
    assert na(one([10], [5], c=times([11]))) == [None]


def test_late_created_with_ttl_uses_the_eligible_row_inside_the_window() -> None:
    assert na(one([20], [10, 15], ttl=10 * S, c=times([10, 25]))) == [0]
    assert na(one([20], [5, 15], ttl=10 * S, c=times([5, 25]))) == [None]


def test_null_times_and_entities_never_match() -> None:
    labels = pd.DataFrame({"e": [1, None, 1], "t": times([5, 5, None])})
    feat = pd.DataFrame({"e": [1.0, None], "t": times([1, 1]), "x": [3, 4]})
    labels["e"] = pd.array([1, None, 1], dtype="Int64")
    feat["e"] = pd.array([1, None], dtype="Int64")
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),)))
    assert na(got.frame["x"].tolist()) == [3, None, None]
    assert got.frame["x"].dtype == "Int64"
    assert got.missing == {"f": 2}


def test_columns_that_clash_are_prefixed_with_their_table() -> None:
    labels = pd.DataFrame({"e": [1], "t": times([5]), "score": [1]})
    a = pd.DataFrame({"e": [1], "t": times([1]), "x": [1.0], "score": [2.0], "only_a": [3]})
    b = pd.DataFrame({"e": [1], "t": times([2]), "x": [4.0], "only_b": ["z"]})
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("a", a), FeatureSpec("b", b))))
    assert list(got.frame.columns) == [
        "e",
        "t",
        "score",
        "a__x",
        "a__score",
        "only_a",
        "b__x",
        "only_b",
    ]
    assert got.frame.iloc[0].tolist()[2:] == [1, 1.0, 2.0, 3, 4.0, "z"]
    assert got.columns["a"] == {"x": "a__x", "score": "a__score", "only_a": "only_a"}
    spec = JoinSpec("e", "t", (FeatureSpec("a", a, columns=("only_a",)),), prefix=True)
    assert list(build_training_set(labels, spec).frame.columns) == ["e", "t", "score", "a__only_a"]


def test_string_entities_other_key_names_and_parquet_sources(tmp_path: Path) -> None:
    labels = pd.DataFrame({"user": ["u1", "u2", "u1"], "at": times([5, 5, 1])})
    feat = pd.DataFrame({"id": ["u1", "u2"], "when": times([2, 6]), "x": [1.5, 2.5]})
    path = tmp_path / "f.parquet"
    feat.to_parquet(path)
    labels_path = tmp_path / "labels.parquet"
    labels.to_parquet(labels_path)
    for source in (feat, path, str(path)):
        spec = JoinSpec("user", "at", (FeatureSpec("f", source, entity="id", time="when"),))
        got = build_training_set(labels_path, spec, labels_ref="sha256:abc")
        assert na(got.frame["x"].tolist()) == [1.5, None, None]
        assert got.spec_dict()["labels"]["ref"] == "sha256:abc"
        assert_matches_oracle(labels, spec)


def test_time_zones_compare_as_instants_and_units_may_differ() -> None:
    labels = pd.DataFrame({"e": [1, 1], "t": times([10, 10.5], unit="ns", tz="UTC")})
    feat = pd.DataFrame({"e": [1, 1], "t": times([10.25, 3], unit="ms", tz="UTC"), "x": [1, 2]})
    spec = JoinSpec("e", "t", (FeatureSpec("f", feat),))
    assert na(build_training_set(labels, spec).frame["x"].tolist()) == [2, 1]
    assert_matches_oracle(labels, spec)


def test_sub_microsecond_times_keep_their_order() -> None:
    base = pd.Timestamp("2025-01-01")
    labels = pd.DataFrame({"e": [1], "t": pd.Series([base + pd.Timedelta(1, "ns")])})
    feat = pd.DataFrame({"e": [1, 1], "t": pd.Series([base, base + pd.Timedelta(2, "ns")])})
    feat["x"] = [1, 2]
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),)))
    assert got.frame["x"].tolist() == [1]


def test_date_columns_count_as_midnight(tmp_path: Path) -> None:
    labels = pd.DataFrame({"e": [1, 1], "t": times([0, 86400 - 1])})
    days = pd.Series([T0.date(), (T0 - pd.Timedelta(days=1)).date()], dtype="object")
    feat = pd.DataFrame({"e": [1, 1], "t": days, "x": [1, 2]})
    spec = JoinSpec("e", "t", (FeatureSpec("f", feat, ttl=86400 * S),))
    assert build_training_set(labels, spec).frame["x"].tolist() == [1, 1]
    feat.to_parquet(tmp_path / "d.parquet")
    spec = JoinSpec("e", "t", (FeatureSpec("f", tmp_path / "d.parquet", ttl=86400 * S),))
    assert build_training_set(labels, spec).frame["x"].tolist() == [1, 1]


def test_empty_inputs() -> None:
    labels = pd.DataFrame({"e": pd.Series([], dtype="int64"), "t": times([])})
    feat = pd.DataFrame({"e": [1], "t": times([1]), "x": [1.0]})
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", feat),)))
    assert list(got.frame.columns) == ["e", "t", "x"] and len(got.frame) == 0
    labels = pd.DataFrame({"e": [1], "t": times([5])})
    empty = feat.iloc[:0]
    got = build_training_set(labels, JoinSpec("e", "t", (FeatureSpec("f", empty),)))
    assert na(got.frame["x"].tolist()) == [None] and got.missing == {"f": 1}


def test_spec_dict_describes_the_join(tmp_path: Path) -> None:
    labels = pd.DataFrame({"e": [1], "t": times([5])})
    feat = pd.DataFrame({"e": [1], "t": times([1]), "c": times([1]), "x": [1.0]})
    feat.to_parquet(tmp_path / "f.parquet")
    spec = JoinSpec(
        "e",
        "t",
        (
            FeatureSpec("a", feat, ttl=30 * 86400 * S, created_at="c", ref="sha256:f"),
            FeatureSpec("b", tmp_path / "f.parquet"),
        ),
    )
    d = build_training_set(labels, spec).spec_dict()
    assert d["labels"] == {"ref": None, "entity": "e", "time": "t", "rows": 1}
    a, b = d["features"]
    assert a == {
        "name": "a",
        "ref": "sha256:f",
        "entity": "e",
        "time": "t",
        "ttl_us": 30 * 86400 * S,
        "created_at": "c",
        "columns": {"x": "a__x"},
    }
    assert b["ref"] == str(tmp_path / "f.parquet")
    assert b["columns"] == {"c": "c", "x": "b__x"}
    assert d["engine"]["name"] == "duckdb"


# --- bad input ------------------------------------------------------------------------


def labels_and_feat() -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = pd.DataFrame({"e": [1], "t": times([5])})
    feat = pd.DataFrame({"e": [1], "t": times([1]), "c": times([1]), "x": [1.0]})
    return labels, feat


def bad(labels: Any, *features: FeatureSpec, entity: str = "e", time: str = "t") -> DatasetError:
    with pytest.raises(DatasetError) as info:
        build_training_set(labels, JoinSpec(entity, time, tuple(features)))
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.message
    return info.value


def test_missing_label_columns_are_named() -> None:
    labels, feat = labels_and_feat()
    err = bad(labels, FeatureSpec("f", feat), entity="user")
    assert err.field == "labels.entity" and "'user'" in err.message and "labels" in err.message
    err = bad(labels, FeatureSpec("f", feat), time="at")
    assert err.field == "labels.time" and "'at'" in err.message


def test_missing_feature_columns_are_named() -> None:
    labels, feat = labels_and_feat()
    err = bad(labels, FeatureSpec("f", feat, entity="id"))
    assert err.field == "features.f.entity" and "'f'" in err.message and "'id'" in err.message
    err = bad(labels, FeatureSpec("f", feat, time="when"))
    assert err.field == "features.f.time" and "'when'" in err.message
    err = bad(labels, FeatureSpec("f", feat, created_at="recorded"))
    assert err.field == "features.f.created_at" and "'recorded'" in err.message
    err = bad(labels, FeatureSpec("f", feat, columns=("nope",)))
    assert err.field == "features.f.columns" and "'nope'" in err.message
    err = bad(labels, FeatureSpec("f", feat, columns=("e",)))
    assert err.field == "features.f.columns"
    err = bad(labels, FeatureSpec("f", feat, columns=("x", "x")))
    assert err.field == "features.f.columns"


def test_time_columns_that_are_not_times() -> None:
    labels, feat = labels_and_feat()
    for not_time in ([5], ["2025-03-01"], [5.0]):
        wrong = labels.assign(t=not_time)
        err = bad(wrong, FeatureSpec("f", feat))
        assert err.field == "labels.time" and "not a time" in err.message
        err = bad(labels, FeatureSpec("f", feat.assign(t=not_time)))
        assert err.field == "features.f.time" and "not a time" in err.message
        err = bad(labels, FeatureSpec("f", feat.assign(c=not_time), created_at="c"))
        assert err.field == "features.f.created_at"


def test_mixed_time_zones_are_refused() -> None:
    labels, feat = labels_and_feat()
    utc = labels.assign(t=times([5], tz="UTC"))
    err = bad(utc, FeatureSpec("f", feat))
    assert err.field == "features.f.time" and "naive" in err.message and "UTC" in err.message
    paris = feat.assign(t=times([1], tz="Europe/Paris"), c=times([1], tz="UTC"))
    err = bad(utc, FeatureSpec("f", paris))
    assert err.field == "features.f.time" and "Europe/Paris" in err.message
    # the created_at column is a time column too
    err = bad(labels, FeatureSpec("f", feat.assign(c=times([1], tz="UTC")), created_at="c"))
    assert err.field == "features.f.created_at"


def test_mixed_time_zones_in_parquet_files_are_refused(tmp_path: Path) -> None:
    labels, feat = labels_and_feat()
    feat.assign(t=times([1], tz="UTC")).to_parquet(tmp_path / "f.parquet")
    err = bad(labels, FeatureSpec("f", tmp_path / "f.parquet"))
    assert err.field == "features.f.time"


def test_spec_errors() -> None:
    labels, feat = labels_and_feat()
    err = bad(labels, FeatureSpec("f", feat), FeatureSpec("f", feat))
    assert err.field == "features" and "'f'" in err.message
    assert bad(labels).field == "features"
    assert bad(labels, FeatureSpec(" ", feat)).field == "features"
    for ttl in (-1, 1.5, True, "30d"):
        err = bad(labels, FeatureSpec("f", feat, ttl=ttl))  # type: ignore[arg-type]
        assert err.field == "features.f.ttl"


def test_entities_of_different_kinds_are_refused() -> None:
    labels, feat = labels_and_feat()
    err = bad(labels, FeatureSpec("f", feat.assign(e=["1"])))
    assert err.field == "features.f.entity" and "text" in err.message and "integer" in err.message


def test_sources_that_cannot_be_read(tmp_path: Path) -> None:
    labels, feat = labels_and_feat()
    err = bad(labels, FeatureSpec("f", tmp_path / "missing.parquet"))
    assert err.field == "features.f" and "missing.parquet" in err.message
    (tmp_path / "text.parquet").write_text("not parquet")
    assert bad(labels, FeatureSpec("f", tmp_path / "text.parquet")).field == "features.f"
    assert bad(labels, FeatureSpec("f", 42)).field == "features.f"  # type: ignore[arg-type]
    assert bad(tmp_path / "nope.parquet", FeatureSpec("f", feat)).field == "labels"


def test_output_name_clash_that_prefixing_cannot_solve() -> None:
    labels, feat = labels_and_feat()
    labels["f__x"] = 0
    labels["x"] = 0
    err = bad(labels, FeatureSpec("f", feat))
    assert err.field == "features.f.columns" and "'f__x'" in err.message


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    labels, feat = labels_and_feat()
    feat.to_parquet(tmp_path / "f.parquet")
    before = sorted(p.name for p in tmp_path.iterdir())
    bad(labels.assign(t=[1]), FeatureSpec("f", tmp_path / "f.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
