"""Group metrics against fairlearn's own MetricFrame on the same generated rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from chronoml.fairness import FairnessError, group_report


def _data(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["F", "M", "X"]), n, p=[0.45, 0.45, 0.10])
    y_true = rng.integers(0, 2, n)
    # the model favours M: more positives predicted, and more often right
    bias = np.where(group == "M", 0.15, np.where(group == "X", -0.1, 0.0))
    y_pred = np.where(rng.random(n) < 0.7 + bias, y_true, 1 - y_true)
    return y_true, y_pred, group


def test_per_group_figures_equal_metricframe_on_raw_rows() -> None:
    y_true, y_pred, group = _data()
    report = group_report(y_true, y_pred, {"sex": group}, attribute="sex")
    mf = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=group,
    )
    assert [g.group for g in report.groups] == ["F", "M", "X"]
    for g in report.groups:
        row = mf.by_group.loc[g.group]
        assert g.selection_rate == pytest.approx(row["selection_rate"], abs=1e-12)
        assert g.true_positive_rate == pytest.approx(row["true_positive_rate"], abs=1e-12)
        assert g.false_positive_rate == pytest.approx(row["false_positive_rate"], abs=1e-12)
        assert g.accuracy == pytest.approx(row["accuracy"], abs=1e-12)
        assert g.count == int((group == g.group).sum())
    assert report.overall.accuracy == pytest.approx(mf.overall["accuracy"], abs=1e-12)


def test_between_group_figures_equal_fairlearn() -> None:
    y_true, y_pred, group = _data()
    report = group_report(y_true, y_pred, group, attribute="sex")
    kw = {"sensitive_features": group}
    expected = {
        "demographic_parity_difference": demographic_parity_difference(y_true, y_pred, **kw),
        "demographic_parity_ratio": demographic_parity_ratio(y_true, y_pred, **kw),
        "equalized_odds_difference": equalized_odds_difference(y_true, y_pred, **kw),
    }
    for name, value in expected.items():
        d = report.disparity(name)
        assert d.value == pytest.approx(value, abs=1e-12)
        assert d.value is not None and d.ci.low is not None and d.ci.high is not None
        assert d.ci.low <= d.value <= d.ci.high
    eo = report.disparity("equalized_odds_difference")
    assert eo.highest == "M" and eo.lowest == "X"


def test_wilson_intervals_cover_the_rate_and_stay_in_range() -> None:
    y_true, y_pred, group = _data()
    report = group_report(y_true, y_pred, group)
    for g in report.groups:
        ci = g.accuracy_ci
        assert ci.low is not None and ci.high is not None
        assert 0 <= ci.low < g.accuracy < ci.high <= 1
    # a group of 10 has a much wider interval than one of 1,800
    small = group_report(y_true[:40], y_pred[:40], group[:40], min_group_size=30)
    widths = {g.group: g.accuracy_ci.high - g.accuracy_ci.low for g in small.groups}  # type: ignore[operator]
    big = report.group("F")
    assert min(widths.values()) > 2 * (big.accuracy_ci.high - big.accuracy_ci.low)  # type: ignore[operator]


def test_small_groups_are_marked_and_warned() -> None:
    y_true, y_pred, group = _data(600)
    report = group_report(y_true, y_pred, group, min_group_size=100)
    x = report.group("X")
    assert x.small and not report.group("F").small
    assert any("'X'" in w and "< 100" in w for w in report.warnings)


def test_multiclass_is_one_vs_rest_on_the_named_class() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    group = rng.choice(np.array(["a", "b"]), n)
    y_true = rng.choice(np.array(["cat", "dog", "fish"]), n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(np.array(["cat", "dog", "fish"]), n))
    report = group_report(y_true, y_pred, group, positive_class="dog")
    mf = MetricFrame(
        metrics={"tpr": true_positive_rate, "sel": selection_rate},
        y_true=(y_true == "dog").astype(int),
        y_pred=(y_pred == "dog").astype(int),
        sensitive_features=group,
    )
    for g in report.groups:
        assert g.true_positive_rate == pytest.approx(mf.by_group.loc[g.group, "tpr"], abs=1e-12)
        assert g.selection_rate == pytest.approx(mf.by_group.loc[g.group, "sel"], abs=1e-12)
    assert report.positive_class == "dog"
    with pytest.raises(FairnessError) as e:
        group_report(y_true, y_pred, group)
    assert e.value.field == "positive_class"


def test_unlabelled_rows_are_left_out_and_counted() -> None:
    y_true, y_pred, group = _data(1000)
    labels = y_true.astype(object)
    labels[::4] = None
    report = group_report(labels, y_pred, group)
    keep = np.arange(1000) % 4 != 0
    expected = group_report(y_true[keep], y_pred[keep], group[keep])
    assert report.unlabelled == 250 and report.rows == 750
    assert report.group("F").accuracy == expected.group("F").accuracy


def test_undefined_tpr_is_none_and_excluded_from_equalized_odds() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1])
    y_pred = np.array([0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0])
    group = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)
    report = group_report(y_true, y_pred, group, min_group_size=1)
    assert report.group("a").true_positive_rate is None
    eo = report.disparity("equalized_odds_difference")
    assert eo.groups == ("b", "c")
    keep = group != "a"
    assert eo.value == pytest.approx(
        equalized_odds_difference(y_true[keep], y_pred[keep], sensitive_features=group[keep])
    )
    assert any("no positive label" in w for w in report.warnings)


def test_to_dict_is_json_safe() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 1, 0, 1, 1, 0])
    group = np.array(["a", "a", "a", "b", "b", "b"])  # a has no positive, b no negative
    d = group_report(y_true, y_pred, group).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert "NaN" not in text
    assert d["disparities"]["equalized_odds_difference"]["value"] is None
    assert d["groups"][0]["true_positive_rate"] is None
    assert not math.isnan(d["disparities"]["demographic_parity_difference"]["value"])


def test_missing_attribute_values_form_their_own_group() -> None:
    y_true, y_pred, group = _data(300)
    g = group.astype(object)
    g[:20] = None
    report = group_report(y_true, y_pred, g)
    assert report.group("(missing)").count == 20


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"sensitive": {"sex": ["a", "b"]}, "attribute": "age"}, "attribute", "unknown attribute"),
        ({"sensitive": {"sex": ["a", "b"]}}, "attribute", "name the attribute"),
        ({"sensitive": ["a"]}, "attribute", "1 values for 2 decisions"),
        ({"y_true": [None, 1]}, "labels", "group 'a'"),
        ({"y_true": [None, None]}, "labels", "none of these decisions"),
        ({"y_true": [], "y_pred": [], "sensitive": []}, "data", "empty"),
        ({"y_true": [1]}, "y_true", "1 labels for 2"),
        ({"confidence": 1.0}, "confidence", "confidence"),
        ({"y_true": [0, 2]}, "positive_class", "not 0/1"),
        ({"positive_class": 7}, "positive_class", "neither a label"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str, words: str) -> None:
    args: dict[str, object] = {"y_true": [0, 1], "y_pred": [1, 1], "sensitive": ["a", "b"]}
    args.update(kwargs)
    with pytest.raises(FairnessError) as e:
        group_report(args.pop("y_true"), args.pop("y_pred"), args.pop("sensitive"), **args)  # type: ignore[arg-type]
    assert e.value.field == field
    assert words in e.value.message
