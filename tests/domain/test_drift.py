"""Drift statistics: reference profiles, per-feature verdicts, the dataset verdict.

Every statistic is checked against scipy (or numpy) computed on the raw
arrays, and against values Evidently 0.7.23 printed for deterministic frames
(bench/drift/evidently_golden.py), so that defaults reproduce its verdicts.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from chronoml.domain.drift import DriftOverride, DriftReport, drift_report
from chronoml.domain.profile import CategoricalProfile, NumericProfile, Profile
from chronoml.domain.profiling import build_profile, sorted_distinct
from chronoml.domain.sorted_stats import Sample, ks_statistic, wasserstein
from chronoml.worker import parallel

# -- helpers ----------------------------------------------------------------------------


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def report_for(
    ref: dict[str, Any], cur: dict[str, Any], **kwargs: Any
) -> tuple[Profile, DriftReport]:
    profile = build_profile(pd.DataFrame(ref), kwargs.pop("predictions", None))
    arrays = {k: np.asarray(v) for k, v in cur.items()}
    return profile, drift_report(profile, arrays, **kwargs)


def evidently_psi_shares(share: np.ndarray) -> np.ndarray:
    """Evidently's replacement of empty bins, written out independently."""
    smallest = share[share > 0].min()
    fill = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return np.where(share == 0, fill, share)


# -- reference profiles -----------------------------------------------------------------


def test_kinds_follow_evidentlys_rule() -> None:
    n = 200
    r = rng()
    df = pd.DataFrame(
        {
            "float": r.normal(size=n),
            "int_few": r.integers(0, 10, n),  # 10 distinct values: categorical
            "int_many": r.integers(0, 500, n),  # numeric
            "text": r.choice(["x", "y", "z"], n),
            "flag": r.random(n) > 0.5,
            "cat": pd.Categorical(r.choice(["p", "q"], n)),
            "when": pd.date_range("2026-01-01", periods=n, freq="h"),
        }
    )
    profile = build_profile(df)
    kinds = {name: f.kind for name, f in profile.features.items()}
    assert kinds == {
        "float": "numeric",
        "int_few": "categorical",
        "int_many": "numeric",
        "text": "categorical",
        "flag": "categorical",
        "cat": "categorical",
    }
    assert "datetime" in profile.skipped["when"]
    forced = build_profile(df[["int_few"]], kinds={"int_few": "numeric"})
    assert forced.features["int_few"].kind == "numeric"


def test_prediction_kind_follows_evidentlys_prediction_rule() -> None:
    r = rng()
    df = pd.DataFrame({"x": r.normal(size=100)})
    assert build_profile(df, r.random(100)).prediction.kind == "numeric"  # type: ignore[union-attr]
    labels = r.integers(0, 3, 100)
    assert build_profile(df, labels).prediction.kind == "categorical"  # type: ignore[union-attr]
    probs = np.round(r.random(100), 1) / 2  # few values, but probabilities
    assert build_profile(df, probs).prediction.kind == "numeric"  # type: ignore[union-attr]


def test_numeric_profile_keeps_the_exact_distribution_and_drops_missing() -> None:
    x = np.array([3.0, 1.0, np.nan, 2.0, 1.0, np.inf, 3.0, 3.0])
    profile = build_profile(pd.DataFrame({"x": x}))
    f = profile.features["x"]
    assert isinstance(f, NumericProfile) and f.kind == "numeric"
    assert (f.rows, f.missing) == (6, 2)
    assert f.values.tolist() == [1.0, 2.0, 3.0]
    assert f.counts is not None and f.counts.tolist() == [2, 1, 3]
    assert f.std == pytest.approx(np.std([3, 1, 2, 1, 3, 3]))
    assert dict(f.quantiles)[0.5] == pytest.approx(2.5)
    assert sum(f.histogram_counts) == 6
    continuous = build_profile(pd.DataFrame({"x": rng().normal(size=1000)})).features["x"]
    assert isinstance(continuous, NumericProfile)
    assert continuous.counts is None  # all distinct: the sorted column alone


def test_categorical_profile_counts_categories() -> None:
    s = pd.Series(["b", "a", None, "b", "c", "b", np.nan], dtype=object)
    f = build_profile(pd.DataFrame({"s": s})).features["s"]
    assert isinstance(f, CategoricalProfile) and f.kind == "categorical"
    assert list(f.categories) == ["b", "a", "c"]  # most frequent first
    assert f.counts.tolist() == [3, 1, 1]
    assert (f.rows, f.missing) == (5, 2)


def test_sampling_caps_the_reference_reproducibly() -> None:
    df = pd.DataFrame({"x": rng().normal(size=5000)})
    p1 = build_profile(df, np.arange(5000.0), sample_size=1000, seed=3)
    p2 = build_profile(df, np.arange(5000.0), sample_size=1000, seed=3)
    assert (p1.rows, p1.sampled_rows, p1.features["x"].rows) == (5000, 1000, 1000)
    assert np.array_equal(p1.features["x"].values, p2.features["x"].values)  # type: ignore[union-attr]
    assert p1.prediction is not None and p1.prediction.rows == 1000
    assert build_profile(df, sample_size=None).features["x"].rows == 5000


def mixed_profile() -> tuple[Profile, dict[str, np.ndarray], np.ndarray]:
    r = rng(7)
    n = 3000
    ref = pd.DataFrame(
        {
            "x": r.normal(size=n),
            "rounded": np.round(r.normal(size=n), 1),
            "k": r.integers(0, 4, n),
            "s": r.choice(["a", "b", "c"], n).astype(object),
            "t": pd.date_range("2026-01-01", periods=n, freq="min"),
        }
    )
    ref.loc[::50, "x"] = np.nan
    profile = build_profile(ref, r.random(n))
    cur = {
        "x": r.normal(0.3, 1, 2000),
        "rounded": np.round(r.normal(size=2000), 1),
        "k": r.integers(0, 5, 2000),
        "s": r.choice(["a", "b", "d"], 2000).astype(object),
    }
    return profile, cur, r.random(2000)


def test_profile_round_trips_through_bytes_and_json() -> None:
    profile, cur, pred = mixed_profile()
    blob = profile.to_bytes()
    from_bytes = Profile.from_bytes(blob)
    from_json = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    expected = drift_report(profile, cur, pred).to_dict()
    assert drift_report(from_bytes, cur, pred).to_dict() == expected
    assert drift_report(from_json, cur, pred).to_dict() == expected
    for restored in (from_bytes, from_json):
        assert restored.to_dict() == profile.to_dict()
        assert restored.skipped == profile.skipped
    # Continuous values cost 8 bytes each; repeated values compress to value + count.
    assert len(blob) < 8 * (3000 + 3000) + 8 * 200 + 4096


def test_from_bytes_rejects_other_data() -> None:
    with pytest.raises(ValueError, match="not a chronoml profile"):
        Profile.from_bytes(b"PK\x03\x04 not a profile")


# -- statistics against scipy -----------------------------------------------------------


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "decimals"),
    [(3000, 2000, None), (20_000, 7_000, 1), (5000, 5000, 0), (1001, 30_000, None)],
)
def test_wasserstein_matches_scipy(n_ref: int, n_cur: int, decimals: int | None) -> None:
    r = rng(n_ref)
    ref = r.normal(5, 2, n_ref)
    cur = r.normal(5.4, 2.5, n_cur)
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    _, report = report_for({"x": ref}, {"x": cur})
    f = report.feature("x")
    expected = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    assert f.method == "wasserstein"
    assert f.statistic == pytest.approx(expected, abs=1e-9, rel=1e-9)
    assert not f.is_p_value


samples = st.lists(
    st.integers(-6, 6).map(lambda v: v / 2) | st.floats(-1e6, 1e6, allow_nan=False),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ref=samples, cur=samples)
def test_sorted_array_kernels_equal_scipy(ref: list[float], cur: list[float]) -> None:
    """The Wasserstein and KS kernels on samples with ties, repeats and odd sizes."""
    r, c = np.array(ref), np.array(cur)
    values, counts = sorted_distinct(r)
    reference = Sample(values, counts, r.size, integer=False)
    cv, cc = sorted_distinct(c)
    w = stats.wasserstein_distance(r, c)
    assert wasserstein(reference, np.sort(c)) == pytest.approx(w, rel=1e-9, abs=1e-9 * (1 + w))
    with np.errstate(divide="ignore"):  # scipy's p-value for tiny samples; d is what counts
        d = stats.ks_2samp(r, c, method="asymp").statistic
    assert ks_statistic(reference, Sample(cv, cc, c.size, integer=False)) == d


@pytest.mark.parametrize(("n_ref", "n_cur"), [(12_000, 30_000), (50_000, 11_000)])
@pytest.mark.parametrize("decimals", [None, 1])
def test_large_ks_matches_scipy(n_ref: int, n_cur: int, decimals: int | None) -> None:
    """Above 10,000 values the KS statistic comes from the sorted arrays, not ks_2samp."""
    r = rng(n_cur)
    ref = r.normal(0, 1, n_ref)
    cur = r.normal(0.02, 1, n_cur)
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    _, report = report_for({"x": ref}, {"x": cur}, overrides={"x": {"method": "ks"}})
    f = report.feature("x")
    assert f.method == "ks" and f.is_p_value
    assert f.statistic == pytest.approx(stats.ks_2samp(ref, cur).pvalue, abs=1e-9, rel=1e-9)


def test_small_reference_uses_ks_chisquare_and_z_like_scipy() -> None:
    r = rng(11)
    ref = {
        "x": r.normal(size=600),
        "few": r.integers(0, 4, 600).astype(float),
        "s": r.choice(["a", "b", "c"], 600).astype(object),
        "two": r.choice(["yes", "no"], 600).astype(object),
    }
    cur = {
        "x": r.normal(0.3, 1, 800),
        "few": r.integers(0, 4, 800).astype(float),
        "s": r.choice(["a", "b", "c"], 800, p=[0.5, 0.3, 0.2]).astype(object),
        "two": r.choice(["yes", "no"], 800, p=[0.6, 0.4]).astype(object),
    }
    _, report = report_for(ref, cur)
    by = {f.feature: f for f in report.features}
    assert {k: v.method for k, v in by.items()} == {
        "x": "ks",
        "few": "chisquare",
        "s": "chisquare",
        "two": "z",
    }
    assert by["x"].statistic == pytest.approx(stats.ks_2samp(ref["x"], cur["x"]).pvalue)
    for name in ("few", "s"):
        keys = sorted(set(ref[name]) | set(cur[name]))
        rc = np.array([np.sum(ref[name] == k) for k in keys])
        cc = np.array([np.sum(cur[name] == k) for k in keys])
        expected = stats.chisquare(cc, rc * (len(cur[name]) / len(ref[name]))).pvalue
        assert by[name].statistic == pytest.approx(expected, rel=1e-9)
    # For two categories the pooled Z-test is the uncorrected 2x2 chi-square test.
    table = [[np.sum(ref["two"] == "yes"), np.sum(ref["two"] == "no")]]
    table.append([np.sum(cur["two"] == "yes"), np.sum(cur["two"] == "no")])
    z_as_chi2 = stats.chi2_contingency(np.array(table), correction=False).pvalue
    assert by["two"].statistic == pytest.approx(z_as_chi2, rel=1e-9)
    assert all(f.is_p_value for f in report.features)


def test_jensenshannon_and_psi_over_categories_match_scipy() -> None:
    r = rng(5)
    ref = r.choice(["a", "b", "c", "d"], 4000, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cur = r.choice(["a", "b", "c", "e"], 3000, p=[0.25, 0.25, 0.25, 0.25]).astype(object)
    keys = ["a", "b", "c", "d", "e"]
    rs = np.array([np.sum(ref == k) for k in keys]) / ref.size
    cs = np.array([np.sum(cur == k) for k in keys]) / cur.size
    _, js = report_for({"s": ref}, {"s": cur})
    assert js.feature("s").method == "jensenshannon"
    assert js.feature("s").statistic == pytest.approx(distance.jensenshannon(rs, cs), rel=1e-12)
    _, psi = report_for({"s": ref}, {"s": cur}, overrides={"s": DriftOverride(method="psi")})
    rp, cp = evidently_psi_shares(rs), evidently_psi_shares(cs)
    assert psi.feature("s").statistic == pytest.approx(np.sum((rp - cp) * np.log(rp / cp)))


@pytest.mark.parametrize("integer", [False, True])
def test_binned_numeric_jensenshannon_and_psi_use_sturges_bins(integer: bool) -> None:
    r = rng(9)
    ref: np.ndarray[Any, Any]
    cur: np.ndarray[Any, Any]
    if integer:
        ref, cur = r.integers(0, 30, 5000), r.integers(2, 31, 4000)
    else:
        ref, cur = r.normal(0, 1, 5000), r.normal(0.2, 1.2, 4000)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    rs = np.histogram(ref, edges)[0] / ref.size
    cs = np.histogram(cur, edges)[0] / cur.size
    for method in ("jensenshannon", "psi"):
        _, report = report_for({"x": ref}, {"x": cur}, overrides={"x": {"method": method}})
        f = report.feature("x")
        if method == "jensenshannon":
            expected = distance.jensenshannon(rs, cs)
        else:
            rp, cp = evidently_psi_shares(rs), evidently_psi_shares(cs)
            expected = np.sum((rp - cp) * np.log(rp / cp))
        assert f.statistic == pytest.approx(expected, rel=1e-12), method


def test_numeric_feature_with_few_values_is_compared_as_categories() -> None:
    r = rng(2)
    ref = r.choice([0.0, 1.0, 2.5], 3000)
    cur = r.choice([0.0, 1.0, 2.5], 3000, p=[0.2, 0.3, 0.5])
    _, report = report_for({"x": ref}, {"x": cur})
    f = report.feature("x")
    rs = np.array([np.mean(ref == v) for v in (0.0, 1.0, 2.5)])
    cs = np.array([np.mean(cur == v) for v in (0.0, 1.0, 2.5)])
    assert f.method == "jensenshannon"
    assert f.statistic == pytest.approx(distance.jensenshannon(rs, cs), rel=1e-12)


# -- Evidently's own numbers ------------------------------------------------------------


def golden_frame(n: int, *, current: bool) -> pd.DataFrame:
    """Same frame as bench/drift/evidently_golden.py (keep the two in step)."""
    i = np.arange(n, dtype=np.int64)
    k = 3 if current else 1
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    return pd.DataFrame(
        {
            "num": ((i * 7919 * k) % 3001) / 100.0,
            "num_shift": ((i * 7919 * k) % 3001) / 100.0 + (2.5 if current else 0.0),
            "few": ((i * k) % 4).astype(np.float64) + (i % 7 == 0) * (1.0 if current else 0.0),
            "bin": ((i * k) % 2 + (i % 5 == 0 if current else 0)).clip(0, 1).astype(np.float64),
            "ints": (i * 37 * k) % 101 + (i % 3 if current else 0),
            "cat": cats[(i * i * k + (i % 3 if current else 0)) % 4],
        }
    )


# Printed by bench/drift/evidently_golden.py with Evidently 0.7.23 (scipy 1.17.1):
# {scenario: {column: [method, drift score, drift detected]}}.
EVIDENTLY_GOLDEN: dict[str, dict[str, list[Any]]] = {
    "large": {
        "num": ["wasserstein", 0.0023111057021206714, False],
        "num_shift": ["wasserstein", 0.29081398029447125, True],
        "few": ["jensenshannon", 0.11418002392521101, True],
        "bin": ["jensenshannon", 0.07112938864483193, False],
        "ints": ["wasserstein", 0.03343936134128024, False],
        "cat": ["jensenshannon", 0.36390446122601844, True],
    },
    "small": {
        "num": ["ks", 1.0, False],
        "num_shift": ["ks", 0.029190001005715956, True],
        "few": ["chisquare", 0.0, True],
        "bin": ["z", 0.001802754219635938, True],
        "ints": ["ks", 1.0, False],
        "cat": ["chisquare", 0.0, True],
    },
    "large_overrides": {
        "num": ["psi", 4.461844268110418e-05, False],
        "num_shift": ["ks", 4.660237369331798e-09, True],
        "few": ["psi", 0.21415813693604674, True],
        "bin": ["jensenshannon", 0.07112938864483193, False],
        "ints": ["jensenshannon", 0.01996844870900649, False],
        "cat": ["psi", 2.609019313874152, True],
    },
    "small_overrides": {
        "num": ["wasserstein", 0.011248981309750054, False],
        "num_shift": ["jensenshannon", 0.1846842283287213, True],
        "few": ["chisquare", 0.0, True],
        "bin": ["z", 0.001802754219635938, True],
        "ints": ["psi", 0.0021263339439390543, False],
        "cat": ["jensenshannon", 0.3637363395632863, True],
    },
}
GOLDEN_SCENARIOS = {
    "large": (3000, 2500, {}),
    "small": (400, 600, {}),
    "large_overrides": (
        3000,
        2500,
        {"num": "psi", "num_shift": "ks", "few": "psi", "ints": "jensenshannon", "cat": "psi"},
    ),
    "small_overrides": (
        400,
        600,
        {"num": "wasserstein", "num_shift": "jensenshannon", "ints": "psi", "cat": "jensenshannon"},
    ),
}


@pytest.mark.parametrize("scenario", sorted(GOLDEN_SCENARIOS))
def test_reproduces_evidently(scenario: str) -> None:
    n_ref, n_cur, methods = GOLDEN_SCENARIOS[scenario]
    ref = golden_frame(n_ref, current=False)
    cur = golden_frame(n_cur, current=True)
    report = drift_report(
        build_profile(ref),
        {c: cur[c].to_numpy() for c in cur.columns},
        overrides={c: {"method": m} for c, m in methods.items()},
    )
    for name, (method, score, drifted) in EVIDENTLY_GOLDEN[scenario].items():
        f = report.feature(name)
        assert (f.method, f.drifted) == (method, drifted), name
        assert f.statistic == pytest.approx(score, rel=1e-12, abs=1e-15), name


# -- verdicts on generated drift --------------------------------------------------------


def generated(n_ref: int, n_cur: int, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Features with known drift: ``*_drift`` features drift, ``*_same`` do not."""
    r = rng(seed)
    mix = [0.5, 0.3, 0.2]
    labels = np.array(["red", "green", "blue"], dtype=object)
    ref = {
        "mean_drift": r.normal(10, 2, n_ref),
        "scale_drift": r.normal(0, 1, n_ref),
        "num_same": r.exponential(1.0, n_ref),
        "cat_drift": labels[r.choice(3, n_ref, p=mix)],
        "cat_same": labels[r.choice(3, n_ref, p=mix)],
    }
    cur = {
        "mean_drift": r.normal(11.5, 2, n_cur),
        "scale_drift": r.normal(0, 2.5, n_cur),
        "num_same": r.exponential(1.0, n_cur),
        "cat_drift": labels[r.choice(3, n_cur, p=[0.2, 0.3, 0.5])],
        "cat_same": labels[r.choice(3, n_cur, p=mix)],
    }
    return ref, cur


@pytest.mark.parametrize(("n_ref", "n_cur"), [(5000, 4000), (800, 900)])
def test_known_drift_is_found_and_no_drift_is_not(n_ref: int, n_cur: int) -> None:
    ref, cur = generated(n_ref, n_cur)
    _, report = report_for(ref, cur)
    verdicts = {f.feature: f.drifted for f in report.features}
    assert verdicts == {
        "mean_drift": True,
        "scale_drift": True,
        "num_same": False,
        "cat_drift": True,
        "cat_same": False,
    }
    assert report.number_of_features == 5
    assert report.number_of_drifted_features == 3
    assert report.drifted_share == pytest.approx(0.6)
    assert report.dataset_drift
    small = n_ref <= 1000
    methods = {f.feature: f.method for f in report.features}
    assert methods["mean_drift"] == ("ks" if small else "wasserstein")
    assert methods["cat_drift"] == ("chisquare" if small else "jensenshannon")


def test_dataset_drift_starts_at_half_the_features() -> None:
    ref, cur = generated(3000, 3000)
    cur = {**cur, "scale_drift": ref["scale_drift"][:3000]}
    half = {k: cur[k] for k in ("mean_drift", "num_same", "cat_drift", "cat_same")}
    _, report = report_for({k: ref[k] for k in half}, half)
    assert report.drifted_share == 0.5 and report.dataset_drift
    _, stricter = report_for({k: ref[k] for k in half}, half, drift_share=0.75)
    assert not stricter.dataset_drift


def test_overrides_change_method_and_threshold() -> None:
    ref, cur = generated(3000, 3000, seed=4)
    _, report = report_for(
        ref,
        cur,
        overrides={
            "mean_drift": {"method": "psi", "threshold": 50.0},
            "num_same": DriftOverride(threshold=1e-6),
            "cat_same": DriftOverride(method="chisquare"),
        },
    )
    f = report.feature("mean_drift")
    assert (f.method, f.threshold, f.drifted) == ("psi", 50.0, False)
    g = report.feature("num_same")
    assert (g.method, g.threshold, g.drifted) == ("wasserstein", 1e-6, True)
    assert report.feature("cat_same").method == "chisquare"
    with pytest.raises(ValueError, match="unknown drift method"):
        report_for(ref, cur, overrides={"num_same": {"method": "energy"}})
    with pytest.raises(ValueError, match="needs a numeric feature"):
        report_for(ref, cur, overrides={"cat_same": {"method": "ks"}})


def test_prediction_drift_is_reported_apart_from_features() -> None:
    r = rng(3)
    ref = {"x": r.normal(size=2000)}
    cur = {"x": r.normal(size=2000)}
    _, report = report_for(
        ref, cur, predictions=r.random(2000), current_predictions=r.random(2000) ** 3
    )
    assert report.prediction is not None
    assert (report.prediction.feature, report.prediction.kind) == ("prediction", "numeric")
    assert report.prediction.drifted
    assert report.drifted_share == 0.0  # the prediction is not a feature
    profile = build_profile(pd.DataFrame(ref))
    no_ref = drift_report(profile, cur, r.random(2000))
    assert no_ref.prediction is not None and no_ref.prediction.status == "missing_in_reference"
    with_ref = build_profile(pd.DataFrame(ref), r.random(2000))
    no_cur = drift_report(with_ref, cur)
    assert no_cur.prediction is not None and no_cur.prediction.status == "missing_in_current"


def test_evidentlys_chi_square_disagreement_is_noted() -> None:
    """Equal-sized samples from one distribution: Evidently's test over-rejects."""
    noted = 0
    flagged = 0
    for seed in range(40):
        r = rng(seed)
        p = [0.4, 0.3, 0.2, 0.1]
        ref = r.choice(["a", "b", "c", "d"], 500, p=p).astype(object)
        cur = r.choice(["a", "b", "c", "d"], 500, p=p).astype(object)
        f = drift_report(build_profile(pd.DataFrame({"s": ref})), {"s": cur}).feature("s")
        assert f.method == "chisquare"
        flagged += f.drifted
        if f.note is not None:
            noted += 1
            assert "two-sample chi-square" in f.note
    assert flagged > 4  # far more than 5% of 40
    assert noted >= flagged - 2  # the two-sample test rarely agrees with those flags


def test_workers_give_the_same_report() -> None:
    ref, cur = generated(20_000, 20_000, seed=8)
    profile, one = report_for(ref, cur)
    assert drift_report(profile, cur, map_features=parallel(3)).to_dict() == one.to_dict()


# -- missing data and empty windows -----------------------------------------------------


def test_missing_and_unknown_features_are_reported_not_raised() -> None:
    profile, cur, pred = mixed_profile()
    cur = {k: v for k, v in cur.items() if k != "rounded"}
    cur["new_col"] = np.ones(2000)
    cur["t"] = np.zeros(2000)
    report = drift_report(profile, cur, pred)
    status = {f.feature: f.status for f in report.features}
    assert status == {
        "x": "ok",
        "rounded": "missing_in_current",
        "k": "ok",
        "s": "ok",
        "new_col": "missing_in_reference",
        "t": "unsupported",
    }
    assert report.number_of_features == 3
    missing = report.feature("rounded")
    assert (missing.drifted, missing.statistic, missing.method) == (False, None, None)


@pytest.mark.parametrize("window", ["zero_rows", "no_columns"])
def test_empty_window_says_so(window: str) -> None:
    profile, cur, _ = mixed_profile()
    if window == "zero_rows":
        current: dict[str, np.ndarray] = {k: v[:0] for k, v in cur.items()}
        report = drift_report(profile, current, np.empty(0))
    else:
        report = drift_report(profile, {})
    assert report.empty and report.rows == 0
    assert report.drifted_share is None and not report.dataset_drift
    assert {f.status for f in report.features} == {"empty_current"}
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["empty"] is True


def test_values_that_cannot_be_compared_are_flagged() -> None:
    profile, cur, pred = mixed_profile()
    cur = dict(cur)
    cur["x"] = np.full(2000, np.nan)
    cur["rounded"] = np.array(["high"] * 2000, dtype=object)
    cur["s"] = np.array([None] * 2000, dtype=object)
    report = drift_report(profile, cur, pred)
    assert report.feature("x").status == "empty_current"
    assert report.feature("rounded").status == "invalid"
    assert report.feature("s").status == "empty_current"
    assert report.number_of_features == 1  # only "k" is left


def test_nan_and_inf_in_the_window_are_dropped() -> None:
    r = rng(1)
    ref = r.normal(size=2000)
    cur = r.normal(size=1500)
    dirty = np.concatenate([cur, [np.nan, np.inf, -np.inf]])
    _, report = report_for({"x": ref}, {"x": dirty})
    f = report.feature("x")
    assert f.current_rows == 1500
    assert f.statistic == pytest.approx(
        stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9
    )


def test_empty_reference_column() -> None:
    profile = build_profile(pd.DataFrame({"x": [np.nan] * 10, "y": np.arange(10.0)}))
    report = drift_report(profile, {"x": np.ones(5), "y": np.arange(5.0)})
    assert report.feature("x").status == "empty_reference"


def test_new_category_in_a_small_window_drifts_without_warnings() -> None:
    ref = np.array(["a", "b", "c"] * 100, dtype=object)
    cur = np.array(["a", "b", "c", "z"] * 50, dtype=object)
    _, report = report_for({"s": ref}, {"s": cur})
    f = report.feature("s")
    assert (f.method, f.statistic, f.drifted) == ("chisquare", 0.0, True)


def test_an_undefined_statistic_is_not_a_verdict() -> None:
    one = np.array(["a"] * 300, dtype=object)
    _, report = report_for({"s": one}, {"s": one[:100]}, overrides={"s": {"method": "chisquare"}})
    f = report.feature("s")
    assert (f.method, f.status, f.statistic, f.drifted) == ("chisquare", "invalid", None, False)
    assert report.drifted_share is None


def test_columns_of_different_lengths_are_a_caller_error() -> None:
    profile, cur, _ = mixed_profile()
    with pytest.raises(ValueError, match="differ in length"):
        drift_report(profile, {**cur, "x": cur["x"][:10]})


def test_report_is_plain_json() -> None:
    profile, cur, pred = mixed_profile()
    data = drift_report(profile, cur, pred).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert set(json.loads(text)) >= {"features", "prediction", "drifted_share", "dataset_drift"}
    for f in data["features"]:
        assert set(f) >= {"feature", "kind", "method", "statistic", "threshold", "drifted"}
        if f["statistic"] is not None:
            assert math.isfinite(f["statistic"])
