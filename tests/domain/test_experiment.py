"""A/B statistics: fixed-horizon tests against scipy, the always-valid method
against hand computation, and peeking behaviour by simulation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from chronoml.domain.experiment import (
    ExperimentResult,
    GuardrailResult,
    MeanSummary,
    RateSummary,
    ServingStats,
    TrafficSplit,
    analyze,
    default_mixing_variance,
    guardrail_check,
    sample_ratio_check,
)

DECISIVE = ("A better", "B better")

# --- fixed-horizon tests ------------------------------------------------------


def test_two_proportion_z_test_by_hand() -> None:
    # 20/100 vs 30/100. Pooled rate 50/200 = 0.25, so the null standard error is
    # sqrt(0.25 * 0.75 * (1/100 + 1/100)) = sqrt(0.00375) and z = 0.1 / that.
    r = analyze(RateSummary(100, 20), RateSummary(100, 30), metric_kind="rate")
    z = 0.1 / math.sqrt(0.00375)
    assert z == pytest.approx(1.632993, abs=1e-6)
    assert r.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert r.p_value == pytest.approx(0.10247, abs=1e-5)
    # The interval uses the unpooled error sqrt(0.2*0.8/100 + 0.3*0.7/100) = sqrt(0.0037).
    half = 1.959964 * math.sqrt(0.0037)
    assert r.confidence_interval.low == pytest.approx(0.1 - half, abs=1e-6)
    assert r.confidence_interval.high == pytest.approx(0.1 + half, abs=1e-6)
    assert r.test == "two-proportion z-test"
    assert (r.control.n, r.control.estimate) == (100, 0.2)
    assert (r.treatment.n, r.treatment.estimate) == (100, 0.3)
    assert r.effect == pytest.approx(0.1)
    assert r.relative_effect == pytest.approx(0.5)


def test_two_proportion_z_test_matches_scipy_normal() -> None:
    a, b = RateSummary(2400, 310), RateSummary(2600, 392)
    r = analyze(a, b, metric_kind="rate", alpha=0.1)
    pooled = (310 + 392) / 5000
    z = (392 / 2600 - 310 / 2400) / math.sqrt(pooled * (1 - pooled) * (1 / 2400 + 1 / 2600))
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    se = math.sqrt((310 / 2400) * (1 - 310 / 2400) / 2400 + (392 / 2600) * (1 - 392 / 2600) / 2600)
    low, high = stats.norm.interval(0.9, loc=r.effect, scale=se)
    assert (r.confidence_interval.low, r.confidence_interval.high) == pytest.approx((low, high))
    assert r.confidence_level == pytest.approx(0.9)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_welch_matches_scipy_ttest_ind(alpha: float) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(10.0, 2.0, size=137)
    b = rng.normal(10.6, 3.5, size=211)
    r = analyze(
        MeanSummary.from_values(a), MeanSummary.from_values(b), metric_kind="mean", alpha=alpha
    )
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert r.test == "Welch's t-test"
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.confidence_interval.low == pytest.approx(ci.low, rel=1e-9)
    assert r.confidence_interval.high == pytest.approx(ci.high, rel=1e-9)
    assert r.effect == pytest.approx(b.mean() - a.mean())
    from_stats = stats.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), b.size, a.mean(), a.std(ddof=1), a.size, equal_var=False
    )
    assert r.p_value == pytest.approx(from_stats.pvalue, rel=1e-9)


def test_summaries_from_raw_arrays() -> None:
    assert RateSummary.from_outcomes([True, False, True, True]) == RateSummary(4, 3)
    assert RateSummary.from_outcomes(np.array([0, 1, 0])).estimate == pytest.approx(1 / 3)
    m = MeanSummary.from_values([1.0, 2.0, 4.0])
    assert m.n == 3
    assert (m.mean, m.variance) == pytest.approx((7 / 3, 7 / 3))
    assert math.isnan(MeanSummary.from_values([5.0]).variance)
    assert MeanSummary.from_values([]).n == 0
    with pytest.raises(ValueError):
        RateSummary.from_outcomes([0, 1, 2])
    with pytest.raises(ValueError):
        RateSummary(10, 11)
    with pytest.raises(ValueError):
        MeanSummary(10, 0.0, -1.0)


# --- sample ratio mismatch -------------------------------------------------------


def test_srm_matches_scipy_chisquare() -> None:
    check = sample_ratio_check(1000, 1200, TrafficSplit())
    ref = stats.chisquare([1000, 1200], [1100, 1100])
    assert check.statistic == pytest.approx(ref.statistic)
    assert check.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert check.mismatch  # chi2 = 18.2, p ~ 2e-5


def test_srm_blocks_the_verdict() -> None:
    # A treatment effect this large would be "B better" if the split were sound.
    r = analyze(RateSummary(1000, 100), RateSummary(1200, 300), metric_kind="rate")
    assert r.srm.mismatch
    assert r.verdict == "sample ratio mismatch"
    assert "1000:1200" in r.reason


def test_srm_tolerates_chance_imbalance_and_uses_the_expected_split() -> None:
    assert not sample_ratio_check(1000, 1040, TrafficSplit()).mismatch
    # Ledger weights in basis points work as shares.
    assert not sample_ratio_check(9000, 1000, TrafficSplit(9000, 1000)).mismatch
    assert sample_ratio_check(9000, 1000, TrafficSplit()).mismatch
    check = sample_ratio_check(0, 0, TrafficSplit())
    assert (check.p_value, check.mismatch) == (1.0, False)
    # Borderline: p just above and below the 0.001 threshold.
    assert not sample_ratio_check(5000, 5300, TrafficSplit()).mismatch  # p ~ 0.003
    assert sample_ratio_check(5000, 5400, TrafficSplit()).mismatch  # p ~ 9e-5


# --- minimum detectable effect -------------------------------------------------------


def test_mde_by_hand() -> None:
    r = analyze(RateSummary(1000, 100), RateSummary(1000, 100), metric_kind="rate")
    # (z_0.975 + z_0.8) * sqrt(p(1-p) * (1/n + 1/n)) with the control rate 0.1.
    assert r.mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(0.09 * 2 / 1000), rel=1e-5)
    assert r.relative_mde == pytest.approx(r.mde / 0.1)
    # Peeking safety has a price: the sequential test needs a larger effect.
    assert r.mde_sequential > r.mde


@pytest.mark.parametrize("kind", ["rate", "mean"])
def test_mde_shrinks_as_samples_grow(kind: str) -> None:
    mdes = []
    seq = []
    for n in [50, 100, 200, 500, 1000, 5000, 20000]:
        if kind == "rate":
            a, b = RateSummary(n, n // 10), RateSummary(n, n // 10)
            r = analyze(a, b, metric_kind="rate", min_samples=10)
        else:
            r = analyze(MeanSummary(n, 5.0, 4.0), MeanSummary(n, 5.0, 4.0), metric_kind="mean")
        mdes.append(r.mde)
        seq.append(r.mde_sequential)
    assert all(x > y for x, y in itertools.pairwise(mdes))
    assert all(x > y for x, y in itertools.pairwise(seq))


def test_mde_with_a_zero_baseline_is_not_zero() -> None:
    r = analyze(RateSummary(500, 0), RateSummary(500, 0), metric_kind="rate")
    assert r.mde > 0
    assert r.p_value == 1.0


# --- the always-valid method ------------------------------------------------------


def test_msprt_by_hand() -> None:
    # n=100 per arm, unit variances, effect 0.5: V = 0.02, z^2 = 12.5. With
    # mixing variance 0.02, r = 0.02 / (1/100 + 1/100) = 1, so
    # Lambda = exp(z^2 / 4) / sqrt(2).
    r = analyze(
        MeanSummary(100, 0.0, 1.0),
        MeanSummary(100, 0.5, 1.0),
        metric_kind="mean",
        mixing_variance=0.02,
    )
    assert r.always_valid_p_value == pytest.approx(math.sqrt(2) * math.exp(-12.5 / 4))
    assert r.always_valid_p_value == pytest.approx(0.06214, abs=1e-5)
    # Half-width sqrt(V) * sqrt((1+r)/r * (2 ln 20 + ln 2)).
    half = math.sqrt(0.02) * math.sqrt(2 * (2 * math.log(20) + math.log(2)))
    assert r.confidence_sequence.low == pytest.approx(0.5 - half)
    assert r.confidence_sequence.high == pytest.approx(0.5 + half)
    # Fixed-horizon says p = 0.0005, yet one look of many is not enough evidence.
    assert r.p_value < 0.001
    assert r.verdict == "keep running"
    assert r.sequential_method.startswith("mSPRT")


def test_default_mixing_variance_is_narrowest_at_the_horizon() -> None:
    tau = default_mixing_variance(2000, 0.05)
    r = tau * 2000 / 2
    assert r == pytest.approx(2 * math.log(20) + math.log1p(r))
    assert r == pytest.approx(8.2, abs=0.05)

    def width(mixing: float) -> float:
        res = analyze(
            MeanSummary(2000, 0.0, 1.0),
            MeanSummary(2000, 0.0, 1.0),
            metric_kind="mean",
            mixing_variance=mixing,
        )
        return res.confidence_sequence.high - res.confidence_sequence.low

    assert width(tau) < width(tau * 0.7)
    assert width(tau) < width(tau * 1.4)
    default = analyze(
        MeanSummary(10, 0.0, 1.0), MeanSummary(10, 0.0, 1.0), metric_kind="mean", max_samples=2000
    )
    assert default.mixing_variance == pytest.approx(tau)


@pytest.mark.parametrize("effect", [0.0, 0.05, 0.1, 0.12, 0.2, -0.15, 0.4])
def test_sequence_contains_zero_exactly_when_not_significant(effect: float) -> None:
    r = analyze(MeanSummary(800, 1.0, 1.0), MeanSummary(800, 1.0 + effect, 1.2), metric_kind="mean")
    assert (0.0 not in r.confidence_sequence) == (r.always_valid_p_value < 0.05)
    # The sequence pays for peeking with width; it always covers the fixed interval.
    assert r.confidence_sequence.low < r.confidence_interval.low
    assert r.confidence_sequence.high > r.confidence_interval.high
    assert r.p_value <= r.always_valid_p_value


# --- verdicts -----------------------------------------------------------------------


def test_b_better_and_a_better_follow_the_direction() -> None:
    a, b = RateSummary(5000, 500), RateSummary(5000, 650)
    up = analyze(a, b, metric_kind="rate")
    assert up.verdict == "B better"
    assert up.always_valid_p_value < 0.05
    # The same data for an error rate: B's higher rate is worse.
    down = analyze(a, b, metric_kind="rate", higher_is_better=False)
    assert down.verdict == "A better"
    assert analyze(b, a, metric_kind="rate").verdict == "A better"


def test_keep_running_below_min_samples() -> None:
    a, b = RateSummary(80, 5), RateSummary(80, 40)
    r = analyze(a, b, metric_kind="rate", max_samples=200)
    assert r.p_value < 1e-6
    assert r.verdict == "keep running"
    assert "80 units" in r.reason
    assert analyze(a, b, metric_kind="rate", max_samples=200, min_samples=50).verdict == "B better"


def test_the_horizon_sets_where_the_test_is_sensitive() -> None:
    # Tuned for 10,000 units per arm (the default), the mixture spreads its
    # evidence over small effects, so 80 units are not enough even for 6% vs 50%.
    a, b = RateSummary(80, 5), RateSummary(80, 40)
    late = analyze(a, b, metric_kind="rate", min_samples=50)
    early = analyze(a, b, metric_kind="rate", min_samples=50, max_samples=200)
    assert late.verdict == "keep running"
    assert early.verdict == "B better"
    assert late.mixing_variance < early.mixing_variance


def test_no_difference_inside_the_equivalence_margin() -> None:
    a, b = MeanSummary(50_000, 10.0, 1.0), MeanSummary(50_000, 10.001, 1.0)
    assert analyze(a, b, metric_kind="mean").verdict == "keep running"
    r = analyze(a, b, metric_kind="mean", equivalence_margin=0.05)
    assert r.verdict == "no difference"
    assert r.confidence_sequence.low >= -0.05 and r.confidence_sequence.high <= 0.05


def test_negligible_but_significant_effect_is_no_difference() -> None:
    a, b = MeanSummary(200_000, 10.0, 1.0), MeanSummary(200_000, 10.03, 1.0)
    assert analyze(a, b, metric_kind="mean").verdict == "B better"
    assert analyze(a, b, metric_kind="mean", equivalence_margin=0.1).verdict == "no difference"


def test_no_difference_at_max_samples() -> None:
    a, b = RateSummary(3000, 300), RateSummary(3000, 310)
    assert analyze(a, b, metric_kind="rate", max_samples=5000).verdict == "keep running"
    r = analyze(a, b, metric_kind="rate", max_samples=3000)
    assert r.verdict == "no difference"
    assert "3000 units per arm" in r.reason


def test_empty_arms_keep_running_and_serialise_to_json() -> None:
    r = analyze(RateSummary(0, 0), RateSummary(0, 0), metric_kind="rate")
    assert r.verdict == "keep running"
    assert math.isnan(r.p_value) and math.isnan(r.always_valid_p_value)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["p_value"] is None
    assert d["control"] == {"n": 0, "estimate": None}
    assert d["confidence_sequence"] == {"low": None, "high": None}
    assert d["verdict"] == "keep running"
    one = analyze(
        MeanSummary.from_values([1.0]), MeanSummary.from_values([2.0]), metric_kind="mean"
    )
    assert one.verdict == "keep running"


def test_constant_outcomes_are_handled_without_warnings() -> None:
    same = analyze(MeanSummary(500, 3.0, 0.0), MeanSummary(500, 3.0, 0.0), metric_kind="mean")
    assert same.p_value == 1.0
    assert same.always_valid_p_value == 1.0
    rates = analyze(RateSummary(500, 500), RateSummary(500, 500), metric_kind="rate")
    assert rates.p_value == 1.0
    assert rates.verdict == "keep running"
    assert math.isnan(
        analyze(RateSummary(500, 0), RateSummary(500, 5), metric_kind="rate").relative_effect
    )


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(TypeError):
        analyze(RateSummary(10, 1), MeanSummary(10, 1.0, 1.0), metric_kind="rate")
    with pytest.raises(TypeError):
        analyze(RateSummary(10, 1), RateSummary(10, 1), metric_kind="mean")
    with pytest.raises(ValueError):
        analyze(RateSummary(10, 1), RateSummary(10, 1), metric_kind="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        analyze(RateSummary(10, 1), RateSummary(10, 1), metric_kind="rate", alpha=1.5)
    with pytest.raises(ValueError):
        analyze(RateSummary(10, 1), RateSummary(10, 1), metric_kind="rate", max_samples=5)
    with pytest.raises(ValueError):
        TrafficSplit(0, 1)


# --- peeking: the reason for the sequential method ------------------------------------

EXPERIMENTS = 300
HORIZON = 2000
EVERY = 50
LOOKS = np.arange(EVERY, HORIZON + 1, EVERY)
ALPHA = 0.05
# Three binomial standard errors around alpha for 300 experiments (~0.038).
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)


def _cumulative_means(x: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample variance of every experiment's first n units, at each look."""
    s = np.cumsum(x, axis=1)[:, LOOKS - 1]
    s2 = np.cumsum(x * x, axis=1)[:, LOOKS - 1]
    mean = s / LOOKS
    return mean, (s2 - LOOKS * mean * mean) / (LOOKS - 1)


def _peek(results: list[list[ExperimentResult]]) -> tuple[float, float]:
    """Share of experiments ever declared decisive: (always-valid verdict, naive p < alpha)."""
    sequential = sum(any(r.verdict in DECISIVE for r in looks) for looks in results)
    naive = sum(any(r.p_value < ALPHA for r in looks) for looks in results)
    return sequential / len(results), naive / len(results)


def test_aa_peeking_with_means_keeps_false_positives_under_alpha() -> None:
    # 300 A/A experiments, both arms N(0, 1), looked at every 50 units per arm up
    # to 2000 (40 looks). The fixed-horizon p-value, read at every look, finds a
    # "winner" in about a quarter of them; the always-valid verdict stays under alpha.
    rng = np.random.default_rng(20240601)
    ma, va = _cumulative_means(rng.standard_normal((EXPERIMENTS, HORIZON)))
    mb, vb = _cumulative_means(rng.standard_normal((EXPERIMENTS, HORIZON)))
    results = [
        [
            analyze(
                MeanSummary(int(n), ma[e, j], va[e, j]),
                MeanSummary(int(n), mb[e, j], vb[e, j]),
                metric_kind="mean",
                alpha=ALPHA,
                min_samples=EVERY,
                max_samples=HORIZON,
            )
            for j, n in enumerate(LOOKS)
        ]
        for e in range(EXPERIMENTS)
    ]
    sequential, naive = _peek(results)
    assert sequential <= ALPHA + TOLERANCE
    assert naive > ALPHA + TOLERANCE
    # At the horizon nothing was found, so the sequential verdict says so.
    final = [looks[-1].verdict for looks in results]
    assert final.count("no difference") + sum(v in DECISIVE for v in final) == EXPERIMENTS


def test_aa_peeking_with_rates_keeps_false_positives_under_alpha() -> None:
    rng = np.random.default_rng(77)
    a = np.cumsum(rng.random((EXPERIMENTS, HORIZON)) < 0.1, axis=1)[:, LOOKS - 1]
    b = np.cumsum(rng.random((EXPERIMENTS, HORIZON)) < 0.1, axis=1)[:, LOOKS - 1]
    results = [
        [
            analyze(
                RateSummary(int(n), int(a[e, j])),
                RateSummary(int(n), int(b[e, j])),
                metric_kind="rate",
                alpha=ALPHA,
                min_samples=EVERY,
                max_samples=HORIZON,
            )
            for j, n in enumerate(LOOKS)
        ]
        for e in range(EXPERIMENTS)
    ]
    sequential, naive = _peek(results)
    assert sequential <= ALPHA + TOLERANCE
    assert naive > ALPHA + TOLERANCE


def test_peeking_still_finds_a_real_effect() -> None:
    # Effect of 0.2 standard deviations: the sequential verdict should find it
    # (and in the right direction) well before 2000 units per arm.
    rng = np.random.default_rng(5)
    n_exp = 100
    ma, va = _cumulative_means(rng.standard_normal((n_exp, HORIZON)))
    mb, vb = _cumulative_means(rng.standard_normal((n_exp, HORIZON)) + 0.2)
    found = 0
    wrong = 0
    for e in range(n_exp):
        for j, n in enumerate(LOOKS):
            v = analyze(
                MeanSummary(int(n), ma[e, j], va[e, j]),
                MeanSummary(int(n), mb[e, j], vb[e, j]),
                metric_kind="mean",
                min_samples=EVERY,
                max_samples=HORIZON,
            ).verdict
            if v in DECISIVE:
                found += 1
                wrong += v == "A better"
                break
    assert found >= 95
    assert wrong == 0


# --- guardrails ------------------------------------------------------------------------


def _guard(
    champion: ServingStats, challenger: ServingStats, *, quality_higher_is_better: bool = True
) -> GuardrailResult:
    return guardrail_check(
        champion,
        challenger,
        max_error_rate_increase=0.01,
        max_p99_ratio=1.5,
        max_quality_drop=0.02,
        quality_higher_is_better=quality_higher_is_better,
    )


def test_guardrails_pass() -> None:
    res = _guard(ServingStats(0.01, 100.0, 0.90), ServingStats(0.015, 140.0, 0.89))
    assert res.passed
    assert res.reasons == ()
    assert [c.name for c in res.checks] == ["error_rate", "p99_latency", "quality"]
    assert res.checks[1].observed == pytest.approx(1.4)


def test_guardrails_fail_with_reasons() -> None:
    res = _guard(ServingStats(0.01, 100.0, 0.90), ServingStats(0.05, 200.0, 0.80))
    assert not res.passed
    assert len(res.reasons) == 3
    assert "error rate" in res.reasons[0] and "exceeds" in res.reasons[0]
    assert "ratio 2" in res.reasons[1]
    assert "drop 0.1" in res.reasons[2]
    only_latency = _guard(ServingStats(0.01, 100.0, 0.90), ServingStats(0.01, 151.0, 0.95))
    assert not only_latency.passed
    assert [c.name for c in only_latency.checks if not c.passed] == ["p99_latency"]


def test_guardrails_quality_direction_and_missing_labels() -> None:
    # For a loss, a higher challenger value is a drop in quality.
    loss = _guard(
        ServingStats(0.0, 10.0, 0.30),
        ServingStats(0.0, 10.0, 0.40),
        quality_higher_is_better=False,
    )
    assert not loss.passed
    assert loss.checks[2].observed == pytest.approx(0.1)
    unlabelled = _guard(ServingStats(0.0, 10.0), ServingStats(0.0, 10.0, 0.1))
    assert unlabelled.passed
    assert unlabelled.skipped == ("quality",)
    zero = _guard(ServingStats(0.0, 0.0), ServingStats(0.0, 5.0))
    assert not zero.passed
    assert zero.checks[1].observed == math.inf
