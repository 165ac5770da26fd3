"""Setting and showing an endpoint's privacy policy.

A change is checked (the endpoint exists, each feature is an input of a live
model, each mode is known), then stored with a ``privacy`` ledger event that
names who set it, in one transaction. Servers read the policies again whenever
the ledger moves, so a change reaches every gateway within the ledger's poll.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.domain import privacy as DP
from chronoml.domain import results as R
from chronoml.domain.feedback import Label
from chronoml.errors import InvalidInput, NotFound, Refused
from chronoml.privacy import secret
from chronoml.store import decision_reads as DR
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.timeutil import now_us


def _known(ctx: Context, endpoint: str) -> None:
    if not SL.exists(ctx.store, endpoint):
        raise NotFound(f"unknown endpoint {endpoint!r}", "endpoint")


def input_columns(ctx: Context, endpoint: str) -> set[str] | None:
    """The input columns of the endpoint's live models; None when none has a signature."""
    state = SL.state_at(ctx.store, endpoint, now_us())
    found: set[str] | None = None
    for v in state.variants:
        cols = ctx.registry.input_columns(v.model)
        if cols is not None:
            found = (found or set()) | set(cols)
    return found


def show(ctx: Context, endpoint: str) -> R.PrivacyPolicy:
    """The endpoint's policy (everything kept when none was set)."""
    _known(ctx, endpoint)
    got = SP.get(ctx.store, endpoint)
    if got is None:
        return R.PrivacyPolicy(endpoint, DP.Policy())
    return _typed(got)


def _typed(p: SP.StoredPolicy) -> R.PrivacyPolicy:
    return R.PrivacyPolicy(p.endpoint, p.policy, p.event_seq, p.updated_at, p.actor)


def set_policy(
    ctx: Context,
    endpoint: str,
    *,
    features: Mapping[str, str] | None = None,
    context: Mapping[str, str] | None = None,
    unit_key: str | None = None,
    actor: str | None = None,
) -> R.PrivacyPolicy:
    """Set rules on top of the endpoint's policy (``keep`` removes a rule); returns it."""
    _known(ctx, endpoint)
    features, context = dict(features or {}), dict(context or {})
    for name, mode in features.items():
        DP.check_mode(mode, "feature", name)
    for name, mode in context.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput("a context attribute needs a name", "context")
        DP.check_mode(mode, "context", name)
    if unit_key is not None:
        DP.check_unit_mode(unit_key)
    if features:
        columns = input_columns(ctx, endpoint)
        unknown = sorted(f for f in features if columns is not None and f not in columns)
        if unknown:
            raise InvalidInput(
                f"unknown feature {unknown[0]!r}: not an input of {endpoint}'s live models "
                '(for context attributes use --context / "context")',
                "feature",
            )
    if any(m == "hash" for m in (*features.values(), *context.values())) or unit_key == "hash":
        secret.load(ctx.settings.privacy_key_path)  # created now, not on the first request
    old = SP.get(ctx.store, endpoint)
    policy = (old.policy if old is not None else DP.Policy()).merged(features, context, unit_key)
    change = L.Change("privacy", endpoint, ctx.actor(actor), {"policy": policy.to_dict()})
    _ev, stored = SP.put(ctx.store, change, policy)
    return _typed(stored)


def policy_of(ctx: Context, endpoint: str) -> DP.Policy | None:
    """The endpoint's policy if it hashes or drops anything, else None."""
    got = SP.get(ctx.store, endpoint)
    return got.policy if got is not None and not got.policy.plain else None


def apply_to_labels(ctx: Context, items: list[Label]) -> list[Label]:
    """Context sent later (with feedback) under its decision's endpoint policy."""
    with_context = [it for it in items if it.context]
    if not with_context:
        return items
    stored = {e: p for e, p in SP.all_policies(ctx.store).items() if p.policy.context}
    if not stored:
        return items
    endpoints = DR.endpoints_of(ctx.store, [it.decision_id for it in with_context])
    plans: dict[str, DP.StoragePlan] = {}
    out = []
    for it in items:
        p = stored.get(endpoints.get(it.decision_id, ""))
        if not it.context or p is None:
            out.append(it)
            continue
        plan = plans.get(p.endpoint)
        if plan is None:
            key = secret.load(ctx.settings.privacy_key_path)
            plan = plans[p.endpoint] = DP.context_plan(p.policy, key)
        out.append(replace(it, context=plan.context_dict(it.context)))
    return out


def check_slice(ctx: Context, endpoint: str, attribute: str | None) -> None:
    """Refuse, naming it, a context attribute or model input the endpoint's policy drops:
    it was never kept."""
    if attribute is None:
        return
    got = SP.get(ctx.store, endpoint)
    if got is None:
        return
    for what, rules in (
        ("context attribute", got.policy.context),
        ("model input", got.policy.features),
    ):
        if rules.get(attribute) == "drop":
            raise Refused(
                f"{what} {attribute!r} is dropped by {endpoint}'s privacy policy: "
                "no decision keeps it",
                "by",
            )
