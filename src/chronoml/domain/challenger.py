"""The challenger policy: what to do with a retrained version once it is live.

Pure: an endpoint's policy and the numbers measured on the log in, a
decision out. The retraining runner feeds it and records every decision on
the ledger with the numbers it used.

A challenger joins as a shadow (sees a copy of the traffic, never answers)
or as a canary (answers ``share`` percent). It is then judged against the
champion, at every look, in this order:

1. **Serving guardrails** (once the challenger has ``min_samples``
   decisions): its error rate may exceed the champion's by at most
   ``max_error_rate_increase`` and its p99 latency may be at most
   ``max_p99_ratio`` times the champion's. A breach rolls it back.
2. **The A/B analysis** of the outcome metric
   (:func:`chronoml.domain.experiment.analyze`: always-valid mSPRT p-value
   and confidence sequence, so acting at the first decisive look keeps the
   error rates):

   - ``"sample ratio mismatch"``: the split is broken and no estimate can be
     trusted: roll back;
   - ``"B better"``: promote;
   - ``"A better"``: the champion is significantly better: roll back;
   - once both arms have ``min_samples`` outcomes, a confidence sequence that
     excludes "worse by more than ``margin``" (a sequential non-inferiority
     test; this includes the ``"no difference"`` verdict, a sequence inside
     ``+/- margin``): the challenger is no worse and trained on fresher
     data: promote;
   - ``"no difference"`` because ``max_samples`` was reached without the
     above: roll back;
   - otherwise wait, until ``max_duration`` has passed since the challenger
     went live; then roll back (the champion stays when the evidence never
     arrives).

3. **Fairness guardrails** (``max_gap``: a limit on the challenger's own
   figure, ``fairness_margin``: not worse than the champion by more than a
   margin; each ``[ATTRIBUTE:]METRIC=NUMBER`` over the context attributes in
   ``fairness_attributes``), checked when the A/B analysis would promote: a
   broken guardrail rolls the challenger back, naming it with its numbers; a
   figure that cannot be known yet waits (until ``max_duration``).

With ``approval="manual"`` a promotion waits for a person
(``chronoml approve``); roll-backs never wait, since they only return to
what was already serving.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from chronoml.domain.experiment import ExperimentResult, GuardrailResult
from chronoml.errors import InvalidInput

Action = Literal["wait", "promote", "rollback", "ask"]
DEPLOY_MODES = ("shadow", "canary")
APPROVALS = ("auto", "manual")
METRICS = ("accuracy", "abs_error", "squared_error", "label")

_DAY_US = 86_400_000_000


class PolicyError(InvalidInput):
    """A policy setting that makes no sense; ``field`` names it."""


@dataclass(frozen=True)
class Policy:
    """How a retrained version is tried and when it replaces the champion."""

    deploy: str = "shadow"  # "shadow" or "canary"
    share: float = 10.0  # percent of the answering traffic a canary takes
    approval: str = "auto"  # "auto" or "manual" (promotions wait for chronoml approve)
    metric: str = "accuracy"  # outcome metric of the A/B analysis
    margin: float = 0.01  # how much worse (metric units) still counts as no worse
    alpha: float = 0.05
    min_samples: int = 100  # labelled outcomes per arm before any verdict
    max_samples: int | None = None  # per arm; reaching it without significance: no difference
    max_duration_us: int = 7 * _DAY_US  # no verdict by then: roll back
    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    # a canary also carries the gateway's live guardrails (chronoml.domain.canary)
    canary_max_error_rate: float = 0.02
    canary_max_p99_ms: float = 250.0
    # fairness guardrails (chronoml.fairness.guardrails reads the specs)
    max_gap: tuple[str, ...] = ()
    fairness_margin: tuple[str, ...] = ()
    fairness_attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # stored as JSON lists; kept as tuples so the policy stays hashable and frozen
        for name in ("max_gap", "fairness_margin", "fairness_attributes"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise PolicyError(f"{name} must be a list of strings", name)
            object.__setattr__(self, name, tuple(str(v) for v in value))
        for name in ("max_gap", "fairness_margin"):
            for spec in getattr(self, name):
                _check_spec(spec, name)
        unnamed = [s for s in (*self.max_gap, *self.fairness_margin) if ":" not in s.split("=")[0]]
        if unnamed and not self.fairness_attributes:
            raise PolicyError(
                f"fairness guardrail {unnamed[0]!r} needs an attribute to group by: "
                "give --fairness-attribute, or write it ATTRIBUTE:METRIC=NUMBER",
                "fairness_attribute",
            )
        if self.deploy not in DEPLOY_MODES:
            raise PolicyError(f"policy must be shadow or canary, got {self.deploy!r}", "policy")
        if not 0 < self.share < 100:
            raise PolicyError(f"share must be above 0 and below 100, got {self.share}", "share")
        if self.approval not in APPROVALS:
            raise PolicyError(f"approval must be manual or auto, got {self.approval!r}", "approval")
        if self.metric not in METRICS:
            raise PolicyError(
                f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}", "metric"
            )
        if self.deploy == "shadow" and self.metric == "label":
            raise PolicyError(
                "a shadow's answers are never acted on, so a business metric sent as "
                "feedback cannot be measured for it: use --policy canary, or a quality "
                "metric (accuracy, abs_error, squared_error)",
                "metric",
            )
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise PolicyError(f"margin must be >= 0, got {self.margin}", "margin")
        if not 0 < self.alpha < 1:
            raise PolicyError(f"alpha must lie in (0, 1), got {self.alpha}", "alpha")
        if self.min_samples < 1:
            raise PolicyError("min_samples must be >= 1", "min_samples")
        if self.max_samples is not None and self.max_samples < self.min_samples:
            raise PolicyError("max_samples must be >= min_samples", "max_samples")
        if self.max_duration_us <= 0:
            raise PolicyError("max_duration must be positive", "max_duration")
        if not self.max_error_rate_increase >= 0:
            raise PolicyError("max_error_rate_increase must be >= 0", "max_error_rate_increase")
        if not self.max_p99_ratio > 0:
            raise PolicyError("max_p99_ratio must be > 0", "max_p99_ratio")
        if not 0 <= self.canary_max_error_rate <= 1:
            raise PolicyError("canary_max_error_rate must lie in [0, 1]", "canary_max_error_rate")
        if not self.canary_max_p99_ms > 0:
            raise PolicyError("canary_max_p99_ms must be > 0", "canary_max_p99_ms")

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in ("abs_error", "squared_error")

    @property
    def has_fairness(self) -> bool:
        """Whether promotion also depends on fairness guardrails."""
        return bool(self.max_gap or self.fairness_margin)

    @property
    def fairness_attributes_used(self) -> tuple[str, ...]:
        """Every attribute a guardrail is measured on: the named ones and the policy's."""
        named = [
            s.split("=")[0].rpartition(":")[0].strip()
            for s in (*self.max_gap, *self.fairness_margin)
        ]
        return tuple(dict.fromkeys([*self.fairness_attributes, *(n for n in named if n)]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise PolicyError(f"unknown policy setting {unknown[0]!r}", unknown[0])
        try:
            return cls(**dict(d))
        except TypeError as exc:
            raise PolicyError(str(exc)) from None


def _check_spec(spec: str, field: str) -> None:
    """The shape of ``[ATTRIBUTE:]METRIC=NUMBER`` (which metrics exist is the fairness
    package's to say, when the policy is configured)."""
    left, eq, right = spec.partition("=")
    try:
        value = float(right)
    except ValueError:
        value = math.nan
    if not eq or not left.strip() or not (math.isfinite(value) and value >= 0):
        raise PolicyError(
            f"{spec!r} is not METRIC=NUMBER (for example equalized_odds_difference=0.05)", field
        )


@dataclass(frozen=True)
class FairnessJudgement:
    """The fairness guardrails at one look: ``pass``, ``fail`` or ``unknown``, and why."""

    status: Literal["pass", "fail", "unknown"]
    summary: str


@dataclass(frozen=True)
class Decision:
    """What the policy makes of one look; ``reason`` says why, with the numbers."""

    action: Action
    reason: str
    verdict: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    policy: Policy,
    result: ExperimentResult | None,
    guardrails: GuardrailResult | None,
    *,
    elapsed_us: int,
    challenger_decisions: int,
    fairness: FairnessJudgement | None = None,
) -> Decision:
    """The policy's decision at one look.

    ``result`` is None while there is nothing to compare yet (no labelled
    outcome in an arm); ``guardrails`` None while the challenger has served
    fewer than ``min_samples`` decisions; ``elapsed_us`` is the time since
    the challenger went live; ``fairness`` the policy's fairness guardrails
    at this look (None when it has none, or they could not be measured).
    """
    d = _decide(
        policy, result, guardrails, elapsed_us=elapsed_us, challenger_decisions=challenger_decisions
    )
    if d.action not in ("promote", "ask") or not policy.has_fairness:
        return d
    # quality says promote: the fairness guardrails have the last word
    if fairness is not None and fairness.status == "fail":
        return Decision(
            "rollback",
            f"fairness guardrail: {fairness.summary}; on quality alone: {d.reason}",
            d.verdict,
        )
    if fairness is not None and fairness.status == "pass":
        return Decision(d.action, f"{d.reason}; fairness: {fairness.summary}", d.verdict)
    why = fairness.summary if fairness is not None else "fairness not measured yet"
    if elapsed_us >= policy.max_duration_us:
        return Decision(
            "rollback",
            f"fairness still unknown after {_duration(policy.max_duration_us)} ({why}): "
            "the champion stays",
            d.verdict,
        )
    return Decision("wait", f"keep running: quality would promote, but {why}", d.verdict)


def _decide(
    policy: Policy,
    result: ExperimentResult | None,
    guardrails: GuardrailResult | None,
    *,
    elapsed_us: int,
    challenger_decisions: int,
) -> Decision:
    if (
        guardrails is not None
        and challenger_decisions >= policy.min_samples
        and not guardrails.passed
    ):
        return Decision("rollback", "guardrail: " + "; ".join(guardrails.reasons))
    verdict = result.verdict if result is not None else None
    if result is not None and (verdict != "keep running" or _enough(policy, result)):
        if verdict == "sample ratio mismatch":
            return Decision("rollback", f"{verdict}: {result.reason}", verdict)
        if verdict == "B better":
            return _promote(policy, f"B better: {result.reason}", verdict)
        if verdict == "A better":
            return Decision("rollback", f"A better: {result.reason}", verdict)
        if not_worse(policy, result):
            cs = result.confidence_sequence
            return _promote(
                policy,
                f"not worse than the champion by more than {policy.margin:g}: always-valid "
                f"confidence sequence [{cs.low:.4g}, {cs.high:.4g}] for the effect on "
                f"{policy.metric}",
                verdict,
            )
        if verdict == "no difference":
            return Decision(
                "rollback",
                f"{result.reason}, and not shown to be within {policy.margin:g} of the "
                "champion: the champion stays",
                verdict,
            )
    if elapsed_us >= policy.max_duration_us:
        so_far = f" ({result.reason})" if result is not None else " (no labelled outcomes)"
        return Decision(
            "rollback",
            f"no verdict within {_duration(policy.max_duration_us)}{so_far}: the champion stays",
            verdict,
        )
    why = result.reason if result is not None else "no labelled outcomes in an arm yet"
    return Decision("wait", f"keep running: {why}", verdict)


def not_worse(policy: Policy, result: ExperimentResult) -> bool:
    """Whether the always-valid confidence sequence rules out the challenger being
    worse than the champion by more than the margin (a sequential non-inferiority test)."""
    cs = result.confidence_sequence
    if not (math.isfinite(cs.low) and math.isfinite(cs.high)):
        return False
    if policy.higher_is_better:
        return cs.low >= -policy.margin
    return cs.high <= policy.margin


def _enough(policy: Policy, result: ExperimentResult | None) -> bool:
    return result is not None and min(result.control.n, result.treatment.n) >= policy.min_samples


def _promote(policy: Policy, why: str, verdict: str | None) -> Decision:
    if policy.approval == "manual":
        return Decision("ask", f"{why}; promotion waits for approval", verdict)
    return Decision("promote", why, verdict)


def _duration(us: int) -> str:
    s = us / 1_000_000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g}{unit}"
    return f"{s:g}s"


# --- ledger lines ----------------------------------------------------------------

KINDS = frozenset(
    {
        "job_started",
        "job_trained",
        "job_failed",
        "experiment_verdict",
        "job_approved",
        "job_rejected",
    }
)


def summary(kind: str, p: Mapping[str, Any]) -> str:
    """One human line for a retraining or experiment event (``chronoml history``)."""
    job = p.get("job", {}).get("id", "?")
    if kind == "job_started":
        trig = p.get("trigger", {})
        why = trig.get("kind", "?")
        if why == "alert":
            why = f"alert {trig.get('rule')} ({trig.get('metric')} = {trig.get('value')})"
        elif why == "manual":
            why = f"by hand ({trig.get('actor')})"
        return f"retraining job {job} started: {why}"
    if kind == "job_trained":
        snap = p.get("snapshot", {})
        m = p.get("model", {})
        text = (
            f"retraining job {job} registered {m.get('name')} v{m.get('version')} "
            f"trained on snapshot {snap.get('name')} {str(snap.get('id'))[:19]} "
            f"({snap.get('rows')} rows)"
        )
        val = p.get("validation")
        if val:
            text += f"; holdout {val.get('metric')} {_num(val.get('challenger'))}"
            text += f" vs champion {_num(val.get('champion'))}: passed"
        return text
    if kind == "job_failed":
        return f"retraining job {job} failed at {p.get('step')}: {p.get('reason')}"
    if kind == "experiment_verdict":
        ex = p.get("experiment") or {}
        d = p.get("decision", {})
        action = {
            "promote": "promote",
            "rollback": "roll back",
            "ask": "promote once approved",
        }.get(d.get("action", ""), d.get("action"))
        core = ""
        if ex:
            ci = ex.get("confidence_sequence") or {}
            core = (
                f"{ex.get('verdict')} on {p.get('metric')}: "
                f"{_num((ex.get('control') or {}).get('estimate'))} (n={(ex.get('control') or {}).get('n')}) "
                f"vs {_num((ex.get('treatment') or {}).get('estimate'))} "
                f"(n={(ex.get('treatment') or {}).get('n')}), effect {_num(ex.get('effect'))} "
                f"[{_num(ci.get('low'))}, {_num(ci.get('high'))}], "
                f"always-valid p={_num(ex.get('always_valid_p_value'))}; "
            )
        return f"experiment verdict for job {job}: {core}{action} ({d.get('reason')})"
    if kind in ("job_approved", "job_rejected"):
        what = "approved: promote" if kind == "job_approved" else "rejected: roll back"
        note = f" ({p['reason']})" if p.get("reason") else ""
        return f"retraining job {job} {what}{note}"
    return f"{kind} {json.dumps(dict(p), sort_keys=True)}"


def change_note(p: Mapping[str, Any]) -> str:
    """What a deploy/rollback/set_weights made by a retraining job adds to its line."""
    job = p.get("job")
    if not isinstance(job, Mapping):
        return ""
    role = job.get("role")
    if role == "challenger":
        return f" (challenger of retraining job {job.get('id')})"
    if role == "promotion":
        return f" (promoted by retraining job {job.get('id')}, verdict #{job.get('verdict_seq')})"
    return f" (retraining job {job.get('id')}, verdict #{job.get('verdict_seq')})"


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)
