"""Multivariate drift: a flipped correlation with unchanged marginals is caught."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from chronoml.fairness import DriftInputError, fit_reconstruction, reconstruction_drift


def _pair(n: int, rho: float, rng: np.random.Generator) -> pd.DataFrame:
    cov = [[1.0, rho], [rho, 1.0]]
    x = rng.multivariate_normal([0.0, 0.0], cov, size=n)
    noise = rng.normal(size=(n, 2))  # two unrelated features ride along
    return pd.DataFrame(np.column_stack([x, noise]), columns=["income", "spend", "n1", "n2"])


def test_flipped_correlation_with_unchanged_marginals_is_detected() -> None:
    rng = np.random.default_rng(21)
    ref = _pair(20_000, 0.9, rng)
    same = _pair(4_000, 0.9, rng)
    flipped = _pair(4_000, -0.9, rng)
    # every marginal is the same distribution: per-feature tests see nothing
    for col in ref.columns:
        assert ks_2samp(ref[col], flipped[col]).pvalue > 0.01
    model = fit_reconstruction(ref)
    data = pd.concat([same, flipped], ignore_index=True)
    report = reconstruction_drift(model, data, np.repeat(["before", "after"], 4_000))
    by = {w.window: w for w in report.windows}
    assert not by["before"].drifted
    assert by["after"].drifted and by["after"].error > by["after"].high
    assert report.drifted
    assert report.explained >= 0.65
    json.dumps(report.to_dict(), allow_nan=False)


def test_no_drift_is_not_flagged_across_windows() -> None:
    rng = np.random.default_rng(22)
    model = fit_reconstruction(_pair(30_000, 0.6, rng))
    data = _pair(20_000, 0.6, rng)
    report = reconstruction_drift(model, data, np.arange(20_000) // 2_000)
    assert len(report.windows) == 10
    assert not report.drifted
    for w in report.windows:
        assert w.low < w.error < w.high


def test_bounds_fall_back_to_scaled_spread_for_large_windows() -> None:
    rng = np.random.default_rng(23)
    model = fit_reconstruction(_pair(1_000, 0.5, rng))
    centre, low, high = model.bounds(400)  # only two reference chunks of 400
    sd = float(model.reference_errors.std(ddof=1))
    assert high - centre == pytest.approx(3 * sd / np.sqrt(400))
    assert centre - low == pytest.approx(high - centre)


def test_missing_values_sit_at_the_reference_mean() -> None:
    rng = np.random.default_rng(24)
    ref = _pair(2_000, 0.8, rng)
    model = fit_reconstruction(ref)
    row = pd.DataFrame({"income": [np.nan], "spend": [np.nan], "n1": [np.nan], "n2": [np.nan]})
    assert model.errors(row)[0] == pytest.approx(0.0)


def test_arrays_work_and_a_window_can_be_omitted() -> None:
    rng = np.random.default_rng(25)
    ref = _pair(2_000, 0.8, rng).to_numpy()
    model = fit_reconstruction(ref, variance=0.9)
    assert model.features == ("x0", "x1", "x2", "x3")
    assert len(model.components) >= 2
    out = reconstruction_drift(model, _pair(500, 0.8, rng).to_numpy())
    assert [w.window for w in out.windows] == ["all"]


def test_bad_input_names_the_field() -> None:
    rng = np.random.default_rng(26)
    ref = _pair(200, 0.5, rng)
    model = fit_reconstruction(ref)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: fit_reconstruction(ref, variance=0), "variance"),
        (lambda: fit_reconstruction(ref[["income"]]), "features"),
        (lambda: fit_reconstruction(ref.head(5)), "reference"),
        (lambda: fit_reconstruction(ref.assign(city="x")), "city"),
        (lambda: fit_reconstruction(ref.assign(n2=np.nan)), "n2"),
        (lambda: reconstruction_drift(model, ref.drop(columns="spend")), "spend"),
        (lambda: reconstruction_drift(model, ref.head(0)), "data"),
        (lambda: reconstruction_drift(model, ref, [1, 2]), "windows"),
        (lambda: reconstruction_drift(model, ref, sigmas=0), "sigmas"),
        (lambda: fit_reconstruction(np.zeros(5)), "data"),
    ]
    for call, field in cases:
        with pytest.raises(DriftInputError) as e:
            call()
        assert e.value.field == field, (field, e.value.message)
