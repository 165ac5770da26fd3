"""Fairness guardrails of a challenger policy.

Two kinds, each written ``[ATTRIBUTE:]METRIC=NUMBER``:

- a **limit** (``--max-gap``): the challenger's figure itself must stay on
  the right side of NUMBER: ``equalized_odds_difference=0.05`` means at most
  0.05; for a figure where higher is better (``demographic_parity_ratio``,
  ``worst_group_accuracy``) it means at least NUMBER, so
  ``demographic_parity_ratio=0.8`` is the four-fifths rule;
- a **margin against the champion** (``--fairness-margin``): the challenger
  may be worse than the champion, measured on the same window, by at most
  NUMBER. ``group_accuracy=0.02`` compares every group's accuracy with the
  same group's under the champion and fails on the group that lost most.

Without ``ATTRIBUTE:`` a guardrail applies to every attribute the policy
names. A figure that cannot be computed (one group, no positive labels in a
group, the champion lacks the group) is "unknown": the caller should wait
for more data rather than promote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chronoml.fairness._common import FairnessError, num
from chronoml.fairness.groups import GroupReport

Kind = Literal["limit", "margin"]
Status = Literal["pass", "fail", "unknown"]

# metric -> higher is better
BETWEEN = {
    "demographic_parity_difference": False,
    "demographic_parity_ratio": True,
    "equalized_odds_difference": False,
}
WORST = {
    "worst_group_accuracy": ("accuracy", True),
    "worst_group_true_positive_rate": ("true_positive_rate", True),
    "worst_group_selection_rate": ("selection_rate", True),
}
PER_GROUP = {"group_accuracy": "accuracy", "group_true_positive_rate": "true_positive_rate"}
METRICS = (*BETWEEN, *WORST, *PER_GROUP)


class GuardrailError(FairnessError):
    """A guardrail that cannot be read or applied; ``field`` names the setting."""


@dataclass(frozen=True)
class Guardrail:
    """One fairness guardrail of a challenger policy."""

    kind: Kind
    metric: str
    threshold: float
    attribute: str | None = None

    @property
    def higher_is_better(self) -> bool:
        if self.metric in BETWEEN:
            return BETWEEN[self.metric]
        return True  # every worst-group and per-group figure is a rate to keep high

    @property
    def spec(self) -> str:
        """The guardrail as it is written (``parse_guardrail`` reads it back)."""
        prefix = f"{self.attribute}:" if self.attribute else ""
        return f"{prefix}{self.metric}={self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "threshold": self.threshold,
            "attribute": self.attribute,
            "spec": self.spec,
        }


def parse_guardrail(spec: str, kind: Kind = "limit") -> Guardrail:
    """Read ``[ATTRIBUTE:]METRIC=NUMBER`` as a limit or a margin against the champion."""
    setting = "max_gap" if kind == "limit" else "fairness_margin"
    if kind not in ("limit", "margin"):
        raise GuardrailError(f"kind must be limit or margin, got {kind!r}", "kind")
    text = spec.strip()
    if "=" not in text:
        raise GuardrailError(
            f"{text!r} is not METRIC=NUMBER (for example equalized_odds_difference=0.05)", setting
        )
    left, _, right = text.partition("=")
    attribute, _, metric = left.strip().rpartition(":")
    metric = metric.strip()
    if metric not in METRICS:
        raise GuardrailError(
            f"unknown fairness metric {metric!r}; known: {', '.join(METRICS)}", setting
        )
    if kind == "limit" and metric in PER_GROUP:
        raise GuardrailError(
            f"{metric} compares each group with the champion's: use it as a margin", setting
        )
    try:
        value = float(right)
    except ValueError:
        raise GuardrailError(f"{right.strip()!r} in {text!r} is not a number", setting) from None
    if not math.isfinite(value) or value < 0:
        raise GuardrailError(f"the number in {text!r} must be >= 0", setting)
    if kind == "limit" and metric != "equalized_odds_difference" and value > 1:
        raise GuardrailError(f"the number in {text!r} must lie in [0, 1]", setting)
    return Guardrail(kind, metric, value, attribute.strip() or None)


def parse_guardrails(
    max_gap: Iterable[str] = (), fairness_margin: Iterable[str] = ()
) -> tuple[Guardrail, ...]:
    """The guardrails of ``--max-gap`` and ``--fairness-margin`` options."""
    return tuple(parse_guardrail(s, "limit") for s in max_gap) + tuple(
        parse_guardrail(s, "margin") for s in fairness_margin
    )


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail on one attribute: the numbers and the verdict."""

    guardrail: Guardrail
    attribute: str
    status: Status
    challenger: float | None
    champion: float | None
    bound: float | None  # the value the challenger's figure had to stay within
    group: str | None  # for per-group and worst-group figures: the group it rests on
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "guardrail": self.guardrail.spec,
            "kind": self.guardrail.kind,
            "metric": self.guardrail.metric,
            "attribute": self.attribute,
            "status": self.status,
            "challenger": num(self.challenger),
            "champion": num(self.champion),
            "bound": num(self.bound),
            "group": self.group,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FairnessVerdict:
    """Every guardrail checked; a challenger may be promoted only when ``passed``."""

    checks: tuple[GuardrailCheck, ...]

    @property
    def failed(self) -> tuple[GuardrailCheck, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def unknown(self) -> tuple[GuardrailCheck, ...]:
        return tuple(c for c in self.checks if c.status == "unknown")

    @property
    def passed(self) -> bool:
        return all(c.status == "pass" for c in self.checks)

    @property
    def status(self) -> Status:
        return "fail" if self.failed else "unknown" if self.unknown else "pass"

    def summary(self) -> str:
        """One line for a ledger event: which guardrails failed, with the numbers."""
        if not self.checks:
            return "no fairness guardrail"
        bad = self.failed or self.unknown
        if not bad:
            return f"fairness guardrails passed ({len(self.checks)})"
        return "; ".join(f"{c.attribute}: {c.reason}" for c in bad)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "passed": self.passed,
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
        }


def _figure(report: GroupReport, metric: str) -> tuple[float | None, str | None]:
    if metric in BETWEEN:
        return report.disparity(metric).value, None
    attr, _ = WORST[metric]
    vals = [(getattr(g, attr), g.group) for g in report.groups if getattr(g, attr) is not None]
    if not vals:
        return None, None
    value, group = min(vals)
    return float(value), group


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _check_limit(g: Guardrail, attribute: str, ch: GroupReport) -> GuardrailCheck:
    value, group = _figure(ch, g.metric)
    if value is None:
        return GuardrailCheck(
            g,
            attribute,
            "unknown",
            None,
            None,
            g.threshold,
            group,
            f"{g.metric} cannot be computed yet for the challenger",
        )
    ok = value >= g.threshold if g.higher_is_better else value <= g.threshold
    rel = ">=" if g.higher_is_better else "<="
    where = f" (group {group!r})" if group else ""
    reason = (
        f"{g.metric} {_fmt(value)}{where} {'within' if ok else 'breaks'} the limit "
        f"{rel} {_fmt(g.threshold)}"
    )
    return GuardrailCheck(
        g, attribute, "pass" if ok else "fail", value, None, g.threshold, group, reason
    )


def _check_margin(
    g: Guardrail, attribute: str, ch: GroupReport, champ: GroupReport
) -> GuardrailCheck:
    pairs: list[tuple[float, float, str | None]] = []
    if g.metric in PER_GROUP:
        attr = PER_GROUP[g.metric]
        theirs = {x.group: getattr(x, attr) for x in champ.groups}
        for x in ch.groups:
            mine = getattr(x, attr)
            if mine is None or theirs.get(x.group) is None:
                return GuardrailCheck(
                    g,
                    attribute,
                    "unknown",
                    mine,
                    theirs.get(x.group),
                    None,
                    x.group,
                    f"{attr} of group {x.group!r} is not known for both versions",
                )
            pairs.append((float(mine), float(theirs[x.group]), x.group))
    else:
        mine, group = _figure(ch, g.metric)
        theirs_v, _ = _figure(champ, g.metric)
        if mine is None or theirs_v is None:
            return GuardrailCheck(
                g,
                attribute,
                "unknown",
                mine,
                theirs_v,
                None,
                group,
                f"{g.metric} is not known for both versions",
            )
        pairs.append((mine, theirs_v, group))
    # the pair where the challenger lost most against the champion decides
    sign = 1.0 if g.higher_is_better else -1.0
    ours, base, group = min(pairs, key=lambda p: sign * (p[0] - p[1]))
    bound = base - g.threshold if g.higher_is_better else base + g.threshold
    ok = ours >= bound - 1e-12 if g.higher_is_better else ours <= bound + 1e-12
    where = f" of group {group!r}" if group else ""
    metric = PER_GROUP.get(g.metric, g.metric)
    reason = (
        f"{metric}{where} {_fmt(ours)} against the champion's {_fmt(base)}: "
        f"{'within' if ok else 'beyond'} the margin {_fmt(g.threshold)}"
    )
    return GuardrailCheck(g, attribute, "pass" if ok else "fail", ours, base, bound, group, reason)


def evaluate(
    guardrails: Iterable[Guardrail],
    challenger: Mapping[str, GroupReport],
    champion: Mapping[str, GroupReport] | None = None,
) -> FairnessVerdict:
    """Check every guardrail on the challenger's (and champion's) reports by attribute."""
    checks: list[GuardrailCheck] = []
    for g in guardrails:
        setting = "max_gap" if g.kind == "limit" else "fairness_margin"
        if g.attribute is not None and g.attribute not in challenger:
            raise GuardrailError(
                f"guardrail {g.spec!r} names attribute {g.attribute!r}, which was not measured",
                setting,
            )
        attrs = [g.attribute] if g.attribute is not None else sorted(challenger)
        if not attrs:
            raise GuardrailError("fairness guardrails need an attribute to group by", "attribute")
        for a in attrs:
            if g.kind == "limit":
                checks.append(_check_limit(g, a, challenger[a]))
            elif champion is None or a not in champion:
                checks.append(
                    GuardrailCheck(
                        g,
                        a,
                        "unknown",
                        None,
                        None,
                        None,
                        None,
                        f"no champion figures for {a!r} to compare with",
                    )
                )
            else:
                checks.append(_check_margin(g, a, challenger[a], champion[a]))
    return FairnessVerdict(tuple(checks))
