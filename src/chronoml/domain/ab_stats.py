"""The statistics behind an A/B verdict: two-sample tests, their variances and the mSPRT.

Plain functions of the arms' summaries; :mod:`chronoml.domain.experiment` composes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import special

from chronoml.domain.summaries import Interval, MeanSummary, RateSummary

_NAN = float("nan")


def _two_proportion(a: RateSummary, b: RateSummary, alpha: float) -> tuple[float, Interval]:
    if a.n == 0 or b.n == 0:
        return _NAN, Interval(_NAN, _NAN)
    pa, pb = a.estimate, b.estimate
    diff = pb - pa
    pooled = (a.successes + b.successes) / (a.n + b.n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n))
    # se0 == 0 only when every outcome in both arms is the same: the rates are equal.
    p_value = float(2 * special.ndtr(-abs(diff) / se0)) if se0 > 0 else 1.0
    se = math.sqrt(pa * (1 - pa) / a.n + pb * (1 - pb) / b.n)
    half = float(special.ndtri(1 - alpha / 2)) * se
    return p_value, Interval(diff - half, diff + half)


def _welch(a: MeanSummary, b: MeanSummary, alpha: float) -> tuple[float, Interval]:
    if a.n < 2 or b.n < 2:
        return _NAN, Interval(_NAN, _NAN)
    diff = b.mean - a.mean
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        # Constant outcomes in both arms: the difference is known exactly.
        return (1.0 if diff == 0 else 0.0), Interval(diff, diff)
    # scipy.stats.ttest_ind_from_stats(..., equal_var=False), written out.
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    p_value = float(2 * special.stdtr(df, -abs(diff) / se))
    half = float(special.stdtrit(df, 1 - alpha / 2)) * se
    return p_value, Interval(diff - half, diff + half)


def _smoothed_rate_variance(a: RateSummary, b: RateSummary) -> float:
    if a.n == 0 or b.n == 0:
        return _NAN
    pa = (a.successes + 1) / (a.n + 2)
    pb = (b.successes + 1) / (b.n + 2)
    return pa * (1 - pa) / a.n + pb * (1 - pb) / b.n


def _rate_mde_variance(a: RateSummary, b: RateSummary) -> float:
    if a.n == 0 or b.n == 0:
        return _NAN
    # The control rate is the baseline both arms are powered against. A baseline
    # of exactly 0 or 1 would claim any effect is detectable, so smooth it then.
    p = a.estimate if 0 < a.successes < a.n else (a.successes + 1) / (a.n + 2)
    return p * (1 - p) * (1 / a.n + 1 / b.n)


def _mean_variance(a: MeanSummary, b: MeanSummary) -> float:
    if a.n < 2 or b.n < 2:
        return _NAN
    return a.variance / a.n + b.variance / b.n


def _msprt(
    effect: float, v: float, n_a: int, n_b: int, mixing_variance: float, alpha: float
) -> tuple[float, Interval, float]:
    """Always-valid p-value, confidence sequence and its boundary in z units."""
    if not (math.isfinite(v) and math.isfinite(effect)):
        return _NAN, Interval(_NAN, _NAN), _NAN
    # r = tau2 / V with tau2 = mixing_variance * V / (1/n_a + 1/n_b): see module docstring.
    r = mixing_variance / (1 / n_a + 1 / n_b)
    boundary = math.sqrt((1 + r) / r * (2 * math.log(1 / alpha) + math.log1p(r)))
    if v == 0:
        # Zero variance (constant means): the effect is known exactly.
        return (1.0 if effect == 0 else 0.0), Interval(effect, effect), boundary
    z2 = effect * effect / v
    log_lambda = -0.5 * math.log1p(r) + r / (1 + r) * z2 / 2
    p = math.exp(-log_lambda) if log_lambda > 0 else 1.0
    half = boundary * math.sqrt(v)
    return min(1.0, p), Interval(effect - half, effect + half), boundary


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (family-wise error rate).

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i``, made
    monotone and capped at 1. NaN p-values (no test) stay NaN and are not
    counted in ``m``.
    """
    ranked = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    out = [_NAN] * len(p_values)
    m = len(ranked)
    running = 0.0
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out
