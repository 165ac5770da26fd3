"""A/B analysis of an endpoint's variants, read from the decision log and its labels.

The statistics live in :mod:`chronoml.domain.experiment`; this module turns
logged decisions into per-variant outcomes and hands them over.

- **Arms.** An arm is a variant serving one model version, either answering
  or as a shadow. The champion (control) is the answering arm that went live
  first; every other arm live in the window is a challenger (treatment)
  compared with it.
- **Only decisions made while both were live count**: a decision is in a
  comparison when the ledger state that routed it (its ``event_seq``) holds
  both arms, so the champion's traffic before the challenger arrived does not
  dilute the comparison.
- **Outcomes** come from each decision's latest label: ``accuracy`` (output
  equals label; a rate), ``abs_error`` and ``squared_error`` (means, lower is
  better) or ``label`` (the label itself: a business metric sent as feedback,
  such as revenue or a 0/1 conversion; a rate when every value is 0 or 1,
  else a mean).
- **A/B arms** (both answering) are independent samples of the traffic, and
  the expected split for the sample-ratio check is taken from the ledger
  weights of the state that routed each labelled decision.
- **Shadow arms** never answer and get no labels of their own: each labelled
  champion decision is paired with the shadow's decision on the same request
  (same time and inputs) and the shadow's output is scored against the same
  label. The arms then hold the same requests, so the split check is trivially
  1:1; treating the paired arms as independent overstates the variance of the
  difference when outcomes are positively correlated, which makes the test
  conservative, never anti-conservative.
- Each decision is one unit: a sticky unit key that makes many decisions
  is counted as many units.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from chronoml.domain import experiment as X
from chronoml.domain import ledger as L
from chronoml.monitor.ab_outcomes import (
    METRICS,
    _clean,
    _kind,
    _serving_dict,
    outcome,
    summarise,
)
from chronoml.monitor.experiment_slices import by_slice
from chronoml.monitor.slices import DEFAULT_BINS
from chronoml.store import decision_reads as DR
from chronoml.store import ledger as SL
from chronoml.store.database import Store
from chronoml.timeutil import iso


class ExperimentError(ValueError):
    """A question the log cannot answer as asked (an unknown metric, a bad window)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Arm:
    """A variant serving one model version, answering or as a shadow."""

    variant: str
    model_name: str
    version: str
    shadow: bool
    since: int | None  # the deploy event that made it live

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.variant, self.version, self.shadow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "model": {"name": self.model_name, "version": self.version},
            "shadow": self.shadow,
            "since_event": self.since,
        }


@dataclass(frozen=True)
class Comparison:
    """One challenger against the champion over a window."""

    control: Arm
    treatment: Arm
    design: str  # "a/b" or "shadow"
    metric: str
    metric_kind: str
    higher_is_better: bool
    decisions: tuple[int, int]  # decisions of each arm while both were live
    labelled: tuple[int, int]  # outcomes each arm contributed
    expected_split: tuple[float, float]
    traffic_srm: X.SampleRatioCheck
    result: X.ExperimentResult
    champion_serving: X.ServingStats
    challenger_serving: X.ServingStats
    serving_note: str
    # with ``detail``: each arm's outcomes and the logged rows they came from (a shadow's
    # outcomes come from the champion's rows they were paired with)
    outcomes: tuple[list[float], list[float]] = field(default=([], []), repr=False)
    sources: tuple[list[Any], list[Any]] = field(default=([], []), repr=False)

    def to_dict(self) -> dict[str, Any]:
        analysis = self.result.to_dict()
        # the analysis' per-arm n and estimate join each arm's identity and counts
        c_est, t_est = analysis.pop("control"), analysis.pop("treatment")
        return {
            "control": {
                **self.control.to_dict(),
                "decisions": self.decisions[0],
                "labelled": self.labelled[0],
                **c_est,
            },
            "treatment": {
                **self.treatment.to_dict(),
                "decisions": self.decisions[1],
                "labelled": self.labelled[1],
                **t_est,
            },
            "design": self.design,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "expected_split": list(self.expected_split),
            "traffic_srm": _clean(
                {
                    "observed": list(self.traffic_srm.observed),
                    "expected_shares": list(self.traffic_srm.expected_shares),
                    "statistic": self.traffic_srm.statistic,
                    "p_value": self.traffic_srm.p_value,
                    "mismatch": self.traffic_srm.mismatch,
                }
            ),
            **analysis,
            "serving": _clean(
                {
                    "champion": _serving_dict(self.champion_serving),
                    "challenger": _serving_dict(self.challenger_serving),
                    "note": self.serving_note,
                }
            ),
        }


# --- the ledger side ----------------------------------------------------------------


@dataclass(frozen=True)
class States:
    """The endpoint's state events by seq, and the arms each holds."""

    by_seq: Mapping[int, L.LedgerEvent]

    @classmethod
    def load(cls, store: Store, endpoint: str) -> States:
        return cls({e.seq: e for e in SL.history(store, endpoint) if e.sets_state})

    def arms(self, seq: int) -> dict[tuple[str, str, bool], L.Variant]:
        ev = self.by_seq.get(seq)
        return {(v.name, v.model.version, v.shadow): v for v in (ev.state or ())} if ev else {}

    def live_between(self, start: int, end: int) -> list[Arm]:
        """Every arm live at some moment of ``[start, end)``, in the order they joined."""
        ordered = sorted(self.by_seq.values(), key=lambda e: (e.effective_at, e.seq))
        chosen = [e for e in ordered if start < e.effective_at < end]
        before = [e for e in ordered if e.effective_at <= start]
        if before:
            chosen.insert(0, before[-1])
        found: dict[tuple[str, str, bool], Arm] = {}
        for e in chosen:
            for v in e.state or ():
                key = (v.name, v.model.version, v.shadow)
                if key not in found:
                    found[key] = Arm(v.name, v.model.name, v.model.version, v.shadow, v.since)
        return sorted(found.values(), key=lambda a: (a.since or 0, a.variant, a.shadow))

    def both_live(self, control: Arm, treatment: Arm) -> dict[int, tuple[int, int]]:
        """State seqs holding both arms, with their weights (basis points)."""
        out = {}
        for seq in self.by_seq:
            arms = self.arms(seq)
            c, t = arms.get(control.key), arms.get(treatment.key)
            if c is not None and t is not None:
                out[seq] = (c.weight, t.weight)
        return out


def champion_of(arms: Sequence[Arm]) -> Arm | None:
    """The answering arm that went live first."""
    answering = [a for a in arms if not a.shadow]
    return min(answering, key=lambda a: (a.since or 0, a.variant)) if answering else None


# --- reading the log ----------------------------------------------------------------


def _rows(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    arm: Arm,
    seqs: Iterable[int],
    *,
    inputs: bool = False,
    ids: bool = False,
) -> list[Any]:
    """An arm's decisions routed by ``seqs``: output, latest label, latency (and inputs)."""
    return DR.arm_rows(
        store,
        endpoint,
        start,
        end,
        arm.variant,
        arm.version,
        arm.shadow,
        seqs,
        inputs=inputs,
        ids=ids,
    )


def _p99(latencies: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(latencies), 99)) if latencies else float("nan")


def compare(
    store: Store,
    endpoint: str,
    control: Arm,
    treatment: Arm,
    start: int,
    end: int,
    *,
    metric: str = "accuracy",
    states: States | None = None,
    alpha: float = 0.05,
    min_samples: int = X.DEFAULT_MIN_SAMPLES,
    max_samples: int | None = None,
    equivalence_margin: float | None = None,
    higher_is_better: bool | None = None,
    settle_us: int = 0,
    detail: bool = False,
) -> Comparison:
    """Compare ``treatment`` with ``control`` on the decisions of ``[start, end)``.

    ``settle_us``: a shadow's copy is logged shortly after the champion's
    answer, so champion decisions younger than this are left out of the
    shadow's error rate (copies that never arrived). ``detail`` keeps the
    outcomes and their rows (ids and inputs), for the analysis per slice.
    """
    if metric not in METRICS:
        raise ExperimentError(
            f"unknown metric {metric!r}: use one of {', '.join(METRICS)}", "metric"
        )
    if control.shadow:
        raise ExperimentError("the control must be an answering variant", "control")
    if treatment.shadow and metric == "label":
        raise ExperimentError(
            f"{treatment.variant} is a shadow: its answers were never acted on, so a "
            "business metric sent as feedback says nothing about it; use accuracy, "
            "abs_error or squared_error",
            "metric",
        )
    states = states or States.load(store, endpoint)
    both = states.both_live(control, treatment)
    better = METRICS[metric][1] if higher_is_better is None else higher_is_better
    wide = {"inputs": treatment.shadow or detail, "ids": detail}
    c_rows = _rows(store, endpoint, start, end, control, both, **wide)
    t_rows = _rows(store, endpoint, start, end, treatment, both, **wide)
    c_lat = [r.latency_ms for r in c_rows]
    t_lat = [r.latency_ms for r in t_rows]

    c_out: list[float] = []
    t_out: list[float] = []
    c_src: list[Any] = []
    t_src: list[Any] = []
    if treatment.shadow:
        design = "shadow"
        copies: dict[tuple[int, bytes, str | None], list[Any]] = defaultdict(list)
        for r in t_rows:
            copies[(r.ts, bytes(r.num), r.txt)].append(orjson.loads(r.output))
        answered = 0
        eligible = 0
        for r in c_rows:
            twins = copies.get((r.ts, bytes(r.num), r.txt))
            if r.ts < end - settle_us:
                eligible += 1
                answered += 1 if twins else 0
            if r.label is None or not twins:
                continue
            label = orjson.loads(r.label)
            a = outcome(metric, orjson.loads(r.output), label)
            b = outcome(metric, twins.pop(), label)
            if a is not None and b is not None:
                c_out.append(a)
                t_out.append(b)
                c_src.append(r)
                t_src.append(r)
        expected = (1.0, 1.0)
        traffic = X.sample_ratio_check(
            len(c_out), len(t_out), X.TrafficSplit(*expected), srm_alpha=X.SRM_ALPHA
        )
        missing = (eligible - answered) / eligible if eligible else 0.0
        note = (
            "shadow error rate: share of the champion's answered requests with no logged "
            "copy from the shadow (failed or dropped); the champion's own failures leave "
            "no decision, so its error rate is 0 here"
        )
        c_serv = X.ServingStats(0.0, _p99(c_lat))
        t_serv = X.ServingStats(missing, _p99(t_lat))
    else:
        design = "a/b"
        exp_c = exp_t = 0.0
        all_c = all_t = 0.0
        for rows, out, src in ((c_rows, c_out, c_src), (t_rows, t_out, t_src)):
            for r in rows:
                wc, wt = both[r.event_seq]
                share = wc / (wc + wt) if wc + wt else 0.5
                all_c += share
                all_t += 1 - share
                if r.label is None:
                    continue
                v = outcome(metric, orjson.loads(r.output), orjson.loads(r.label))
                if v is None:
                    continue
                out.append(v)
                src.append(r)
                exp_c += share
                exp_t += 1 - share
        expected = (exp_c, exp_t) if exp_c > 0 and exp_t > 0 else (0.5, 0.5)
        traffic = X.sample_ratio_check(
            len(c_rows),
            len(t_rows),
            X.TrafficSplit(all_c, all_t) if all_c > 0 and all_t > 0 else X.TrafficSplit(),
        )
        note = (
            "failed requests leave no decision in the log, so error rates are not measured "
            "here (0): the gateway's canary guardrails judge them live, and requests the "
            "challenger loses show up in the sample-ratio checks"
        )
        c_serv = X.ServingStats(0.0, _p99(c_lat))
        t_serv = X.ServingStats(0.0, _p99(t_lat))

    kind = _kind(metric, [*c_out, *t_out])
    result = X.analyze(
        summarise(kind, c_out),
        summarise(kind, t_out),
        metric_kind=kind,  # type: ignore[arg-type]
        alpha=alpha,
        min_samples=min_samples,
        max_samples=max_samples,
        higher_is_better=better,
        expected_split=X.TrafficSplit(*expected),
        equivalence_margin=equivalence_margin,
    )
    c_q = float(np.mean(c_out)) if c_out else None
    t_q = float(np.mean(t_out)) if t_out else None
    return Comparison(
        control=control,
        treatment=treatment,
        design=design,
        metric=metric,
        metric_kind=kind,
        higher_is_better=better,
        decisions=(len(c_rows), len(t_rows)),
        labelled=(len(c_out), len(t_out)),
        expected_split=X.TrafficSplit(*expected).shares(),
        traffic_srm=traffic,
        result=result,
        champion_serving=X.ServingStats(c_serv.error_rate, c_serv.p99_latency_ms, c_q),
        challenger_serving=X.ServingStats(t_serv.error_rate, t_serv.p99_latency_ms, t_q),
        serving_note=note,
        outcomes=(c_out, t_out) if detail else ([], []),
        sources=(c_src, t_src) if detail else ([], []),
    )


def experiment(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    metric: str = "accuracy",
    alpha: float = 0.05,
    min_samples: int = X.DEFAULT_MIN_SAMPLES,
    max_samples: int | None = None,
    equivalence_margin: float | None = None,
    higher_is_better: bool | None = None,
    by: str | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Every challenger live in ``[start, end)`` against the champion, as a JSON-ready dict.

    ``by`` (a model input or a context attribute) adds each comparison per slice, with
    Holm-adjusted p-values (see :mod:`chronoml.monitor.experiment_slices`)."""
    if start >= end:
        raise ExperimentError("the window's start must be before its end", "from")
    if metric not in METRICS:
        raise ExperimentError(
            f"unknown metric {metric!r}: use one of {', '.join(METRICS)}", "metric"
        )
    states = States.load(store, endpoint)
    arms = states.live_between(start, end)
    champion = champion_of(arms)
    comparisons = []
    skipped = []
    for arm in arms:
        if champion is None or arm == champion:
            continue
        if not states.both_live(champion, arm):
            skipped.append(
                {**arm.to_dict(), "reason": "never live at the same time as the champion"}
            )
            continue
        try:
            c = compare(
                store,
                endpoint,
                champion,
                arm,
                start,
                end,
                metric=metric,
                states=states,
                alpha=alpha,
                min_samples=min_samples,
                max_samples=max_samples,
                equivalence_margin=equivalence_margin,
                higher_is_better=higher_is_better,
                detail=by is not None,
            )
        except ExperimentError as exc:
            skipped.append({**arm.to_dict(), "reason": exc.message})
            continue
        d = c.to_dict()
        if by is not None:
            d["by"] = by_slice(store, c, by, bins=bins, alpha=alpha, min_samples=min_samples)
        comparisons.append(d)
    out: dict[str, Any] = {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end)},
        "metric": {
            "name": metric,
            "higher_is_better": METRICS[metric][1]
            if higher_is_better is None
            else higher_is_better,
        },
        "alpha": alpha,
        "min_samples": min_samples,
        "sequential_method": X.SEQUENTIAL_METHOD,
        "champion": champion.to_dict() if champion else None,
        "variants": [a.to_dict() for a in arms],
        "comparisons": comparisons,
    }
    if skipped:
        out["skipped"] = skipped
    if not comparisons and not skipped:
        out["note"] = (
            "fewer than two variants were live in this window: nothing to compare"
            if len(arms) < 2
            else "no challenger to compare"
        )
    return out
