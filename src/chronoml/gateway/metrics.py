"""Prometheus metrics of one server process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chronoml import digests

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Outcomes(Protocol):
    def count(self, endpoint: str, variant: str, status: int) -> None: ...

    def latency(self, endpoint: str, variant: str, seconds: float) -> None: ...


class Metrics:
    """Requests, errors and latency per endpoint, variant and version; log writes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._window_counts: dict[tuple[str, str], list[int]] = {}
        labels = ("endpoint", "variant", "version")
        self.requests = Counter(
            "chronoml_requests", "Prediction requests", (*labels, "status"), registry=self.registry
        )
        self.latency = Histogram(
            "chronoml_request_seconds",
            "Prediction latency, including the durable log write",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_rows = Histogram(
            "chronoml_log_commit_rows",
            "Decisions written per log commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "chronoml_log_commit_seconds",
            "Time to commit one group of decisions",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "chronoml_batch_rows",
            "Rows per predict call (micro-batches)",
            ("endpoint", "variant"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "chronoml_batch_requests",
            "Requests coalesced into one predict call",
            ("endpoint", "variant"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "chronoml_shadow_dropped",
            "Shadow copies dropped because the shadow variant's queue was full",
            ("endpoint", "variant"),
            registry=self.registry,
        )
        self.canary_rollbacks = Counter(
            "chronoml_canary_rollbacks",
            "Canaries this process rolled back, by the guardrail they breached",
            ("endpoint", "guardrail"),
            registry=self.registry,
        )
        self.http_errors = Counter(
            "chronoml_http_errors",
            "Responses with a 4xx or 5xx status on any route (refused, bad input, not found, ...)",
            ("status",),
            registry=self.registry,
        )
        self._errored: dict[int, Any] = {}
        self.archive_paused = Gauge(
            "chronoml_archive_paused",
            "1 while archiving is paused (the object store failed; it retries with backoff)",
            registry=self.registry,
        )
        self.archive_failures = Gauge(
            "chronoml_archive_failures",
            "Consecutive failed archive passes",
            registry=self.registry,
        )
        self.archive_decisions = Gauge(
            "chronoml_archive_decisions",
            "Decisions this process moved to archive files",
            registry=self.registry,
        )
        self.archive_last_success = Gauge(
            "chronoml_archive_last_success_timestamp_seconds",
            "When an archive pass last succeeded",
            registry=self.registry,
        )
        self.model_call = Gauge(
            "chronoml_model_call",
            "1 for the call each live model answers a float matrix with: its booster or trees "
            "below its per-call checks (after a load probe showed identical outputs), "
            "'matrix' or its own call",
            ("endpoint", "variant", "version", "call"),
            registry=self.registry,
        )
        self.compiled_hasher = Gauge(
            "chronoml_compiled_hasher",
            "1 when the evidence log hashes many rows in one call to chronoml._digests, "
            "0 when through hashlib (the same bytes, slower: the module was not built)",
            registry=self.registry,
        )
        self.compiled_hasher.set(1 if digests.ACCELERATED else 0)
        # who else wants each request's outcome (the canary guardrails)
        self.listener: Outcomes | None = None
        # labelled children by their labels: labels() takes a lock and checks
        # its arguments on every call, this is one dict lookup
        self._counted: dict[tuple[str, str, str, int], Any] = {}
        self._timed: dict[tuple[str, str, str], Any] = {}
        self._batched: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.queue_depth = Gauge(
            "chronoml_log_queue_depth",
            "Requests waiting for their decisions to commit",
            registry=self.registry,
        )

    def count(self, endpoint: str, variant: str, version: str, status: int) -> None:
        key = (endpoint, variant, version, status)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.requests.labels(
                endpoint, variant, version, str(status)
            )
        child.inc()
        tally = self._window_counts.setdefault((endpoint, variant), [0, 0])
        tally[0] += 1
        if status >= 500:
            tally[1] += 1
        if self.listener is not None:
            self.listener.count(endpoint, variant, status)

    def http_error(self, status: int) -> None:
        """Count one response of ``status`` (400 and up)."""
        child = self._errored.get(status)
        if child is None:
            child = self._errored[status] = self.http_errors.labels(str(status))
        child.inc()

    def totals(self) -> dict[str, tuple[int, int]]:
        """Requests and 5xx answers per endpoint since this process started (for the web UI)."""
        out: dict[str, tuple[int, int]] = {}
        for (endpoint, _, _, status), child in list(self._counted.items()):
            n = int(child._value.get())
            total, errors = out.get(endpoint, (0, 0))
            out[endpoint] = (total + n, errors + (n if status >= 500 else 0))
        return out

    def take_counts(self, endpoint: str, variant: str) -> tuple[int, int]:
        """Requests and server errors of a variant since the last call (for monitoring windows)."""
        total, errors = self._window_counts.pop((endpoint, variant), [0, 0])
        return total, errors

    def observe_latency(self, endpoint: str, variant: str, version: str, seconds: float) -> None:
        key = (endpoint, variant, version)
        child = self._timed.get(key)
        if child is None:
            child = self._timed[key] = self.latency.labels(endpoint, variant, version)
        child.observe(seconds)
        if self.listener is not None:
            self.listener.latency(endpoint, variant, seconds)

    def observe_rollback(self, endpoint: str, guardrail: str) -> None:
        self.canary_rollbacks.labels(endpoint, guardrail).inc()

    def observe_batch(self, endpoint: str, variant: str, requests: int, rows: int) -> None:
        key = (endpoint, variant)
        children = self._batched.get(key)
        if children is None:
            children = self._batched[key] = (
                self.batch_requests.labels(endpoint, variant),
                self.batch_rows.labels(endpoint, variant),
            )
        children[0].observe(requests)
        children[1].observe(rows)

    def observe_commit(self, rows: int, seconds: float) -> None:
        self.commit_rows.observe(rows)
        self.commit_seconds.observe(seconds)

    def observe_archive(self, p: Any) -> None:
        """The background archiver's state after a pass (a ``chronoml.archive.runner.Progress``)."""
        self.archive_paused.set(1 if p.paused else 0)
        self.archive_failures.set(p.failures)
        self.archive_decisions.set(p.archived)
        if p.last_success_at is not None:
            self.archive_last_success.set(p.last_success_at / 1e6)

    def observe_calls(self, calls: Iterable[tuple[str, str, str, str]]) -> None:
        """The live models' calls, as ``(endpoint, variant, version, call)``."""
        self.model_call.clear()
        for labels in calls:
            self.model_call.labels(*labels).set(1)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
