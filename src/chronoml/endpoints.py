"""What is live on each endpoint: the changes recorded on the ledger, and the questions about them.

Each change resolves what it names (a model URI to a version, a weight to
basis points), checks it, and appends one ledger event; each question is a
pure function of the events. The facade (:class:`chronoml.service.Chronoml`)
and the features that change endpoints (retraining, canaries) both call these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from chronoml.context import Context
from chronoml.domain import codec
from chronoml.domain import ledger as L
from chronoml.domain import results as R
from chronoml.domain.canary import Breach, Guardrails
from chronoml.errors import NotFound, Refused
from chronoml.monitor import feedback as fb
from chronoml.monitor.cards import card_at_deploy
from chronoml.monitor.reports import ensure_profile
from chronoml.privacy import erasure
from chronoml.registry import RegistryError
from chronoml.registry.models import load_model
from chronoml.registry.probe import check_format, probe
from chronoml.store import decisions as D
from chronoml.store import explanations as stored_explanations
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.timeutil import now_us

_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def event_dict(e: L.LedgerEvent) -> dict[str, Any]:
    """A ledger event in the JSON form answers cite it in."""
    return R.EventRef.of(e).as_dict()


# --- changes -----------------------------------------------------------


def deploy(
    ctx: Context,
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
    """Resolve ``model_uri`` to a version and record its deploy on the ledger.

    With ``canary`` (and a ``weight``), the version joins as a canary:
    gateways roll it back when it breaches those guardrails. ``extra``
    fields are recorded in the event's payload (a retraining job's id and
    evidence: ``{"job": {...}}``). The version's model card is built and stored
    as MLflow artifacts of its run first; the event's ``model_card`` says where,
    or why it could not be (which does not stop the deploy).
    """
    _check_endpoint(endpoint)
    if canary is not None and (weight is None or shadow):
        raise Refused("a canary needs its share of traffic: give --canary PERCENT", "canary")
    if shadow and weight is not None:
        raise Refused(
            "a shadow variant takes no weight: give --shadow or --weight, not both", "weight"
        )
    weight_bp = None
    if weight is not None:
        try:
            weight_bp = L.percent_to_bp(float(weight))
        except L.LedgerError as exc:
            raise Refused(str(exc), "weight") from None
    try:
        resolved = ctx.registry.resolve(model_uri)
    except RegistryError as exc:
        raise NotFound(str(exc)) from None
    ref = resolved.ref
    if not resolved.linked and not allow_unlinked_data:
        raise Refused(
            f"{ref.name} v{ref.version} (run {ref.run_id}) is not linked to a data snapshot. "
            "Link it when training: snap = chronoml.snapshot(df, name=...); "
            "chronoml.log_snapshot(snap) inside the mlflow run that registers the model. "
            "Or deploy anyway with --allow-unlinked-data (the ledger will say so).",
            "model_uri",
        )
    profile_note: str | None = None
    check_format(resolved.archive, ctx.settings.model_formats)
    if check_loads:
        if probe_first:
            probe(ref, resolved.archive)
        try:
            loaded = load_model(ref, resolved.archive)
        except Exception as exc:
            raise Refused(
                f"{model_uri} does not load as an MLflow model: {exc}", "model_uri"
            ) from None
        profile_note = ensure_profile(ctx.store, loaded)
    name = variant or f"{ref.name}-v{ref.version}"
    _check_endpoint(name, what="variant")
    v = L.Variant(name=name, model=ref, weight=0, shadow=shadow)
    payload = {
        "variant": v.to_dict(),
        "weight_bp": weight_bp,
        "model_uri": model_uri,
        "allow_unlinked_data": (not resolved.linked),
    }
    if profile_note is not None:
        payload["reference_profile"] = f"none: {profile_note}"
    if canary is not None:
        payload["canary"] = canary.to_dict()
    for k, val in (extra or {}).items():
        payload.setdefault(k, val)
    # the card is written as the version goes live, and the event says where (or why not)
    payload["model_card"] = card_at_deploy(ctx, endpoint, ref, now_us())
    return _append(ctx, L.Change("deploy", endpoint, ctx.actor(actor), payload))


def set_weights(
    ctx: Context, endpoint: str, weights: dict[str, float], actor: str | None = None
) -> L.LedgerEvent:
    """Change the split of the live variants (percentages adding up to 100)."""
    known(ctx, endpoint)
    try:
        bp = {k: L.percent_to_bp(float(w), f"weight of {k}") for k, w in weights.items()}
    except (TypeError, ValueError) as exc:
        raise Refused(str(exc), "weights") from None
    return _append(ctx, L.Change("set_weights", endpoint, ctx.actor(actor), {"weights_bp": bp}))


def rollback(
    ctx: Context, endpoint: str, reason: str | None = None, actor: str | None = None
) -> L.LedgerEvent:
    """Return the endpoint to the configuration before its latest change."""
    known(ctx, endpoint)
    payload = {"reason": reason} if reason else {}
    return _append(ctx, L.Change("rollback", endpoint, ctx.actor(actor), payload))


def rollback_canary(
    ctx: Context, endpoint: str, canary_seq: int, breach: Breach, actor: str
) -> L.LedgerEvent:
    """Roll back the canary of event ``canary_seq`` for ``breach``, if still the latest change.

    Refused (nothing recorded) when another change, or another gateway's
    rollback, came first.
    """
    payload = {"reason": breach.reason, "canary_seq": canary_seq, "guardrail": breach.to_dict()}
    return _append(ctx, L.Change("rollback", endpoint, actor, payload))


def retire(ctx: Context, endpoint: str, actor: str | None = None) -> L.LedgerEvent:
    """Take every variant offline; the history stays."""
    known(ctx, endpoint)
    return _append(ctx, L.Change("retire", endpoint, ctx.actor(actor), {}))


def _append(ctx: Context, change: L.Change) -> L.LedgerEvent:
    try:
        return SL.append(ctx.store, change)
    except L.LedgerError as exc:
        raise Refused(str(exc)) from None


def known(ctx: Context, endpoint: str) -> None:
    if not SL.exists(ctx.store, endpoint):
        raise NotFound(f"unknown endpoint {endpoint!r}")


# --- questions ---------------------------------------------------------


def status(ctx: Context, endpoint: str, at: int | None = None) -> R.Status:
    """What was live on ``endpoint`` at ``at`` (default now), with lineage."""
    known(ctx, endpoint)
    t = now_us() if at is None else at
    ev = SL.state_event_at(ctx.store, endpoint, t)
    state = L.state_of(ev, endpoint)
    return R.Status(
        endpoint=endpoint,
        at=t,
        variants=tuple(R.LiveVariant.of(v) for v in state.variants),
        event=R.EventRef.of(ev) if ev is not None else None,
    )


def history(ctx: Context, endpoint: str) -> R.History:
    known(ctx, endpoint)
    events = SL.history(ctx.store, endpoint)
    return R.History(endpoint, tuple(R.HistoryEntry.of(e) for e in events))


def endpoints(ctx: Context) -> list[R.EndpointNow]:
    out = []
    t = now_us()
    for name in SL.endpoints(ctx.store):
        state = SL.state_at(ctx.store, name, t)
        out.append(R.EndpointNow(name, tuple(R.LiveVariant.of(v) for v in state.variants)))
    return out


def decision(ctx: Context, decision_id: str) -> R.DecisionRecord:
    """A logged decision with its full lineage."""

    # One connection for the whole lineage; each read is one index seek on
    # rows that never change, and ledger events come from the store's cache.
    with ctx.store.lookup() as conn:
        row = D.get_in(conn, decision_id)
        if row is None:
            raise NotFound(f"unknown decision {decision_id!r}")
        state_event = SL.cached_event(ctx.store, conn, row.event_seq)
        variant = None
        if state_event is not None and state_event.state is not None:
            variant = next((v for v in state_event.state if v.name == row.variant), None)
        deploy_event = (
            SL.cached_event(ctx.store, conn, variant.since) if variant and variant.since else None
        )
        labels = fb.history_in(conn, row.id)
        explanation = stored_explanations.get_in(conn, row.id)
        erased = (
            erasure.erased_note(ctx, conn, row.endpoint, row.unit, row.ts)
            if SP.is_erased_in(conn, row.id)
            else None
        )
    sch = ctx.layouts.get(row.layout)
    return R.DecisionRecord(
        id=row.id,
        ts=row.ts,
        endpoint=row.endpoint,
        variant=row.variant,
        shadow=row.shadow,
        unit=row.unit,
        inputs=codec.decode(sch, row.num, row.txt) if erased is None else None,
        output=orjson.loads(row.output),
        latency_ms=row.latency_ms,
        served_by=R.LiveVariant.of(variant) if variant is not None else None,
        event=R.EventRef.of(deploy_event) if deploy_event else None,
        routed_by_event=R.EventRef.of(state_event) if state_event else None,
        labels=tuple(labels),
        explanation=explanation,
        # the commitment, output and lineage stay; the inputs and context are gone
        inputs_erased=erased,
    )


def _check_endpoint(name: str, what: str = "endpoint") -> None:
    if not _ENDPOINT.match(name or ""):
        raise Refused(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)",
            what,
        )
