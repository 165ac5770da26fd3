"""Statistics of two samples held sorted, with counts per distinct value.

A reference profile stores its sample sorted; a current window is sorted
once. From there the Wasserstein distance is the area between the two
quantile functions, whose breakpoints merge by integer arithmetic, and the
KS statistic needs one binary search per distinct value of the smaller
sample. Both equal scipy's to rounding (the drift tests check 1e-9).
:mod:`chronoml.domain.drift` turns these numbers into verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from chronoml.domain.profile import FloatArray, IntArray, NumericProfile
from chronoml.domain.profiling import sorted_distinct

# ks_2samp computes an exact p-value up to this sample size, asymptotic above.
_KS_EXACT_MAX_N = 10_000


class Scratch:
    """Work arrays reused between features.

    Large temporaries are what a report over a million rows spends its time
    on: each fresh array costs page faults and zeroing on first touch, as much
    as the arithmetic itself. Views handed out stay valid until the same name
    is asked for again.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, npt.NDArray[Any]] = {}
        self._arange: IntArray = np.arange(0, dtype=np.int64)
        self._pieces: tuple[tuple[int, int], _Pieces] | None = None

    def _get(self, name: str, n: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
        buf = self._buffers.get(name)
        if buf is None or buf.size < n:
            buf = self._buffers[name] = np.empty(n, dtype=dtype)
        return buf[:n]

    def floats(self, name: str, n: int) -> FloatArray:
        return self._get(name, n, np.float64)

    def ints(self, name: str, n: int) -> IntArray:
        return self._get(name, n, np.int64)

    def pieces_for(self, n1: int, n2: int) -> _Pieces | None:
        """The kept partition for sizes (n1, n2) of distinct-valued references, if any."""
        return self._pieces[1] if self._pieces is not None and self._pieces[0] == (n1, n2) else None

    def keep_pieces(self, n1: int, n2: int, pieces: _Pieces) -> _Pieces:
        self._pieces = ((n1, n2), pieces)
        return pieces

    def arange(self, n: int) -> IntArray:
        """``np.arange(n)``, read-only."""
        if self._arange.size < n:
            self._arange = np.arange(n, dtype=np.int64)
            self._arange.flags.writeable = False
        return self._arange[:n]


@dataclass(frozen=True)
class Sample:
    """Sorted values with counts (``None``: each value once), and their total.

    The reference's values are distinct; a current window's raw sorted values
    may repeat (counting below a point is right either way).
    """

    values: FloatArray
    counts: IntArray | None
    n: int
    integer: bool

    @classmethod
    def of(cls, ref: NumericProfile) -> Sample:
        return cls(ref.values, ref.counts, ref.rows, ref.integer)

    def cumulative(self) -> IntArray:
        """``[0, c0, c0 + c1, ...]``: how many values precede each distinct value, then all."""
        out = np.empty(self.values.size + 1, dtype=np.int64)
        out[0] = 0
        if self.counts is None:
            out[1:] = np.arange(1, self.values.size + 1)
        else:
            np.cumsum(self.counts, out=out[1:])
        return out

    def count_below(self, x: FloatArray, side: Literal["left", "right"]) -> IntArray:
        """How many values are ``< x`` (``side="left"``) or ``<= x`` (``"right"``)."""
        idx = np.searchsorted(self.values, x, side=side)
        return idx.astype(np.int64) if self.counts is None else self.cumulative()[idx]

    def expanded(self) -> FloatArray:
        return self.values if self.counts is None else np.repeat(self.values, self.counts)


class Current:
    """A current window's finite values, sorted once; the distinct form on demand."""

    def __init__(self, xs: FloatArray, integer: bool) -> None:
        self.raw = Sample(xs, None, int(xs.size), integer)
        self._distinct: Sample | None = None

    @property
    def n(self) -> int:
        return self.raw.n

    def distinct(self) -> Sample:
        if self._distinct is None:
            values, counts = sorted_distinct(self.raw.values, presorted=True)
            self._distinct = Sample(values, counts, self.raw.n, self.raw.integer)
        return self._distinct


def distinct_union_count(a: FloatArray, b: FloatArray, *, cap: int) -> int:
    """Distinct values of ``a`` and ``b`` together, or ``cap + 1`` if there are more than cap."""
    if a.size > cap or b.size > cap:
        return cap + 1
    return int(np.union1d(a, b).size)


@dataclass(frozen=True)
class _Pieces:
    """How the reference and current quantile intervals cut [0, 1] (see _pieces).

    A piece of the first kind starts at a reference breakpoint: it belongs to
    reference value ``ref_owner[k]`` (``k`` itself when ``ref_owner`` is
    None), meets current value ``cur_at_ref[k]`` and is ``ref_widths[k]``
    wide; the second kind likewise from the current side. Widths are in units
    of 1 / (n1 * n2).
    """

    cur_at_ref: IntArray
    ref_widths: FloatArray
    ref_at_cur: IntArray
    cur_widths: FloatArray
    ref_owner: IntArray | None = None
    cur_owner: IntArray | None = None


def _pieces(ref: Sample, n2: int, s: Scratch, prefix: str) -> _Pieces:
    """The partition of [0, 1] for reference ``ref`` and a window of ``n2`` values.

    Reference value ``i`` owns the quantile interval ``[a_i, a_(i+1))`` with
    ``a_i = (values before it) * n2``; current value ``j`` owns
    ``[j * n1, (j + 1) * n1)``. Every piece of the merged partition starts at
    one of those breakpoints, and where it ends follows by integer
    arithmetic: no merge and no search.
    """
    n1, m = ref.n, ref.values.size
    a = s.ints("a", m + 1)  # a[-1] == n1 * n2 closes the last interval
    a[0] = 0
    if ref.counts is None:
        a[1:] = s.arange(m + 1)[1:]
    else:
        np.cumsum(ref.counts, out=a[1:])
    a *= n2
    starts = a[:-1]

    # Pieces starting at a reference breakpoint end at the next reference
    # breakpoint or at the first current breakpoint at or after their start
    # (zero width when the two coincide: the current piece covers it).
    cur_at_ref = s.ints(prefix + "cur_at_ref", m)
    ref_widths = s.floats(prefix + "ref_widths", m)
    ends = s.ints("ends", m)
    np.floor_divide(starts, n1, out=cur_at_ref)
    np.negative(starts, out=ends)
    np.floor_divide(ends, n1, out=ends)
    np.multiply(ends, -n1, out=ends)  # ceil(start / n1) * n1
    np.minimum(ends, a[1:], out=ends)
    np.subtract(ends, starts, out=ends)
    np.copyto(ref_widths, ends)

    # Pieces starting at a current breakpoint end at the next current
    # breakpoint or at the first reference breakpoint after their start.
    ref_at_cur = s.ints(prefix + "ref_at_cur", n2)
    cur_widths = s.floats(prefix + "cur_widths", n2)
    starts = s.ints("starts", n2)
    ends = s.ints("ends", n2)
    other = s.ints("other", n2)
    np.multiply(s.arange(n2), n1, out=starts)
    if ref.counts is None:
        np.floor_divide(starts, n2, out=ref_at_cur)
    else:
        # Reference interval i holds the current breakpoints j with
        # ceil(a_i / n1) <= j < ceil(a_(i+1) / n1): repeat i that often.
        firsts = -(-a // n1)
        ref_at_cur[:] = np.repeat(s.arange(m), np.diff(firsts))
    np.add(ref_at_cur, 1, out=other)
    np.take(a, other, out=ends)
    np.add(starts, n1, out=other)
    np.minimum(ends, other, out=ends)
    np.subtract(ends, starts, out=ends)
    np.copyto(cur_widths, ends)
    return _Pieces(cur_at_ref, ref_widths, ref_at_cur, cur_widths)


def _without_empty(p: _Pieces) -> _Pieces:
    """Drop zero-width pieces (where breakpoints coincide: all of one kind when n1 == n2)."""
    ref_keep = np.flatnonzero(p.ref_widths > 0)
    cur_keep = np.flatnonzero(p.cur_widths > 0)
    return _Pieces(
        p.cur_at_ref[ref_keep],
        p.ref_widths[ref_keep],
        p.ref_at_cur[cur_keep],
        p.cur_widths[cur_keep],
        ref_owner=None if ref_keep.size == p.ref_widths.size else ref_keep,
        cur_owner=None if cur_keep.size == p.cur_widths.size else cur_keep,
    )


def wasserstein(ref: Sample, xs: FloatArray, scratch: Scratch | None = None) -> float:
    """``scipy.stats.wasserstein_distance(reference, xs)`` for sorted ``xs``.

    W1 is the area between the two quantile functions: the sum over the
    pieces of [0, 1] cut by both samples' quantile breakpoints (see
    :func:`_pieces`) of width x |reference value - current value|. The
    partition depends only on the sizes when every reference value occurs
    once, so it is computed once per (n1, n2) and shared by the features of a
    report.
    """
    s = scratch or Scratch()
    n1, n2 = ref.n, xs.size
    if ref.counts is None:
        pieces = s.pieces_for(n1, n2)
        if pieces is None:
            pieces = s.keep_pieces(n1, n2, _without_empty(_pieces(ref, n2, s, "kept_")))
    else:
        pieces = _pieces(ref, n2, s, "")
    # multiply + sum rather than np.dot: dot goes to a threaded BLAS, whose
    # threads spin and stall when the machine is busy.
    area = _piece_area(ref.values, pieces.ref_owner, xs, pieces.cur_at_ref, pieces.ref_widths, s)
    area += _piece_area(xs, pieces.cur_owner, ref.values, pieces.ref_at_cur, pieces.cur_widths, s)
    return area / (float(n1) * float(n2))


def _piece_area(
    own: FloatArray,
    owner: IntArray | None,
    other: FloatArray,
    index: IntArray,
    widths: FloatArray,
    s: Scratch,
) -> float:
    """Sum over pieces of width x |own value - other value|."""
    gaps = s.floats("gaps", index.size)
    np.take(other, index, out=gaps)
    np.subtract(own if owner is None else own[owner], gaps, out=gaps)
    np.abs(gaps, out=gaps)
    np.multiply(widths, gaps, out=gaps)
    return float(gaps.sum())


def ks_statistic(ref: Sample, cur: Sample) -> float:
    """The two-sided statistic of ``scipy.stats.ks_2samp`` (both samples distinct-valued).

    The largest CDF gap is found at a jump of either CDF; walking the jumps of
    the sample with fewer distinct values ("outer") and looking the other one
    up on both sides of each jump visits every candidate gap, with the same
    quotients scipy computes.
    """
    outer, inner = (ref, cur) if ref.values.size <= cur.values.size else (cur, ref)
    cum = outer.cumulative()
    at = np.divide(cum[1:], outer.n) - np.divide(inner.count_below(outer.values, "right"), inner.n)
    before = np.divide(cum[:-1], outer.n) - np.divide(
        inner.count_below(outer.values, "left"), inner.n
    )
    return float(max(np.abs(at).max(), np.abs(before).max()))


def ks_pvalue(ref: Sample, cur: Sample) -> float:
    if max(ref.n, cur.n) <= _KS_EXACT_MAX_N:
        # Small: scipy's exact computation is cheap, and it is the reference.
        return float(stats.ks_2samp(ref.expanded(), cur.expanded()).pvalue)
    d = ks_statistic(ref, cur)
    # ks_2samp's asymptotic branch, which it takes when either sample exceeds 10,000.
    m, n = sorted((float(ref.n), float(cur.n)), reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def sturges_histograms(ref: Sample, cur: Sample) -> tuple[IntArray, IntArray]:
    """Counts of both samples in ``np.histogram_bin_edges(ref + cur, "sturges")`` bins.

    The edges depend only on the combined size, minimum and maximum (and on
    whether the data are integers), so they are computed from a stand-in array
    with those properties rather than from the concatenated data.
    """
    lo = min(ref.values[0], cur.values[0])
    hi = max(ref.values[-1], cur.values[-1])
    dtype = np.int64 if ref.integer and cur.integer else np.float64
    stand_in = np.full(ref.n + cur.n, lo, dtype=dtype)
    stand_in[-1] = hi
    edges = np.histogram_bin_edges(stand_in, bins="sturges")
    return _histogram(ref, edges), _histogram(cur, edges)


def _histogram(sample: Sample, edges: FloatArray) -> IntArray:
    """``np.histogram(sample, edges)[0]``: half-open bins, the last one closed."""
    below = np.concatenate(
        (sample.count_below(edges[:-1], "left"), sample.count_below(edges[-1:], "right"))
    )
    return np.diff(below)


def value_counts(ref: Sample, cur: Sample) -> tuple[IntArray, IntArray, FloatArray]:
    """Counts of each distinct value of either sample, aligned on the sorted union."""
    keys = np.union1d(ref.values, cur.values)
    return _aligned(ref, keys), _aligned(cur, keys), keys


def _aligned(sample: Sample, keys: FloatArray) -> IntArray:
    idx = np.minimum(np.searchsorted(sample.values, keys), sample.values.size - 1)
    present = sample.values[idx] == keys
    counts = np.ones(sample.values.size, np.int64) if sample.counts is None else sample.counts
    return np.where(present, counts[idx], 0)


# -- categorical features ---------------------------------------------------------------
