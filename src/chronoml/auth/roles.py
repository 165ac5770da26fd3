"""Roles, the actions they permit, and the principal every request or command acts as.

A principal holds grants: a role limited to the endpoints whose names match a
glob (``fnmatch`` rules, case-sensitive). ``Principal.can(action, endpoint)``
is true when one grant's role permits the action and its glob matches the
endpoint. Actions that concern no single endpoint (tokens, the access log as
a whole) pass ``endpoint=None``: only a grant on every endpoint (``*``)
permits those, so a role limited to ``fraud-*`` can never act beyond it.
"""

from __future__ import annotations

import functools
import getpass
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase

from chronoml.auth.errors import Forbidden, InvalidSetting, Unauthenticated


class Action(StrEnum):
    """What a caller may ask for. Routes and commands name one action each."""

    READ_STATUS = "read_status"  # status, history, drift, quality, metrics, dashboard
    READ_INPUTS = "read_inputs"  # a decision's raw inputs and unit key
    EXPLAIN = "explain"  # explanations of decisions (they reveal the inputs)
    REPLAY = "replay"  # re-run logged decisions through a model
    AUDIT = "audit"  # audit reports, their exports, the access log
    PREDICT = "predict"
    DEPLOY = "deploy"  # deploy, weights, rollback, retire
    ALERTS = "alerts"  # alert rules and their deliveries
    FEEDBACK = "feedback"  # labels for logged decisions
    RETRAIN = "retrain"  # start a job with the configured entrypoint
    APPROVE = "approve"  # approve or reject a challenger
    CONFIGURE_CODE = "configure_code"  # retraining entrypoints, data sources: runs code
    READ_DELIVERY_ERRORS = "read_delivery_errors"  # outbound errors reveal the network
    TOKENS = "tokens"  # create, list and revoke tokens
    CONFIGURE_PRIVACY = "configure_privacy"  # which inputs are kept, hashed or dropped
    ERASE = "erase"  # erase a subject's inputs (and run retention)


class Role(StrEnum):
    """The roles, from least to most powerful."""

    VIEWER = "viewer"
    AUDITOR = "auditor"
    PREDICTOR = "predictor"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


_VIEWER = frozenset({Action.READ_STATUS})
# Each role's actions. Operators and approvers see status (they cannot act
# sensibly blind) but not raw inputs; predictors only predict.
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: _VIEWER,
    Role.AUDITOR: _VIEWER
    | {Action.READ_INPUTS, Action.EXPLAIN, Action.REPLAY, Action.AUDIT, Action.ERASE},
    Role.PREDICTOR: frozenset({Action.PREDICT}),
    Role.OPERATOR: _VIEWER | {Action.DEPLOY, Action.ALERTS, Action.FEEDBACK, Action.RETRAIN},
    Role.APPROVER: _VIEWER | {Action.APPROVE},
    Role.ADMIN: frozenset(Action),
}


def roles_for(action: Action) -> list[Role]:
    """The roles that permit ``action``, least powerful first."""
    return [role for role in Role if action in PERMISSIONS[role]]


class Kind(StrEnum):
    """How a principal proved who it is."""

    TOKEN = "token"  # a chronoml API token
    OIDC = "oidc"  # a JWT from the configured OpenID Connect provider
    OS = "os"  # the operating-system user of a CLI that opened the store itself
    ANONYMOUS = "anonymous"  # no credentials (only predict, with --open-predict)


_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!/:-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Grant:
    """One role on the endpoints whose names match ``endpoints`` (an fnmatch glob)."""

    role: Role
    endpoints: str = "*"

    def __post_init__(self) -> None:
        if not _GLOB.match(self.endpoints):
            raise InvalidSetting(
                f"not an endpoint glob: {self.endpoints!r} (use names, * and ?; e.g. fraud-*)",
                field="endpoint",
            )

    def permits(self, action: Action, endpoint: str | None) -> bool:
        """Whether this grant allows ``action`` on ``endpoint`` (None: on no single endpoint)."""
        if action not in PERMISSIONS[self.role]:
            return False
        if self.endpoints == "*":
            return True
        if endpoint is None:
            return False
        return _matches(endpoint, self.endpoints)

    def __str__(self) -> str:
        return self.role.value if self.endpoints == "*" else f"{self.role}:{self.endpoints}"


@functools.lru_cache(maxsize=4096)
def _matches(endpoint: str, glob: str) -> bool:
    return fnmatchcase(endpoint, glob)


def parse_role(text: str, field: str = "role") -> Role:
    """A role from its name; an ``InvalidSetting`` naming the choices otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidSetting(f"unknown role {text!r} (one of {choices})", field=field) from None


def parse_grant(text: str, field: str = "role") -> Grant:
    """``"operator"`` or ``"operator:fraud-*"`` to a ``Grant``."""
    role, sep, glob = text.strip().partition(":")
    return Grant(parse_role(role, field), glob if sep else "*")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: the identity the ledger, jobs, approvals and the access log record.

    ``name`` is unique within its ``kind`` (a token's name, a JWT's subject,
    ``user@host`` for the OS); ``client`` is the caller's address when known.
    """

    name: str
    kind: Kind
    grants: tuple[Grant, ...] = ()
    client: str | None = None
    claims: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def actor(self) -> str:
        """The identity to record: ``token:ci``, ``oidc:alice``, ``os:alice@host``, ``anonymous``."""
        return "anonymous" if self.kind is Kind.ANONYMOUS else f"{self.kind}:{self.name}"

    def can(self, action: Action, endpoint: str | None = None) -> bool:
        """Whether one of the grants permits ``action`` on ``endpoint``."""
        return any(g.permits(action, endpoint) for g in self.grants)

    def require(self, action: Action, endpoint: str | None = None) -> None:
        """Return if allowed; raise ``Unauthenticated`` (no credentials) or ``Forbidden``."""
        if self.can(action, endpoint):
            return
        needed = roles_for(action)
        names = " or ".join(r.value for r in needed)
        where = "every endpoint" if endpoint is None else f"endpoint {endpoint!r}"
        if self.kind is Kind.ANONYMOUS:
            raise Unauthenticated(
                f"{action} needs credentials: send 'Authorization: Bearer <token>' "
                f"for a principal with role {names} on {where}"
            )
        held = ", ".join(str(g) for g in self.grants) or "no roles"
        raise Forbidden(
            f"{action} on {where} needs role {names}; {self.actor} has {held}",
            role=needed[0].value,
        )

    def visible(self, action: Action, endpoints: Iterable[str]) -> list[str]:
        """The endpoints among ``endpoints`` on which ``action`` is allowed (for listings)."""
        return [e for e in endpoints if self.can(action, e)]

    def require_not_starter(self, started_by: str) -> None:
        """Refuse approving a challenger whose job this same principal started."""
        if started_by == self.actor:
            raise Forbidden(
                f"{self.actor} started this job and so cannot approve or reject its "
                "challenger: another principal with role approver must",
                role=Role.APPROVER.value,
            )

    def to_dict(self) -> dict[str, object]:
        """The principal as JSON (no claims: they may hold personal data)."""
        return {
            "actor": self.actor,
            "name": self.name,
            "kind": self.kind.value,
            "roles": [str(g) for g in self.grants],
            "client": self.client,
        }

    @classmethod
    def anonymous(cls, client: str | None = None, *, open_predict: bool = False) -> Principal:
        """A caller without credentials: it may predict only when predict is open."""
        grants = (Grant(Role.PREDICTOR),) if open_predict else ()
        return cls("anonymous", Kind.ANONYMOUS, grants, client)

    @classmethod
    def os_user(cls, database_role: str | None = None) -> Principal:
        """The operating-system user of a CLI that opened the store directly.

        Whoever can open the store's database can change anything in it, so
        this principal is an admin; what it adds is a true name on the ledger
        (``user@host``, plus the database role on PostgreSQL).
        """
        name = f"{getpass.getuser()}@{socket.gethostname()}"
        if database_role:
            name = f"{name} (db {database_role})"
        return cls(name, Kind.OS, (Grant(Role.ADMIN),))
