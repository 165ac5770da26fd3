"""Monitoring answers as typed values: drift, quality, fairness and estimated quality.

Each is what :class:`chronoml.Chronoml` returns for the question, and its
``as_dict()`` is the one JSON form of it: the REST body, the CLI's ``--json``
and what the text output, the UI and the MLflow mirror read. Sections whose
shape belongs to the statistic that made them (a metric set, a slice breakdown,
a multivariate check) stay mappings in their JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chronoml.domain.drift import DriftReport, FeatureDrift
from chronoml.timeutil import iso


@dataclass(frozen=True)
class Span:
    """The window a report covers, ``[start, end)`` in microseconds, and its decisions."""

    start: int
    end: int
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {"from": iso(self.start), "to": iso(self.end), "rows": self.rows}


@dataclass(frozen=True)
class ModelId:
    """A registered model version; ``name`` is None when no ledger event names it."""

    name: str | None
    version: str

    def as_dict(self) -> dict[str, Any]:
        if self.name is None:
            return {"version": self.version}
        return {"name": self.name, "version": self.version}


# --- drift ------------------------------------------------------------------


@dataclass(frozen=True)
class VariantDrift:
    """One variant and version of a drift report: its verdicts against the reference
    profile of its version, or why there are none (``error``)."""

    variant: str
    model: ModelId
    rows: int
    report: DriftReport | None = None
    error: str | None = None
    multivariate: Mapping[str, Any] | None = None
    # the report per slice of the ``by`` attribute, the worst slice marked
    by: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variant": self.variant, "model": self.model.as_dict()}
        out["rows"] = self.rows
        if self.report is None:
            out["error"] = self.error
            return out
        out.update(self.report.to_dict())
        out["multivariate"] = dict(self.multivariate) if self.multivariate is not None else None
        if self.by is not None:
            out["by"] = dict(self.by)
        return out


@dataclass(frozen=True)
class EndpointDrift:
    """Drift of an endpoint's decisions over a window, per variant and version (most
    decisions first); the top-level verdict is that of the first variant with a report."""

    endpoint: str
    window: Span
    variants: tuple[VariantDrift, ...]
    # features the privacy policy hashes or drops, so no statistic compares them
    not_used: tuple[Mapping[str, str], ...] = ()

    @property
    def main(self) -> VariantDrift | None:
        """The variant whose verdict is the endpoint's, None when no variant has one."""
        return next((v for v in self.variants if v.report is not None), None)

    @property
    def features(self) -> tuple[FeatureDrift, ...]:
        main = self.main
        return main.report.features if main is not None and main.report is not None else ()

    @property
    def prediction(self) -> FeatureDrift | None:
        main = self.main
        return main.report.prediction if main is not None and main.report is not None else None

    @property
    def drifted_share(self) -> float | None:
        main = self.main
        return main.report.drifted_share if main is not None and main.report is not None else None

    @property
    def dataset_drift(self) -> bool:
        main = self.main
        return bool(main is not None and main.report is not None and main.report.dataset_drift)

    @property
    def empty(self) -> bool:
        return self.main is None and self.window.rows == 0

    def variant(self, name: str) -> VariantDrift:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        variants = [v.as_dict() for v in self.variants]
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "window": self.window.as_dict(),
            "variants": variants,
        }
        if self.not_used:
            out["not_used"] = [dict(n) for n in self.not_used]
        main = next((v for v in variants if "features" in v), None)
        if main is None:
            rows = self.window.rows
            out["features"] = []
            out["prediction"] = None
            out["drifted_share"] = None
            out["dataset_drift"] = False
            out["empty"] = rows == 0
            out["message"] = "no decisions in this window" if rows == 0 else "no reference profile"
        else:
            for key in ("features", "prediction", "drifted_share", "dataset_drift"):
                out[key] = main[key]
            out["multivariate"] = main.get("multivariate")
            out["empty"] = False
        return out


# --- quality ----------------------------------------------------------------


@dataclass(frozen=True)
class VariantQuality:
    """Label coverage and quality metrics of one variant and version."""

    variant: str
    model: ModelId
    decisions: int
    labelled: int
    label_coverage: float | None
    metrics: Mapping[str, Any]  # classifier or regressor metrics, by name ("task" first)
    # the metrics per slice of a context attribute, the worst slice marked
    by: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variant": self.variant,
            "model": self.model.as_dict(),
            "decisions": self.decisions,
            "labelled": self.labelled,
            "label_coverage": self.label_coverage,
            "metrics": dict(self.metrics),
        }
        if self.by is not None:
            out["by"] = dict(self.by)
        return out


@dataclass(frozen=True)
class QualityReport:
    """Quality of an endpoint's labelled decisions over a window, per variant and version
    (most decisions first)."""

    endpoint: str
    window: Span
    variants: tuple[VariantQuality, ...]

    def variant(self, name: str) -> VariantQuality:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "window": self.window.as_dict(),
            "variants": [v.as_dict() for v in self.variants],
        }


# --- fairness ---------------------------------------------------------------


@dataclass(frozen=True)
class FairnessReport:
    """Group metrics and disparities of one version over a context attribute."""

    endpoint: str
    window: Span
    model: ModelId
    report: Mapping[str, Any]  # the group report: attribute, overall, groups, disparities
    other_versions: tuple[str, ...] = ()  # other versions that served in the window

    @property
    def attribute(self) -> str:
        return str(self.report["attribute"])

    @property
    def disparities(self) -> Mapping[str, Any]:
        return dict(self.report["disparities"])

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self.report["warnings"])

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "window": self.window.as_dict(),
            "model": self.model.as_dict(),
        }
        if self.other_versions:
            out["other_versions"] = list(self.other_versions)
        out.update(self.report)
        return out


# --- estimated quality ------------------------------------------------------


@dataclass(frozen=True)
class VersionEstimate:
    """Quality of one version's decisions estimated from their scores (CBPE), beside the
    realized quality of those already labelled."""

    method: Mapping[str, Any]  # the estimator: method, task, classes, average, calibrated, ...
    model: ModelId
    decisions: int
    scored: int
    labelled: int
    reference: Span  # the labelled decisions the estimator was calibrated on
    estimated: Mapping[str, Mapping[str, Any]]  # metric -> {"value", "low", "high"}
    realized: Mapping[str, Any] | None

    def value(self, metric: str) -> Any:
        """The estimate of ``metric`` (None where it is undefined)."""
        return self.estimated[metric]["value"]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.method,
            "model": self.model.as_dict(),
            "decisions": self.decisions,
            "scored": self.scored,
            "labelled": self.labelled,
            "reference": self.reference.as_dict(),
            "estimated": {k: dict(v) for k, v in self.estimated.items()},
            "realized": None if self.realized is None else dict(self.realized),
        }


@dataclass(frozen=True)
class VariantEstimate:
    """The estimate of one variant and version."""

    variant: str
    estimate: VersionEstimate

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, **self.estimate.as_dict()}


@dataclass(frozen=True)
class EstimatedQuality:
    """Estimated quality of an endpoint's decisions over a window, per variant and version."""

    endpoint: str
    window: Span
    variants: tuple[VariantEstimate, ...]

    def variant(self, name: str) -> VariantEstimate:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "window": self.window.as_dict(),
            "variants": [v.as_dict() for v in self.variants],
        }
