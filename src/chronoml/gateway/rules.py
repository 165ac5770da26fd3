"""Which action each route needs, and the check of a principal against it.

Every route names its action in :data:`ACTIONS` (None: public); the app refuses
to build with a route that does not. :func:`check` raises 401 without
credentials and 403 naming the role that is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from chronoml.auth import Action, Principal
from chronoml.auth.roles import PERMISSIONS

# How a route's action is checked: on the endpoint in its path; on "some
# endpoint" (the view checks the decision's or job's own endpoint); or on every
# endpoint (a grant on "*"). None: public (health, the spec, the login page).
ENDPOINT, SOME, GLOBAL = "endpoint", "some", "global"


@dataclass(frozen=True)
class Rule:
    actions: tuple[Action, ...]  # any one of them suffices
    scope: str = ENDPOINT


def _r(*actions: Action, scope: str = ENDPOINT) -> Rule:
    return Rule(tuple(actions), scope)


A = Action
ACTIONS: dict[tuple[str, str], Rule | None] = {
    ("POST", "/v1/endpoints/{endpoint}/predict"): _r(A.PREDICT),
    ("POST", "/invocations"): _r(A.PREDICT),
    ("POST", "/v2/models/{endpoint}/infer"): _r(A.PREDICT),
    ("GET", "/v2/models/{endpoint}"): _r(A.PREDICT, A.READ_STATUS),
    ("GET", "/v2/models/{endpoint}/ready"): _r(A.PREDICT, A.READ_STATUS),
    ("GET", "/ping"): None,
    ("GET", "/health"): None,
    ("GET", "/v2/health/live"): None,
    ("GET", "/v2/health/ready"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/"): None,  # a redirect to /ui/
    ("GET", "/ui/"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/ui/login"): None,
    ("POST", "/ui/login"): None,
    ("GET", "/ui/endpoints/{endpoint}"): _r(A.READ_STATUS),
    ("GET", "/ui/compare/{endpoint}"): _r(A.READ_STATUS),
    ("GET", "/ui/decisions/{id}"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/ui/audit"): _r(A.AUDIT, scope=GLOBAL),
    ("GET", "/ui/jobs"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/ui/static/{name}"): None,
    ("GET", "/metrics"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/endpoints"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/endpoints/{endpoint}"): _r(A.READ_STATUS),
    ("PUT", "/v1/endpoints/{endpoint}"): _r(A.DEPLOY),
    ("GET", "/v1/endpoints/{endpoint}/history"): _r(A.READ_STATUS),
    ("GET", "/v1/endpoints/{endpoint}/drift"): _r(A.READ_STATUS),
    ("POST", "/v1/endpoints/{endpoint}/rollback"): _r(A.DEPLOY),
    ("POST", "/v1/endpoints/{endpoint}/retire"): _r(A.DEPLOY),
    ("GET", "/v1/decisions/{id}"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/audit/verify"): _r(A.AUDIT, scope=GLOBAL),
    ("GET", "/v1/audit/reads"): _r(A.AUDIT, scope=GLOBAL),
    ("GET", "/v1/decisions/{id}/proof"): _r(A.AUDIT, scope=SOME),
    ("POST", "/v1/monitoring/run"): _r(A.ALERTS, scope=GLOBAL),
    ("GET", "/v1/endpoints/{endpoint}/monitoring"): _r(A.READ_STATUS),
    ("POST", "/v1/feedback"): _r(A.FEEDBACK, scope=SOME),
    ("GET", "/v1/endpoints/{endpoint}/quality"): _r(A.READ_STATUS),
    ("GET", "/v1/endpoints/{endpoint}/fairness"): _r(A.READ_STATUS),
    ("GET", "/v1/alerts"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/alerts/outbox"): _r(A.READ_STATUS, scope=SOME),
    ("PUT", "/v1/alerts/{name}"): _r(A.ALERTS, scope=GLOBAL),
    ("DELETE", "/v1/alerts/{name}"): _r(A.ALERTS, scope=GLOBAL),
    ("GET", "/v1/decisions/{id}/explanation"): _r(A.EXPLAIN, scope=SOME),
    ("POST", "/v1/decisions/{id}/replay"): _r(A.REPLAY, scope=SOME),
    ("POST", "/v1/endpoints/{endpoint}/replay"): _r(A.REPLAY),
    ("POST", "/v1/endpoints/{endpoint}/backtest"): _r(A.REPLAY),
    ("GET", "/v1/endpoints/{endpoint}/importance"): _r(A.READ_STATUS),
    ("GET", "/v1/endpoints/{endpoint}/experiment"): _r(A.READ_STATUS),
    ("GET", "/v1/endpoints/{endpoint}/retraining"): _r(A.READ_STATUS),
    ("PUT", "/v1/endpoints/{endpoint}/retraining"): _r(A.CONFIGURE_CODE),
    ("POST", "/v1/endpoints/{endpoint}/retrain"): _r(A.RETRAIN),
    ("POST", "/v1/endpoints/{endpoint}/jobs/{id}/approve"): _r(A.APPROVE),
    ("GET", "/v1/jobs"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/jobs/{id}"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/tokens"): _r(A.TOKENS, scope=GLOBAL),
    ("POST", "/v1/tokens"): _r(A.TOKENS, scope=GLOBAL),
    ("DELETE", "/v1/tokens/{name}"): _r(A.TOKENS, scope=GLOBAL),
    ("GET", "/v1/whoami"): None,
    ("GET", "/v1/snapshots"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/snapshots/{ref}"): _r(A.READ_STATUS, scope=SOME),
    ("GET", "/v1/endpoints/{endpoint}/privacy"): _r(A.READ_STATUS),
    ("PUT", "/v1/endpoints/{endpoint}/privacy"): _r(A.CONFIGURE_PRIVACY),
    # a subject's decisions may be on any endpoint: erasure needs a grant on all of them
    ("POST", "/v1/erasures"): _r(A.ERASE, scope=GLOBAL),
}


def check(principal: Principal, rule: Rule, endpoint: str | None) -> None:
    """Raise unless ``principal`` may take one of the rule's actions where it asks.

    A permission granted is remembered for that principal object, rule and endpoint
    (a kept principal serves every request until a lookup makes a new object)."""
    key = (id(principal), id(rule), endpoint)
    got = _allowed.get(key)  # the pair is kept alive here, so ids compared stay theirs
    if got is None or got[0] is not principal or got[1] is not rule:
        _check(principal, rule, endpoint)
        if len(_allowed) >= 4096:
            _allowed.clear()
        _allowed[key] = (principal, rule)


_allowed: dict[tuple[int, int, str | None], tuple[Principal, Rule]] = {}


def _check(principal: Principal, rule: Rule, endpoint: str | None) -> None:
    if rule.scope == SOME:
        if any(a in PERMISSIONS[g.role] for a in rule.actions for g in principal.grants):
            return
        principal.require(rule.actions[0], None)  # raises, naming the role
        return
    target = endpoint if rule.scope == ENDPOINT else None
    if any(principal.can(a, target) for a in rule.actions):
        return
    principal.require(rule.actions[0], target)
