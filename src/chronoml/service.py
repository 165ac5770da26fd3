"""The facade: one method per user operation, shared by the Python API, the CLI and the REST API.

:class:`Chronoml` is a :class:`~chronoml.context.Context` (one store, one
registry) with the operations users run. Each method is a thin call into the
feature that owns it: :mod:`chronoml.endpoints` for changes to what is live and
the questions about them, :mod:`chronoml.monitor` for drift, feedback and quality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chronoml import endpoints as E
from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.domain import reports as MR
from chronoml.domain import results as R
from chronoml.domain.canary import Breach, Guardrails
from chronoml.errors import NotFound, Refused
from chronoml.monitor import feedback as fb
from chronoml.monitor.estimated import estimated_quality as _estimated
from chronoml.monitor.fairness import fairness as _fairness
from chronoml.monitor.quality import quality as _quality
from chronoml.monitor.reports import endpoint_drift
from chronoml.monitor.slices import DEFAULT_BINS
from chronoml.privacy import erasure, policies
from chronoml.store import ledger as SL
from chronoml.window import Window

__all__ = ["Chronoml", "NotFound", "Refused"]


class Chronoml(Context):
    """chronoml over one store and one MLflow registry.

    >>> cm = Chronoml.open()                       # CHRONOML_HOME / CHRONOML_STORE
    >>> cm.deploy("churn", "models:/churn/3")      # doctest: +SKIP
    """

    # --- changes -----------------------------------------------------------

    def deploy(
        self,
        endpoint: str,
        model_uri: str,
        *,
        weight: float | None = None,
        shadow: bool = False,
        variant: str | None = None,
        allow_unlinked_data: bool = False,
        actor: str | None = None,
        check_loads: bool = True,
        canary: Guardrails | None = None,
        extra: Mapping[str, Any] | None = None,
        probe_first: bool = False,
    ) -> L.LedgerEvent:
        """Resolve ``model_uri`` to a version and record its deploy (see :func:`endpoints.deploy`).

        ``probe_first`` loads the model in a forked child before this process
        loads it: a server does, so a model that crashes on load cannot take it down.
        """
        return E.deploy(
            self,
            endpoint,
            model_uri,
            weight=weight,
            shadow=shadow,
            variant=variant,
            allow_unlinked_data=allow_unlinked_data,
            actor=actor,
            check_loads=check_loads,
            canary=canary,
            extra=extra,
            probe_first=probe_first,
        )

    def set_weights(
        self, endpoint: str, weights: dict[str, float], actor: str | None = None
    ) -> L.LedgerEvent:
        """Change the split of the live variants (percentages adding up to 100)."""
        return E.set_weights(self, endpoint, weights, actor)

    def rollback(
        self, endpoint: str, reason: str | None = None, actor: str | None = None
    ) -> L.LedgerEvent:
        """Return the endpoint to the configuration before its latest change."""
        return E.rollback(self, endpoint, reason, actor)

    def rollback_canary(
        self, endpoint: str, canary_seq: int, breach: Breach, actor: str
    ) -> L.LedgerEvent:
        """Roll back the canary of event ``canary_seq`` for ``breach``, if still the latest change."""
        return E.rollback_canary(self, endpoint, canary_seq, breach, actor)

    def retire(self, endpoint: str, actor: str | None = None) -> L.LedgerEvent:
        """Take every variant offline; the history stays."""
        return E.retire(self, endpoint, actor)

    # --- questions ---------------------------------------------------------

    def status(self, endpoint: str, at: int | None = None) -> R.Status:
        """What was live on ``endpoint`` at ``at`` (default now), with lineage."""
        return E.status(self, endpoint, at)

    def history(self, endpoint: str) -> R.History:
        """The ledger timeline of ``endpoint``."""
        return E.history(self, endpoint)

    def endpoints(self) -> list[R.EndpointNow]:
        """Every endpoint with what is live on it now."""
        return E.endpoints(self)

    def decision(self, decision_id: str) -> R.DecisionRecord:
        """A logged decision with its full lineage."""
        return E.decision(self, decision_id)

    def verify(self) -> L.ChainReport:
        """Recompute the ledger's hash chain; the report names the first bad event."""
        return SL.verify(self.store)

    # --- monitoring --------------------------------------------------------

    def drift(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_us: int = 3_600_000_000,
        variant: str | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        by: str | None = None,
        bins: int = DEFAULT_BINS,
    ) -> MR.EndpointDrift:
        """Drift of ``endpoint``'s decisions in ``[start, end)`` (default: the last hour).

        ``overrides`` maps a feature (or ``prediction``) to its own
        ``{"method": "psi" | "ks" | ..., "threshold": x}``; ``by`` (a model input or a
        context attribute) adds the report per slice, numeric values in ``bins``
        quantile bins.
        """
        E.known(self, endpoint)
        policies.check_slice(self, endpoint, by)
        w = Window.bounded(start, end, window_us)
        return endpoint_drift(
            self.store,
            self.layouts,
            endpoint,
            w,
            variant=variant,
            overrides=overrides,
            by=by,
            bins=bins,
        )

    def feedback(
        self,
        labels: Sequence[tuple[str, Any, int | None] | fb.Label],
        *,
        update: bool = False,
        actor: str | None = None,
    ) -> R.FeedbackResult:
        """Attach late labels ``(decision_id, label, observed_at)`` (or :class:`fb.Label`
        items, which may carry context), all or nothing."""
        items = [it if isinstance(it, fb.Label) else fb.Label(*it) for it in labels]
        items = policies.apply_to_labels(self, items)  # context kept as the policy says
        counts = fb.record(self.store, items, actor=self.actor(actor), update=update)
        return R.FeedbackResult(counts["labelled"], counts["updated"], counts.get("context"))

    def quality(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_us: int = 3_600_000_000,
        variant: str | None = None,
        by: str | None = None,
        bins: int = DEFAULT_BINS,
    ) -> MR.QualityReport:
        """Label coverage and quality metrics per variant and version over a window
        (and per slice of ``by``, a model input or a context attribute, numeric values in
        ``bins`` quantile bins)."""
        E.known(self, endpoint)
        policies.check_slice(self, endpoint, by)
        w = Window.bounded(start, end, window_us)
        return _quality(self.store, endpoint, w.start, w.end, variant=variant, by=by, bins=bins)

    def fairness(
        self,
        endpoint: str,
        attribute: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_us: int = 3_600_000_000,
        version: str | None = None,
        variant: str | None = None,
        positive_class: Any = None,
    ) -> MR.FairnessReport:
        """Group metrics and disparities of one version over a context attribute."""
        E.known(self, endpoint)
        policies.check_slice(self, endpoint, attribute)
        w = Window.bounded(start, end, window_us)
        return _fairness(
            self.store,
            endpoint,
            attribute,
            w.start,
            w.end,
            version=version,
            variant=variant,
            positive_class=positive_class,
        )

    def estimated_quality(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_us: int = 3_600_000_000,
        variant: str | None = None,
        reference_start: int | None = None,
        reference_end: int | None = None,
    ) -> MR.EstimatedQuality:
        """Quality estimated from the logged scores (CBPE), beside realized quality."""
        E.known(self, endpoint)
        w = Window.bounded(start, end, window_us)
        return _estimated(
            self.store,
            endpoint,
            w.start,
            w.end,
            variant=variant,
            reference_start=reference_start,
            reference_end=reference_end,
        )

    # --- privacy -----------------------------------------------------------

    def privacy(self, endpoint: str) -> R.PrivacyPolicy:
        """The endpoint's privacy policy (features and context kept, hashed or dropped)."""
        return policies.show(self, endpoint)

    def set_privacy(
        self,
        endpoint: str,
        *,
        features: Mapping[str, str] | None = None,
        context: Mapping[str, str] | None = None,
        unit_key: str | None = None,
        actor: str | None = None,
    ) -> R.PrivacyPolicy:
        """Set privacy rules (``keep``, ``hash``, ``drop``) on top of the endpoint's policy."""
        return policies.set_policy(
            self, endpoint, features=features, context=context, unit_key=unit_key, actor=actor
        )

    def erase(self, unit: str, actor: str | None = None) -> R.Erasure:
        """Erase every stored input and context of unit key ``unit``; proofs stay valid."""
        return erasure.erase_unit(self, unit, actor)

    def enforce_retention(self, retain_us: int, actor: str | None = None) -> R.Retention:
        """Erase the inputs of decisions older than ``retain_us`` microseconds."""
        return erasure.erase_older(self, retain_us, actor)
