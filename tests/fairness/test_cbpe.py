"""CBPE on generated data whose calibration is known: estimates close to the realised values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chronoml.fairness import CbpeError, estimate, fit_calibrator


def _binary(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = rng.random(n)
    return s, (rng.random(n) < s**2).astype(int)  # truth: P(y=1 | s) = s^2


def _multiclass(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(size=(n, 3)) * 2
    truth = np.exp(logits)
    truth /= truth.sum(axis=1, keepdims=True)
    y = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    score = np.exp(0.6 * logits)
    return score / score.sum(axis=1, keepdims=True), y


def test_binary_estimates_match_realised_quality() -> None:
    rng = np.random.default_rng(11)
    s_ref, y_ref = _binary(40_000, rng)
    cal = fit_calibrator(s_ref, y_ref)
    assert cal.fitted[-1] is not None  # the scores are miscalibrated: auto calibrates
    s, y = _binary(60_000, rng)
    report = estimate(cal, s, (s >= 0.5).astype(int), np.arange(60_000) // 20_000, labels=y)
    assert report.task == "binary" and report.calibrated == (True,)
    assert [w.window for w in report.windows] == ["0", "1", "2"]
    inside = 0
    for w in report.windows:
        assert w.realized is not None and w.labelled == 20_000
        for m, e in w.estimated.items():
            real = w.realized[m]
            assert e.value is not None and real is not None
            assert abs(e.value - real) < 0.015, (m, e.value, real)
            assert e.low is not None and e.high is not None and e.low < e.value < e.high
            inside += e.low <= real <= e.high
    assert inside >= 13  # of 15: the interval is a 95% one


def test_uncalibrated_estimate_would_be_wrong() -> None:
    # without calibration precision is overstated (0.75 against a true 0.583)
    rng = np.random.default_rng(12)
    s_ref, y_ref = _binary(20_000, rng)
    s, y = _binary(20_000, rng)
    pred = (s >= 0.5).astype(int)
    real = float(y[pred == 1].mean())
    none = estimate(fit_calibrator(s_ref, y_ref, calibration="none"), s, pred)
    iso = estimate(fit_calibrator(s_ref, y_ref, calibration="isotonic"), s, pred)
    assert abs(iso.windows[0].estimated["precision"].value - real) < 0.01  # type: ignore[operator]
    assert abs(none.windows[0].estimated["precision"].value - real) > 0.1  # type: ignore[operator]
    assert none.calibrated == (False,) and iso.calibrated == (True,)


def test_well_calibrated_scores_estimate_well_either_way() -> None:
    rng = np.random.default_rng(13)
    s = rng.random(40_000)
    y = (rng.random(40_000) < s).astype(int)
    real = float(((s[20_000:] >= 0.5) == y[20_000:]).mean())
    for how in ("auto", "none", "isotonic"):
        cal = fit_calibrator(s[:20_000], y[:20_000], calibration=how)
        acc = estimate(cal, s[20_000:], (s[20_000:] >= 0.5).astype(int)).windows[0]
        assert abs(acc.estimated["accuracy"].value - real) < 0.01, how  # type: ignore[operator]


def test_multiclass_macro_estimates_match_realised_quality() -> None:
    rng = np.random.default_rng(14)
    s_ref, y_ref = _multiclass(30_000, rng)
    cal = fit_calibrator(s_ref, y_ref)
    s, y = _multiclass(40_000, rng)
    labels = y.astype(object)
    labels[::2] = None  # half the labels have arrived
    report = estimate(cal, s, None, np.repeat(["a", "b"], 20_000), labels=labels)
    assert report.task == "multiclass" and report.average == "macro"
    assert report.classes == (0, 1, 2)
    for w in report.windows:
        assert w.labelled == 10_000 and w.realized is not None
        for m, e in w.estimated.items():
            assert abs(e.value - w.realized[m]) < 0.02, (m, e.value, w.realized[m])  # type: ignore[operator]


def test_string_classes_and_given_predictions() -> None:
    rng = np.random.default_rng(15)
    s_ref, y_ref = _binary(5_000, rng)
    names = np.array(["no", "yes"])
    cal = fit_calibrator(s_ref, names[y_ref])
    s, y = _binary(5_000, rng)
    report = estimate(cal, s, names[(s >= 0.6).astype(int)], labels=names[y])
    w = report.windows[0]
    assert report.classes == ("no", "yes") and w.window == "all"
    assert abs(w.estimated["recall"].value - w.realized["recall"]) < 0.03  # type: ignore[index, operator]
    json.dumps(report.to_dict(), allow_nan=False)


def test_ties_in_scores_give_a_sound_auc() -> None:
    rng = np.random.default_rng(16)
    s = np.round(rng.random(20_000), 1)  # eleven distinct scores
    y = (rng.random(20_000) < s).astype(int)
    cal = fit_calibrator(s, y, calibration="none")
    report = estimate(cal, s, (s >= 0.5).astype(int), labels=y)
    w = report.windows[0]
    assert abs(w.estimated["roc_auc"].value - w.realized["roc_auc"]) < 0.01  # type: ignore[index, operator]


@pytest.mark.parametrize(
    ("ref_scores", "ref_labels", "kwargs", "field", "words"),
    [
        (None, [0, 1], {}, "reference_scores", "class labels only"),
        ([0.2, 0.7, 0.9], [1, 1, 1], {}, "reference_labels", "one class only"),
        ([0.2, 0.7], [0, None], {}, "reference_labels", "needs its label"),
        ([], [], {}, "reference_labels", "no rows"),
        ([0.2, 0.7], [0, 1, 1], {}, "reference_scores", "3 labels"),
        ([0.2, np.nan], [0, 1], {}, "reference_scores", "missing or infinite"),
        (["a", "b"], [0, 1], {}, "reference_scores", "must be numbers"),
        ([0.2, 0.7], [0, 1], {"calibration": "platt"}, "calibration", "auto, isotonic"),
        ([0.2, 0.7], [0, 2], {"classes": [0, 1]}, "classes", "not among"),
    ],
)
def test_fit_errors_say_why(
    ref_scores: object, ref_labels: object, kwargs: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(CbpeError) as e:
        fit_calibrator(ref_scores, ref_labels, **kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
    assert words in e.value.message


def test_estimate_errors_say_why() -> None:
    rng = np.random.default_rng(17)
    cal = fit_calibrator(*_binary(1_000, rng))
    cases: list[tuple[dict[str, object], str, str]] = [
        ({"scores": None}, "scores", "class labels only"),
        ({"scores": []}, "scores", "empty"),
        ({"scores": np.ones((3, 3)) / 3}, "scores", "3 score columns for 2"),
        ({"y_pred": [0, 1]}, "y_pred", "2 predictions"),
        ({"y_pred": [0, 1, 5]}, "y_pred", "5"),
        ({"windows": [1]}, "windows", "1 window keys"),
        ({"labels": [1]}, "labels", "1 labels"),
        ({"confidence": 0}, "confidence", "confidence"),
    ]
    for change, field, words in cases:
        args: dict[str, object] = {"scores": [0.1, 0.5, 0.9], "y_pred": None}
        args.update(change)
        with pytest.raises(CbpeError) as e:
            estimate(cal, **args)  # type: ignore[arg-type]
        assert (e.value.field, words in e.value.message) == (field, True), e.value.message


@pytest.mark.parametrize("decimals", [None, 2])  # distinct scores, and many ties
def test_isotonic_maps_from_one_sort_equal_scikit_learn_fits(decimals: int | None) -> None:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score

    from chronoml.fairness.calibration import _SortedScores

    rng = np.random.default_rng(18)
    s, y = _binary(20_000, rng)
    if decimals is not None:
        s = np.round(s, decimals)
    grid = np.linspace(-0.1, 1.1, 2_001)
    sorted_ = _SortedScores(s, y.astype(float))
    assert sorted_.auc() == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for _ in range(3):  # a random train part, as the calibration rule's splits take
        train = rng.random(len(s)) < 0.9
        keep = train[sorted_.order]
        theirs = IsotonicRegression(out_of_bounds="clip").fit(s[train], y[train])
        ours = sorted_.fit(keep)
        np.testing.assert_allclose(ours.predict(grid), theirs.predict(grid), atol=1e-12)
    whole = fit_calibrator(s, y, calibration="isotonic")
    theirs = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    got = whole.calibrate(np.column_stack([1 - grid, grid]))[:, 1]
    np.testing.assert_allclose(got, np.clip(theirs.predict(grid), 0, 1), atol=1e-12)


def test_realized_quality_equals_scikit_learn() -> None:
    from sklearn import metrics as m

    rng = np.random.default_rng(19)
    s_ref, y_ref = _binary(5_000, rng)
    names = np.array(["no", "yes"])
    cal = fit_calibrator(s_ref, names[y_ref])
    s, y = _binary(8_000, rng)
    s = np.round(s, 2)  # tied scores
    labels = names[y].astype(object)
    labels[::3] = None
    pred = names[(s >= 0.4).astype(int)]
    w = estimate(cal, s, pred, labels=labels).windows[0]
    have = labels != None  # noqa: E711
    t, p = labels[have].astype(str), pred[have]
    kw = {"pos_label": "yes", "zero_division": 0}
    assert w.labelled == int(have.sum()) and w.realized is not None
    assert w.realized == pytest.approx(
        {
            "accuracy": m.accuracy_score(t, p),
            "precision": m.precision_score(t, p, **kw),
            "recall": m.recall_score(t, p, **kw),
            "f1": m.f1_score(t, p, **kw),
            "roc_auc": m.roc_auc_score(t == "yes", s[have]),
        },
        abs=1e-12,
    )

    s_ref3, y_ref3 = _multiclass(5_000, rng)
    cal3 = fit_calibrator(s_ref3, y_ref3)
    s3, y3 = _multiclass(6_000, rng)
    w3 = estimate(cal3, s3, labels=y3).windows[0]
    p3 = s3.argmax(axis=1)
    kw3 = {"average": "macro", "zero_division": 0}
    assert w3.realized == pytest.approx(
        {
            "accuracy": m.accuracy_score(y3, p3),
            "precision": m.precision_score(y3, p3, **kw3),
            "recall": m.recall_score(y3, p3, **kw3),
            "f1": m.f1_score(y3, p3, **kw3),
            "roc_auc": float(np.mean([m.roc_auc_score(y3 == k, s3[:, k]) for k in range(3)])),
        },
        abs=1e-12,
    )
