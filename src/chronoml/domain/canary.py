"""Canary deploys: a new version at a small share, rolled back when it misbehaves.

A canary is a weighted deploy whose ledger payload carries its guardrails
(``payload["canary"]``). While that deploy is still the endpoint's latest
change, every gateway judges the canary's own requests against them; the
first breach records a rollback whose payload names the guardrail, what was
observed and the canary it ends. The rollback is conditional on the canary
still being the latest change, so several gateways tripping at once record
it once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Guardrails:
    """When a canary is rolled back. Judged once it has ``min_requests`` requests."""

    max_error_rate: float = 0.02  # share of its requests answered 5xx by the model
    max_p99_ms: float = 250.0  # its p99 latency, log commit included
    min_requests: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"max error rate must be between 0 and 1, got {self.max_error_rate}")
        if not self.max_p99_ms > 0:
            raise ValueError(f"max p99 must be above 0 ms, got {self.max_p99_ms}")
        if self.min_requests < 1:
            raise ValueError(f"min requests must be at least 1, got {self.min_requests}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Guardrails:
        return cls(
            max_error_rate=float(d.get("max_error_rate", cls.max_error_rate)),
            max_p99_ms=float(d.get("max_p99_ms", cls.max_p99_ms)),
            min_requests=int(d.get("min_requests", cls.min_requests)),
        )


@dataclass(frozen=True)
class Breach:
    guardrail: str  # "error_rate" or "p99_latency"
    observed: float
    limit: float
    requests: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def p99(latencies_ms: Sequence[float]) -> float:
    """The nearest-rank 99th percentile."""
    if not latencies_ms:
        return 0.0
    ordered = sorted(latencies_ms)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def judge(
    g: Guardrails, requests: int, errors: int, latencies_ms: Sequence[float]
) -> Breach | None:
    """The first guardrail the canary breaches, or None (also before ``min_requests``)."""
    if requests < g.min_requests:
        return None
    rate = errors / requests
    if rate > g.max_error_rate:
        return Breach(
            "error_rate",
            rate,
            g.max_error_rate,
            requests,
            f"canary guardrail: error rate {rate:.1%} over {requests} requests "
            f"is above {g.max_error_rate:.1%}",
        )
    if len(latencies_ms) >= g.min_requests:
        q = p99(latencies_ms)
        if q > g.max_p99_ms:
            return Breach(
                "p99_latency",
                q,
                g.max_p99_ms,
                requests,
                f"canary guardrail: p99 latency {q:.1f} ms over {len(latencies_ms)} requests "
                f"is above {g.max_p99_ms:g} ms",
            )
    return None
