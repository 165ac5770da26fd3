"""Responsible model selection over plain arrays: group metrics, fairness guardrails,
quality estimated before labels arrive (CBPE), and multivariate drift.

No database, HTTP or MLflow here: the store, CLI and REST layers feed these
functions the logged decisions and show their typed results.
"""

from chronoml.fairness._common import FairnessError, Interval
from chronoml.fairness.calibration import Calibrator, CbpeError, fit_calibrator
from chronoml.fairness.cbpe import CbpeReport, Estimate, WindowEstimate, estimate
from chronoml.fairness.groups import (
    DISPARITIES,
    Disparity,
    GroupMetrics,
    GroupReport,
    group_report,
)
from chronoml.fairness.guardrails import (
    FairnessVerdict,
    Guardrail,
    GuardrailCheck,
    GuardrailError,
    evaluate,
    parse_guardrail,
    parse_guardrails,
)
from chronoml.fairness.multivariate import (
    DriftInputError,
    MultivariateDrift,
    ReconstructionModel,
    WindowDrift,
    fit_reconstruction,
    reconstruction_drift,
)

__all__ = [
    "DISPARITIES",
    "Calibrator",
    "CbpeError",
    "CbpeReport",
    "Disparity",
    "DriftInputError",
    "Estimate",
    "FairnessError",
    "FairnessVerdict",
    "GroupMetrics",
    "GroupReport",
    "Guardrail",
    "GuardrailCheck",
    "GuardrailError",
    "Interval",
    "MultivariateDrift",
    "ReconstructionModel",
    "WindowDrift",
    "WindowEstimate",
    "estimate",
    "evaluate",
    "fit_calibrator",
    "fit_reconstruction",
    "group_report",
    "parse_guardrail",
    "parse_guardrails",
    "reconstruction_drift",
]
