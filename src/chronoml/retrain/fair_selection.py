"""Fairness guardrails at one look at a challenger: measured on the log, judged by the policy.

The challenger's and the champion's labelled decisions since the challenger
went live are grouped by each context attribute the policy names (a shadow's
decisions take the label and context of the answered decision they copied),
and :func:`chronoml.fairness.guardrails.evaluate` checks every guardrail on
them. The result goes to :func:`chronoml.domain.challenger.decide` as a
plain judgement, and into the evaluation and the ledger event with all its
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chronoml.domain.challenger import FairnessJudgement, Policy
from chronoml.fairness.groups import GroupReport
from chronoml.fairness.guardrails import FairnessVerdict, GuardrailError, evaluate, parse_guardrails
from chronoml.monitor.experiments import Arm
from chronoml.monitor.fairness import FairnessQueryError, report_for
from chronoml.store import outcomes as O
from chronoml.store.database import Store


@dataclass(frozen=True)
class FairSelection:
    """The fairness guardrails at one look: the judgement, the verdict and the figures."""

    judgement: FairnessJudgement
    verdict: FairnessVerdict | None
    challenger: dict[str, GroupReport]
    champion: dict[str, GroupReport]
    missing: dict[str, str]  # attribute -> why the challenger's figures are not known

    def to_dict(self) -> dict[str, Any]:
        def brief(r: GroupReport) -> dict[str, Any]:
            return {
                "rows": r.rows,
                "groups": {g.group: g.count for g in r.groups},
                "disparities": {d.name: d.value for d in r.disparities},
                "accuracy": {g.group: g.accuracy for g in r.groups},
            }

        return {
            "status": self.judgement.status,
            "summary": self.judgement.summary,
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
            "challenger": {a: brief(r) for a, r in self.challenger.items()},
            "champion": {a: brief(r) for a, r in self.champion.items()},
            "missing": dict(self.missing),
        }


def _arm(store: Store, endpoint: str, arm: Arm, start: int, end: int) -> O.Outcomes:
    if arm.shadow:
        return O.shadow_outcomes(
            store, endpoint, start, end, variant=arm.variant, version=arm.version
        )
    return O.outcomes(store, endpoint, start, end, variant=arm.variant, version=arm.version)


def _reports(
    got: O.Outcomes, attributes: tuple[str, ...], min_group_size: int
) -> tuple[dict[str, GroupReport], dict[str, str]]:
    reports: dict[str, GroupReport] = {}
    missing: dict[str, str] = {}
    rows = list(range(len(got)))
    for a in attributes:
        if not rows:
            missing[a] = "no decisions yet"
            continue
        try:
            # guardrails need figures, not intervals: a small bootstrap keeps each look cheap
            reports[a] = report_for(got, rows, a, min_group_size=min_group_size, n_boot=10)
        except FairnessQueryError as exc:
            missing[a] = exc.message
    return reports, missing


def judge(
    store: Store,
    endpoint: str,
    policy: Policy,
    champion: Arm,
    challenger: Arm,
    start: int,
    end: int,
) -> FairSelection:
    """The policy's fairness guardrails on both arms' decisions in ``[start, end)``."""
    try:
        guardrails = parse_guardrails(policy.max_gap, policy.fairness_margin)
    except GuardrailError as exc:
        # configured before this check existed: say so rather than promote blindly
        return FairSelection(FairnessJudgement("fail", exc.message), None, {}, {}, {})
    attributes = policy.fairness_attributes_used
    min_size = max(1, min(30, policy.min_samples))
    ch, missing = _reports(_arm(store, endpoint, challenger, start, end), attributes, min_size)
    champ, _ = _reports(_arm(store, endpoint, champion, start, end), attributes, min_size)
    if missing:
        why = "; ".join(f"{a}: {m}" for a, m in missing.items())
        return FairSelection(
            FairnessJudgement("unknown", f"fairness of the challenger not known yet ({why})"),
            None,
            ch,
            champ,
            missing,
        )
    verdict = evaluate(guardrails, ch, champ)
    return FairSelection(
        FairnessJudgement(verdict.status, verdict.summary()), verdict, ch, champ, missing
    )


def check_policy(policy: Policy) -> None:
    """Refuse a policy whose fairness guardrails the fairness package cannot read."""
    parse_guardrails(policy.max_gap, policy.fairness_margin)
