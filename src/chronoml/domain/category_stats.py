"""The statistics of categorical drift: distances between category shares, and count tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.spatial import distance

from chronoml.domain.profile import Category, FloatArray, IntArray


def share_distance(method: str, ref_share: FloatArray, cur_share: FloatArray) -> float:
    if method == "jensenshannon":
        return float(distance.jensenshannon(ref_share, cur_share))
    # PSI is not in scipy. Empty bins get a small share instead of zero, the
    # way Evidently does it, so that the logarithm stays finite.
    ref_share = fill_zeros(ref_share)
    cur_share = fill_zeros(cur_share)
    return float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))


def fill_zeros(share: FloatArray) -> FloatArray:
    positive = share[share != 0]
    smallest = float(positive.min())
    return np.where(share == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, share)


def contingency_test(
    method: str,
    ref_counts: IntArray,
    cur_counts: IntArray,
    keys: Sequence[Category],
    limit: float,
) -> tuple[float, str | None]:
    """Chi-square or Z-test p-value of current against reference counts (and a note).

    ``limit`` is the p-value below which drift is declared: the note says when
    the two-sample test's verdict at that limit differs.
    """
    n1 = int(ref_counts.sum())
    n2 = int(cur_counts.sum())
    if method == "z":
        return z_test(ref_counts, cur_counts, keys, n1, n2), None
    expected = ref_counts * (n2 / n1)
    # A category absent from the reference has zero expected count: an infinite
    # statistic and a zero p-value, which is the verdict wanted (new category).
    with np.errstate(divide="ignore", invalid="ignore"):
        p = float(stats.chisquare(cur_counts, expected).pvalue)
    note = None
    if ref_counts.size > 1:
        two_sample = float(stats.chi2_contingency(np.vstack((ref_counts, cur_counts))).pvalue)
        if (two_sample < limit) != (p < limit):
            note = (
                f"the two-sample chi-square test (p={two_sample:.3g}) "
                f"{'finds' if two_sample < limit else 'does not find'} drift; this verdict "
                "follows Evidently, which takes the reference counts as exact"
            )
    return p, note


def z_test(
    ref_counts: IntArray, cur_counts: IntArray, keys: Sequence[Category], n1: int, n2: int
) -> float:
    """Evidently's two-proportion Z-test: the share of values other than the first key."""
    if len(keys) == 1:
        return 1.0
    try:
        first = keys.index(sorted(keys)[0])  # type: ignore[type-var]
    except TypeError:  # keys of mixed types; the statistic is symmetric for two keys
        first = keys.index(sorted(keys, key=str)[0])
    p1 = float(n1 - ref_counts[first]) / n1
    p2 = float(n2 - cur_counts[first]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * stats.norm.sf(abs(z)))
