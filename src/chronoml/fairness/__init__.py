"""Responsible model selection over plain arrays: group metrics, fairness guardrails,
quality estimated before labels arrive (CBPE), and multivariate drift.

No database, HTTP or MLflow here: the store, CLI and REST layers feed these
functions the logged decisions and show their typed results.
"""

from chronoml.fairness._common import FairnessError, Interval
from chronoml.fairness.groups import (
    DISPARITIES,
    Disparity,
    GroupMetrics,
    GroupReport,
    group_report,
)

__all__ = [
    "DISPARITIES",
    "Disparity",
    "FairnessError",
    "GroupMetrics",
    "GroupReport",
    "Interval",
    "group_report",
]
