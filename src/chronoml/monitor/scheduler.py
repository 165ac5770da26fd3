"""Scheduled monitoring: every interval, compute the last window of every endpoint.

Each result (drift, prediction drift, latency, error rate, quality, label
coverage) is stored in the monitoring history, mirrored to MLflow as metrics
(one monitoring run per endpoint, variant and version; step = window number,
timestamp = window end) so the MLflow UI plots it over time, and handed to
the alert rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from chronoml.domain.reports import VariantQuality
from chronoml.monitor import estimated
from chronoml.monitor.leader import Leadership
from chronoml.monitor.quality import quality as quality_of
from chronoml.monitor.reports import endpoint_drift
from chronoml.privacy import erasure
from chronoml.store import blocks
from chronoml.store import decision_reads as DR
from chronoml.store import ledger as SL
from chronoml.store import monitoring as SM
from chronoml.store import outcomes as O
from chronoml.timeutil import iso, now_us
from chronoml.window import Window
from chronoml.worker import Worker

if TYPE_CHECKING:
    from chronoml.context import Context

log = logging.getLogger("chronoml.monitor")

MONITORING_EXPERIMENT = "chronoml-monitoring"


class AlertSink(Protocol):
    def evaluate(
        self,
        endpoint: str,
        variant: str,
        metrics: Mapping[str, float | None],
        window_start: int,
        window_end: int,
    ) -> Any: ...


@dataclass(frozen=True)
class WindowResult:
    """The monitored numbers of one variant and version over one window."""

    endpoint: str
    variant: str
    model_name: str
    model_version: str
    start: int
    end: int
    metrics: dict[str, float | None]


def _f(v: Any) -> float | None:
    if v is None or (isinstance(v, bool | int | float) and not np.isfinite(float(v))):
        return None
    return float(v)


def _estimated(
    cm: Context, endpoint: str, v: VariantQuality, start: int, end: int
) -> dict[str, float | None]:
    """``estimated:METRIC`` of one variant's window (CBPE), when its version logs scores
    and has a labelled reference; nothing otherwise."""
    name, version = v.model.name or "", v.model.version
    if O.classes_of(cm.store, name, version) is None:
        return {}
    ref = estimated.Reference(start - estimated.DEFAULT_REFERENCE_US, start, False)
    try:
        got = estimated.estimate_version(
            cm.store, endpoint, name, version, start, end, ref, variant=v.variant
        )
    except estimated.EstimateError as exc:
        log.debug("no estimate for %s %s: %s", endpoint, v.variant, exc.message)
        return {}
    return {f"estimated:{k}": _f(got.value(k)) for k in got.estimated}


def compute(
    cm: Context,
    endpoint: str,
    start: int,
    end: int,
    error_counts: Callable[[str, str], tuple[int, int]] | None = None,
) -> list[WindowResult]:
    """Every monitored metric of ``endpoint`` over ``[start, end)``, per variant and version."""
    by_key: dict[tuple[str, str], dict[str, float | None]] = {}
    names: dict[tuple[str, str], str] = {}

    drift = endpoint_drift(cm.store, cm.layouts, endpoint, Window(start, end)).as_dict()
    for v in drift["variants"]:
        key = (v["variant"], v["model"]["version"])
        names[key] = v["model"].get("name", "")
        m = by_key.setdefault(key, {})
        m["decisions"] = float(v["rows"])
        if "features" not in v:
            continue
        m["dataset_drift"] = 1.0 if v["dataset_drift"] else 0.0
        m["drifted_share"] = _f(v["drifted_share"])
        for f in v["features"]:
            if f["status"] == "ok":
                m[f"drift:{f['feature']}"] = _f(f["statistic"])
        mv = v.get("multivariate") or {}
        if mv.get("status") == "ok":
            m["multivariate_error"] = _f(mv["error"])
            m["multivariate_drifted"] = 1.0 if mv["drifted"] else 0.0
        p = v.get("prediction")
        if p and p["status"] == "ok":
            m["prediction_drift"] = _f(p["statistic"])
            m["prediction_drifted"] = 1.0 if p["drifted"] else 0.0

    quality = quality_of(cm.store, endpoint, start, end)
    for q in quality.variants:
        key = (q.variant, q.model.version)
        names[key] = q.model.name or ""
        m = by_key.setdefault(key, {})
        m["label_coverage"] = _f(q.label_coverage)
        for k, val in q.metrics.items():
            if isinstance(val, float):
                m[f"quality:{k}"] = val
        m.update(_estimated(cm, endpoint, q, start, end))

    rows = DR.latencies(cm.store, endpoint, start, end)
    lat: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        lat.setdefault((r.variant, r.model_version), []).append(r.latency_ms)
    for key, values in lat.items():
        m = by_key.setdefault(key, {})
        arr = np.asarray(values)
        m["latency_p50_ms"] = float(np.percentile(arr, 50))
        m["latency_p99_ms"] = float(np.percentile(arr, 99))

    if error_counts is not None:
        for key, m in by_key.items():
            total, errors = error_counts(endpoint, key[0])
            m["error_rate"] = errors / total if total else None

    return [
        WindowResult(endpoint, variant, names.get((variant, version), ""), version, start, end, m)
        for (variant, version), m in by_key.items()
    ]


class Monitor:
    """Runs :func:`compute` for every endpoint on a schedule and records the results."""

    def __init__(
        self,
        cm: Context,
        *,
        interval_s: float = 300.0,
        window_us: int = 3_600_000_000,
        mirror_to_mlflow: bool = True,
        alerts: AlertSink | None = None,
        error_counts: Callable[[str, str], tuple[int, int]] | None = None,
    ) -> None:
        self.cm = cm
        self.interval_s = interval_s
        self.window_us = window_us
        self.mirror_to_mlflow = mirror_to_mlflow
        self.alerts = alerts
        self.error_counts = error_counts
        self._runs: dict[tuple[str, str, str], str] = {}
        self._worker = Worker("chronoml-monitor", self._pass, interval_s)
        self._leader: Leadership | None = None

    def run_once(self, now: int | None = None) -> list[WindowResult]:
        """Compute, store, mirror and alert on the window ending at ``now``.

        Alert rules that watch windows of other lengths get those computed too
        (evaluated, not stored: the history keeps one series per metric).
        """
        end = now_us() if now is None else now
        out: list[WindowResult] = []
        retain = self.cm.settings.retain_inputs_us
        if retain:
            try:  # before compaction: what it erases is not copied into new blocks
                erasure.erase_older(self.cm, retain, erasure.RETENTION_ACTOR, now=end)
            except Exception as exc:
                log.error("erasing inputs past their retention failed: %s", exc)
        try:
            # settled history into columnar blocks, so windows read fast
            blocks.compact(self.cm.store)
        except Exception as exc:
            log.warning("compacting the decision log failed: %s", exc)
        for endpoint in SL.endpoints(self.cm.store):
            lengths = {self.window_us}
            if self.alerts is not None and hasattr(self.alerts, "windows"):
                lengths |= set(self.alerts.windows(endpoint))
            for length in sorted(lengths):
                main = length == self.window_us
                start = end - length
                try:
                    counts = self.error_counts if main else None
                    results = compute(self.cm, endpoint, start, end, counts)
                except Exception as exc:  # one endpoint's failure must not stop the others
                    log.error("monitoring %s failed: %s", endpoint, exc)
                    continue
                if main:
                    self._store(results)
                    out.extend(results)
                for res in results:
                    if main and self.mirror_to_mlflow:
                        try:
                            self._mirror(res)
                        except Exception as exc:
                            log.warning("mirroring %s to MLflow failed: %s", endpoint, exc)
                    if self.alerts is not None:
                        try:
                            self.alerts.evaluate(endpoint, res.variant, res.metrics, start, end)
                        except Exception as exc:
                            log.error("alert rules on %s failed: %s", endpoint, exc)
        return out

    def _store(self, results: list[WindowResult]) -> None:
        created = now_us()
        rows = [
            {
                "endpoint": r.endpoint,
                "variant": r.variant,
                "model_name": r.model_name,
                "model_version": r.model_version,
                "window_start": r.start,
                "window_end": r.end,
                "metric": k,
                "value": v,
                "created_at": created,
            }
            for r in results
            for k, v in r.metrics.items()
        ]
        SM.insert_results(self.cm.store, rows)

    def _mirror(self, r: WindowResult) -> None:
        run_id = self._run_for(r)
        step = int(r.end // (self.interval_s * 1_000_000)) if self.interval_s > 0 else 0
        metrics = {_mlflow_key(k): float(v) for k, v in r.metrics.items() if v is not None}
        self.cm.registry.log_metrics(run_id, metrics, r.end // 1000, step)

    def _run_for(self, r: WindowResult) -> str:
        key = (r.endpoint, r.variant, r.model_version)
        if key in self._runs:
            return self._runs[key]
        client = self.cm.registry.client
        exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
        if exp is None:
            location = None
            if self.cm.settings.mlflow_tracking_uri is None:
                location = (self.cm.settings.artifact_root / MONITORING_EXPERIMENT).as_uri()
            exp_id = client.create_experiment(MONITORING_EXPERIMENT, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        tag = f"{r.endpoint}/{r.variant}/{r.model_version}"
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`chronoml.monitor` = '{tag}'", max_results=1
        )
        if found:
            run_id = str(found[0].info.run_id)
        else:
            run = client.create_run(
                exp_id,
                run_name=f"{r.endpoint} {r.variant} v{r.model_version}",
                tags={
                    "chronoml.monitor": tag,
                    "chronoml.endpoint": r.endpoint,
                    "chronoml.variant": r.variant,
                    "chronoml.model": r.model_name,
                    "chronoml.model_version": r.model_version,
                },
            )
            run_id = str(run.info.run_id)
        self._runs[key] = run_id
        return run_id

    def _pass(self) -> None:
        if self._leader is not None and self._leader.held():  # else another process monitors
            self.run_once()

    def start(self) -> None:
        """Run a pass every interval, in this process only while it leads (see :mod:`.leader`)."""
        if self.interval_s <= 0:
            return
        self._leader = Leadership(self.cm.store)
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()
        if self._leader is not None:
            self._leader.release()


def _mlflow_key(metric: str) -> str:
    # MLflow metric names take letters, digits, '_', '-', '.', ' ' and '/'
    return metric.replace(":", "/")


def history(
    cm: Context, endpoint: str, metric: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Stored monitoring results of ``endpoint``, newest last."""
    rows = SM.results(cm.store, endpoint, metric, limit)
    return [
        {
            "variant": r.variant,
            "model": {"name": r.model_name, "version": r.model_version},
            "window": {"from": iso(r.window_start), "to": iso(r.window_end)},
            "metric": r.metric,
            "value": r.value,
        }
        for r in reversed(rows)
    ]
