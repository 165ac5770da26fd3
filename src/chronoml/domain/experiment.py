"""A/B experiment statistics: effect, tests, a peeking-safe verdict, guardrails.

Pure functions over per-variant summaries; the experiments adapter feeds them
from the decision log and its feedback. Variant A is the control (usually the
champion), variant B the treatment (the challenger). Every effect is
``treatment - control`` in the metric's own units.

Two kinds of outcome metric are supported:

``"rate"``
    A 0/1 outcome per unit (a conversion, a correct prediction). Summarised by
    ``n`` and ``successes``. The fixed-horizon test is the two-proportion
    z-test: the p-value uses the pooled proportion (the variance under the
    null of equal rates), the confidence interval the unpooled (Wald)
    standard error, since it must hold away from the null too.
``"mean"``
    A real-valued outcome (revenue, an absolute error). Summarised by ``n``,
    ``mean`` and sample ``variance``. The fixed-horizon test is Welch's
    t-test (no equal-variance assumption) with the Welch-Satterthwaite
    degrees of freedom for the interval.

Both tests (and the chi-square below) are evaluated with ``scipy.special``
distribution functions rather than the ``scipy.stats`` wrappers, which cost
about a millisecond per call; the tests pin the results to ``scipy.stats``.

Why fixed-horizon numbers are not enough
----------------------------------------
The fixed-horizon p-value is valid only if it is looked at once, at a sample
size chosen in advance. A dashboard that recomputes it every few minutes and
stops at the first ``p < alpha`` raises the false-positive rate far above
``alpha`` (with 40 looks, to around 25-30%; ``tests/test_experiment.py``
measures it). The fixed-horizon p-value and interval are reported for
reference; **the verdict never uses them**.

The sequential method: mSPRT with a normal mixture
---------------------------------------------------
The verdict uses the mixture sequential probability ratio test of Johari,
Koomen, Pekelis and Walsh ("Always valid inference", 2017/2022), in its
large-sample form. With the estimated effect ``d``, its variance
``V = var_A / n_A + var_B / n_B`` and a normal mixing distribution
``N(0, tau2)`` over the true effect, the mixture likelihood ratio against
"no effect" is::

    Lambda = sqrt(V / (V + tau2)) * exp(tau2 * d**2 / (2 * V * (V + tau2)))

``1 / Lambda`` is an always-valid p-value: under the null, the chance that
it ever drops below ``alpha``, at any of arbitrarily many looks, is at most
``alpha`` (Ville's inequality on the mixture martingale). Inverting it gives
the always-valid confidence sequence ``d +/- sqrt(V) * b`` with
``b**2 = (1 + r) / r * (2 * ln(1 / alpha) + ln(1 + r))`` and ``r = tau2 / V``;
zero lies outside the sequence exactly when ``1 / Lambda < alpha``.

Each call is stateless and reports ``1 / Lambda`` at the current look. The
running minimum over looks is also always valid; a caller that stores
results may report it, and a caller that acts at the first look where the
verdict is decisive gets the guarantee as stated.

Mixing variance. ``tau2`` sets where the test is most sensitive: small values
favour small effects late, large values large effects early. It is chosen on
the standardised scale, ``tau2 = mixing_variance * s2`` where
``s2 = V / (1/n_A + 1/n_B)`` is the per-unit variance, so the test depends on
the data only through the z-statistic and the sample sizes (it is unchanged
by rescaling the metric). By default ``mixing_variance`` is the value that
makes the confidence sequence narrowest at the planned horizon: with
``n`` units in each arm at the horizon, ``r = mixing_variance * n / 2``, and
the width is smallest at the ``r`` solving ``r = 2 ln(1/alpha) + ln(1 + r)``
(``r ~= 8.2`` for ``alpha = 0.05``). The horizon is ``max_samples`` when
given, else ``DEFAULT_HORIZON`` units per arm.

Assumptions, in the open: outcomes of different units are independent; the
plug-in variance is accurate (hence ``min_samples`` before any verdict); the
traffic split is roughly constant over the experiment, which the
sample-ratio-mismatch check guards. For rates, the sequential variance uses
add-one smoothed proportions ``(x + 1) / (n + 2)`` so that an arm with no
successes yet does not make the sequence collapse to a point.

Verdict, in order of precedence
-------------------------------
1. ``"sample ratio mismatch"``: the observed split differs from the expected
   one (chi-square goodness of fit, ``p < srm_alpha``, 0.001 by default as is
   common practice). Assignment or logging is broken, so no effect estimate
   can be trusted; this blocks every other verdict.
2. ``"keep running"``: an arm has fewer than ``min_samples`` units.
3. ``"no difference"``: the confidence sequence lies entirely inside
   ``[-equivalence_margin, +equivalence_margin]``. This comes before
   significance on purpose: a real but negligible effect is no reason to
   switch models.
4. ``"B better"`` / ``"A better"``: the always-valid p-value is below
   ``alpha``; the direction follows ``higher_is_better``.
5. ``"no difference"``: both arms reached ``max_samples`` without the above.
6. ``"keep running"`` otherwise.

The minimum detectable effect is reported for both tests at the current
sample sizes: ``(z_{1-alpha/2} + z_{power}) * sqrt(V)`` for the fixed-horizon
test and ``(b + z_{power}) * sqrt(V)`` for the sequential one, with ``V``
from the control's variance for rates (the baseline; add-one smoothed when it
is exactly 0 or 1) and from both arms' variances for means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import special

from chronoml.domain.ab_stats import (
    _mean_variance,
    _msprt,
    _rate_mde_variance,
    _smoothed_rate_variance,
    _two_proportion,
    _welch,
)
from chronoml.domain.serving_guardrails import (
    GuardrailCheck,
    GuardrailResult,
    ServingStats,
    guardrail_check,
)
from chronoml.domain.summaries import Interval, MeanSummary, RateSummary, Summary

# the serving guardrails and the arm summaries are part of this module's vocabulary
__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_MIN_SAMPLES",
    "SEQUENTIAL_METHOD",
    "SRM_ALPHA",
    "ExperimentResult",
    "GuardrailCheck",
    "GuardrailResult",
    "Interval",
    "MeanSummary",
    "RateSummary",
    "SampleRatioCheck",
    "ServingStats",
    "Summary",
    "TrafficSplit",
    "VariantEstimate",
    "analyze",
    "default_mixing_variance",
    "guardrail_check",
    "sample_ratio_check",
]

MetricKind = Literal["rate", "mean"]
Verdict = Literal["keep running", "B better", "A better", "no difference", "sample ratio mismatch"]

SEQUENTIAL_METHOD = "mSPRT, normal mixture (Johari et al., Always valid inference)"
DEFAULT_HORIZON = 10_000  # units per arm the default mixing variance is tuned for
DEFAULT_MIN_SAMPLES = 100
SRM_ALPHA = 0.001

_NAN = float("nan")


@dataclass(frozen=True)
class TrafficSplit:
    """The expected traffic shares of control and treatment, any positive scale.

    Ledger weights (basis points) can be passed as they are.
    """

    control: float = 0.5
    treatment: float = 0.5

    def __post_init__(self) -> None:
        if not (self.control > 0 and self.treatment > 0):
            raise ValueError("both expected shares must be positive")

    def shares(self) -> tuple[float, float]:
        """The shares normalised to sum to one."""
        total = self.control + self.treatment
        return self.control / total, self.treatment / total


@dataclass(frozen=True)
class VariantEstimate:
    """One variant's sample size and point estimate (rate or mean)."""

    n: int
    estimate: float


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of the observed split against the expected one."""

    observed: tuple[int, int]
    expected_shares: tuple[float, float]
    statistic: float
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class ExperimentResult:
    """Everything ``analyze`` concludes; see the module docstring for the method.

    Statistics that are undefined for the data (too few units, a zero control
    rate for the relative effect) are NaN; ``to_dict`` turns them into None.
    """

    metric_kind: MetricKind
    control: VariantEstimate
    treatment: VariantEstimate
    effect: float
    relative_effect: float
    confidence_level: float
    test: str
    p_value: float
    confidence_interval: Interval
    always_valid_p_value: float
    confidence_sequence: Interval
    sequential_method: str
    mixing_variance: float
    srm: SampleRatioCheck
    mde: float
    mde_sequential: float
    relative_mde: float
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: nested dataclasses become dicts, NaN becomes None."""
        out: dict[str, Any] = _nan_to_none(asdict(self))
        return out


def analyze(
    control: Summary,
    treatment: Summary,
    *,
    metric_kind: MetricKind,
    alpha: float = 0.05,
    power: float = 0.8,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    max_samples: int | None = None,
    higher_is_better: bool = True,
    expected_split: TrafficSplit = TrafficSplit(),  # frozen, so one shared default is safe
    equivalence_margin: float | None = None,
    mixing_variance: float | None = None,
    srm_alpha: float = SRM_ALPHA,
) -> ExperimentResult:
    """Compare treatment (B) with control (A) on one outcome metric.

    ``min_samples`` and ``max_samples`` count units per arm. ``equivalence_margin``
    is in the metric's units (None: no equivalence stopping). ``mixing_variance``
    is the variance of the mSPRT's normal mixture on the standardised effect
    scale (None: tuned for the horizon, see the module docstring).
    """
    _check_inputs(control, treatment, metric_kind, alpha, power, min_samples, max_samples)
    if equivalence_margin is not None and equivalence_margin < 0:
        raise ValueError("equivalence_margin must be >= 0")
    if mixing_variance is None:
        horizon = max_samples if max_samples is not None else DEFAULT_HORIZON
        mixing_variance = default_mixing_variance(horizon, alpha)
    elif mixing_variance <= 0:
        raise ValueError("mixing_variance must be > 0")

    srm = sample_ratio_check(control.n, treatment.n, expected_split, srm_alpha=srm_alpha)
    est_a, est_b = control.estimate, treatment.estimate
    effect = est_b - est_a
    relative = effect / abs(est_a) if est_a and math.isfinite(est_a) else _NAN

    if isinstance(control, RateSummary) and isinstance(treatment, RateSummary):
        test = "two-proportion z-test"
        fixed = _two_proportion(control, treatment, alpha)
        seq_var = _smoothed_rate_variance(control, treatment)
        mde_var = _rate_mde_variance(control, treatment)
    else:
        assert isinstance(control, MeanSummary) and isinstance(treatment, MeanSummary)
        test = "Welch's t-test"
        fixed = _welch(control, treatment, alpha)
        seq_var = _mean_variance(control, treatment)
        mde_var = seq_var

    p_value, ci = fixed
    av_p, cs, boundary = _msprt(effect, seq_var, control.n, treatment.n, mixing_variance, alpha)
    z_a = float(special.ndtri(1 - alpha / 2))
    z_power = float(special.ndtri(power))
    mde = (z_a + z_power) * math.sqrt(mde_var) if math.isfinite(mde_var) else _NAN
    mde_seq = (boundary + z_power) * math.sqrt(mde_var) if math.isfinite(mde_var) else _NAN
    relative_mde = mde / abs(est_a) if est_a and math.isfinite(est_a) else _NAN

    verdict, reason = _verdict(
        srm=srm,
        n=(control.n, treatment.n),
        effect=effect,
        always_valid_p=av_p,
        cs=cs,
        alpha=alpha,
        min_samples=min_samples,
        max_samples=max_samples,
        higher_is_better=higher_is_better,
        equivalence_margin=equivalence_margin,
    )
    return ExperimentResult(
        metric_kind=metric_kind,
        control=VariantEstimate(control.n, est_a),
        treatment=VariantEstimate(treatment.n, est_b),
        effect=effect,
        relative_effect=relative,
        confidence_level=1 - alpha,
        test=test,
        p_value=p_value,
        confidence_interval=ci,
        always_valid_p_value=av_p,
        confidence_sequence=cs,
        sequential_method=SEQUENTIAL_METHOD,
        mixing_variance=mixing_variance,
        srm=srm,
        mde=mde,
        mde_sequential=mde_seq,
        relative_mde=relative_mde,
        verdict=verdict,
        reason=reason,
    )


def sample_ratio_check(
    n_control: int, n_treatment: int, expected: TrafficSplit, *, srm_alpha: float = SRM_ALPHA
) -> SampleRatioCheck:
    """Test the observed traffic split against the expected shares."""
    shares = expected.shares()
    total = n_control + n_treatment
    if total == 0:
        # Nothing observed is no evidence of a mismatch (and chisquare would divide by 0).
        return SampleRatioCheck((0, 0), shares, 0.0, 1.0, False)
    # Pearson's chi-square with one degree of freedom (scipy.stats.chisquare, written out).
    stat = 0.0
    for observed, share in ((n_control, shares[0]), (n_treatment, shares[1])):
        expected_n = total * share
        stat += (observed - expected_n) ** 2 / expected_n
    p = float(special.chdtrc(1, stat))
    return SampleRatioCheck((n_control, n_treatment), shares, stat, p, p < srm_alpha)


def default_mixing_variance(horizon: int, alpha: float) -> float:
    """The standardised mixing variance whose confidence sequence is narrowest
    when both arms hold ``horizon`` units."""
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    two_log = 2 * math.log(1 / alpha)
    r = two_log
    # Fixed-point iteration converges: the map's slope 1/(1+r) is below one.
    for _ in range(100):
        r_next = two_log + math.log1p(r)
        if abs(r_next - r) < 1e-12:
            break
        r = r_next
    # With n per arm, r = mixing_variance / (1/n + 1/n).
    return r * 2 / horizon


# --- internals ---------------------------------------------------------------


def _check_inputs(
    control: Summary,
    treatment: Summary,
    metric_kind: str,
    alpha: float,
    power: float,
    min_samples: int,
    max_samples: int | None,
) -> None:
    expected: type[RateSummary] | type[MeanSummary]
    if metric_kind == "rate":
        expected = RateSummary
    elif metric_kind == "mean":
        expected = MeanSummary
    else:
        raise ValueError(f"metric_kind must be 'rate' or 'mean', got {metric_kind!r}")
    if not (isinstance(control, expected) and isinstance(treatment, expected)):
        raise TypeError(f"metric_kind {metric_kind!r} needs two {expected.__name__} values")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must lie in (0, 1)")
    if min_samples < 1:
        raise ValueError("min_samples must be >= 1")
    if max_samples is not None and max_samples < min_samples:
        raise ValueError("max_samples must be >= min_samples")


def _verdict(
    *,
    srm: SampleRatioCheck,
    n: tuple[int, int],
    effect: float,
    always_valid_p: float,
    cs: Interval,
    alpha: float,
    min_samples: int,
    max_samples: int | None,
    higher_is_better: bool,
    equivalence_margin: float | None,
) -> tuple[Verdict, str]:
    if srm.mismatch:
        return "sample ratio mismatch", (
            f"observed split {srm.observed[0]}:{srm.observed[1]} differs from the expected "
            f"{srm.expected_shares[0]:.3g}:{srm.expected_shares[1]:.3g} "
            f"(chi-square p={srm.p_value:.2g}); fix assignment or logging first"
        )
    smallest = min(n)
    if smallest < min_samples or not math.isfinite(always_valid_p):
        return "keep running", f"{smallest} units in the smaller arm, need {min_samples}"
    if equivalence_margin is not None and (
        -equivalence_margin <= cs.low and cs.high <= equivalence_margin
    ):
        return "no difference", (
            f"confidence sequence [{cs.low:.4g}, {cs.high:.4g}] lies within "
            f"+/-{equivalence_margin:.4g}"
        )
    if always_valid_p < alpha:
        b_wins = (effect > 0) == higher_is_better
        return ("B better" if b_wins else "A better"), (
            f"always-valid p={always_valid_p:.3g} < {alpha:g}, effect {effect:+.4g}"
        )
    if max_samples is not None and smallest >= max_samples:
        return "no difference", (
            f"reached {max_samples} units per arm without significance "
            f"(always-valid p={always_valid_p:.3g})"
        )
    return "keep running", f"always-valid p={always_valid_p:.3g} >= {alpha:g}"


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str):
        return [_nan_to_none(v) for v in x]
    return x
