"""Guardrails a challenger must pass on serving health before it may be promoted:
error rate, p99 latency and (once labels exist) quality, each against the champion's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ServingStats:
    """A variant's serving health over a window; ``quality`` None without labels."""

    error_rate: float
    p99_latency_ms: float
    quality: float | None = None


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail: what was observed against its limit."""

    name: Literal["error_rate", "p99_latency", "quality"]
    passed: bool
    observed: float
    limit: float
    reason: str


@dataclass(frozen=True)
class GuardrailResult:
    """All guardrails; ``passed`` only if every evaluated check passed."""

    passed: bool
    checks: tuple[GuardrailCheck, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the challenger failed, one line per failed check (empty if it passed)."""
        return tuple(c.reason for c in self.checks if not c.passed)


def guardrail_check(
    champion: ServingStats,
    challenger: ServingStats,
    *,
    max_error_rate_increase: float,
    max_p99_ratio: float,
    max_quality_drop: float,
    quality_higher_is_better: bool = True,
) -> GuardrailResult:
    """Whether a canary or challenger stays within limits relative to the champion.

    Limits: ``challenger.error_rate - champion.error_rate <= max_error_rate_increase``;
    ``challenger.p99 / champion.p99 <= max_p99_ratio``; the quality drop (champion
    minus challenger, flipped when lower quality is better) ``<= max_quality_drop``.
    The quality check is skipped, and named in ``skipped``, when either side has
    no quality yet.
    """
    checks: list[GuardrailCheck] = []
    skipped: list[str] = []

    increase = challenger.error_rate - champion.error_rate
    ok = increase <= max_error_rate_increase
    checks.append(
        GuardrailCheck(
            "error_rate",
            ok,
            increase,
            max_error_rate_increase,
            f"error rate {challenger.error_rate:.4g} vs champion {champion.error_rate:.4g}: "
            f"increase {increase:.4g} {'within' if ok else 'exceeds'} "
            f"{max_error_rate_increase:.4g}",
        )
    )

    if champion.p99_latency_ms > 0:
        ratio = challenger.p99_latency_ms / champion.p99_latency_ms
    else:
        # A zero champion p99 makes any slower challenger infinitely slower.
        ratio = 1.0 if challenger.p99_latency_ms <= 0 else math.inf
    ok = ratio <= max_p99_ratio
    checks.append(
        GuardrailCheck(
            "p99_latency",
            ok,
            ratio,
            max_p99_ratio,
            f"p99 latency {challenger.p99_latency_ms:.4g} ms vs champion "
            f"{champion.p99_latency_ms:.4g} ms: ratio {ratio:.3g} "
            f"{'within' if ok else 'exceeds'} {max_p99_ratio:.3g}",
        )
    )

    if champion.quality is None or challenger.quality is None:
        skipped.append("quality")
    else:
        drop = champion.quality - challenger.quality
        if not quality_higher_is_better:
            drop = -drop
        ok = drop <= max_quality_drop
        checks.append(
            GuardrailCheck(
                "quality",
                ok,
                drop,
                max_quality_drop,
                f"quality {challenger.quality:.4g} vs champion {champion.quality:.4g}: "
                f"drop {drop:.4g} {'within' if ok else 'exceeds'} {max_quality_drop:.4g}",
            )
        )
    return GuardrailResult(all(c.passed for c in checks), tuple(checks), tuple(skipped))
