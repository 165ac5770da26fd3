"""Alert rules and when they fire: pure, plain data in and out.

A rule watches one monitored metric of an endpoint's windows (per variant)
and compares it with a threshold. A subject (an endpoint and variant) is
either firing or not; :func:`transition` says what one new observation does
to it. Storage, delivery and the ledger live in :mod:`chronoml.monitor.alerts`.

Times are integers of microseconds since the epoch, as everywhere else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chronoml.errors import InvalidInput
from chronoml.timeutil import iso

OPS = (">", ">=", "<", "<=", "==")

# Metrics the monitor computes for every window, and the families with a
# parameter after the colon.
METRICS = (
    "dataset_drift",
    "drifted_share",
    "prediction_drift",
    "prediction_drifted",
    "multivariate_error",
    "multivariate_drifted",
    "latency_p99_ms",
    "latency_p50_ms",
    "error_rate",
    "label_coverage",
    "decisions",
)
QUALITY_METRICS = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2",
)  # fmt: skip
# quality estimated from the logged scores before labels arrive (CBPE)
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
ACTION_TYPES = ("webhook", "log", "ledger", "retrain")

NO_RETRAINING = "no retraining configured"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RULE_FIELDS = frozenset(
    {"name", "endpoint", "metric", "op", "threshold", "window", "cooldown", "actions"}
)
_ACTION_FIELDS = {
    "webhook": frozenset({"type", "url", "secret"}),
    "log": frozenset({"type"}),
    "ledger": frozenset({"type"}),
    "retrain": frozenset({"type", "job"}),
}
_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


class RuleError(InvalidInput):
    """A rule spec that cannot be accepted; ``field`` names the offending field."""


@dataclass(frozen=True)
class Action:
    """What to do when a rule fires or resolves.

    ``webhook``: POST the alert as JSON to ``url``, signed with ``secret``
    when one is given; ``log``: a log line; ``ledger``: an event on the
    ledger; ``retrain``: start retraining ``job`` (on firing only).
    """

    type: str
    url: str | None = None
    secret: str | None = None
    job: str | None = None

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.url is not None:
            d["url"] = self.url
        if self.secret is not None:
            if redact:
                d["signed"] = True
            else:
                d["secret"] = self.secret
        if self.job is not None:
            d["job"] = self.job
        return d


@dataclass(frozen=True)
class AlertRule:
    """A threshold on one monitored metric, with a window, a cooldown and actions.

    ``endpoint`` is an endpoint name or ``"*"`` for every endpoint.
    ``window`` (microseconds) is the length of the windows the rule looks
    at; None accepts whatever window the monitor computes. ``cooldown``
    (microseconds) is how long after resolving the rule stays quiet even if
    the condition holds again.
    """

    name: str
    endpoint: str
    metric: str
    op: str
    threshold: float
    window: int | None
    cooldown: int
    actions: tuple[Action, ...]

    def applies_to(self, endpoint: str, window: int | None = None) -> bool:
        """Whether the rule watches ``endpoint`` in windows of this length."""
        if self.endpoint not in ("*", endpoint):
            return False
        return self.window is None or window is None or self.window == window

    def breached(self, value: float) -> bool:
        """Whether ``value`` meets the rule's condition."""
        return compare(value, self.op, self.threshold)

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """The spec (what :func:`parse_rule` reads); ``redact`` hides webhook secrets."""
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "window": format_duration(self.window) if self.window is not None else None,
            "cooldown": format_duration(self.cooldown),
            "actions": [a.to_dict(redact=redact) for a in self.actions],
        }

    def describe(self) -> str:
        """``dataset_drift == 1 over 1h`` style text."""
        where = "any endpoint" if self.endpoint == "*" else self.endpoint
        over = f" over {format_duration(self.window)}" if self.window is not None else ""
        return f"{self.metric} {self.op} {self.threshold:g}{over} on {where}"


@dataclass(frozen=True)
class AlertState:
    """Where a rule stands for one subject.

    ``since``: when it last changed (or was first seen); ``last_fired_at``:
    when it last started firing, None if it never has.
    """

    firing: bool
    since: int
    last_fired_at: int | None = None
    last_value: float | None = None


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    raise RuleError(f"unknown operator {op!r}; use one of {', '.join(OPS)}", "op")


def transition(
    rule: AlertRule, previous: AlertState | None, value: float | None, t: int
) -> tuple[AlertState | None, str | None]:
    """What one observation at time ``t`` does to a subject's state.

    Returns the new state and ``"fired"``, ``"resolved"`` or None. A missing
    value (None or NaN) changes nothing and so does an observation older
    than the last change (a late window). A firing subject stays firing
    without repeating itself until the condition clears. After resolving, it
    cannot fire again until ``rule.cooldown`` has passed; a breach inside the
    cooldown leaves it quiet (and it fires on the first breach after).
    """
    if value is None or not math.isfinite(value):
        return previous, None
    if previous is not None and t < previous.since:
        return previous, None
    breach = rule.breached(value)
    if previous is None:
        if breach:
            return AlertState(True, t, t, value), "fired"
        return AlertState(False, t, None, value), None
    if previous.firing:
        if breach:
            return _with_value(previous, value), None
        return AlertState(False, t, previous.last_fired_at, value), "resolved"
    if not breach or in_cooldown(rule, previous, t):
        return _with_value(previous, value), None
    return AlertState(True, t, t, value), "fired"


def in_cooldown(rule: AlertRule, state: AlertState, t: int) -> bool:
    """Whether a resolved subject is still inside the rule's cooldown at ``t``."""
    return (
        not state.firing
        and state.last_fired_at is not None
        and rule.cooldown > 0
        and t - state.since < rule.cooldown
    )


def _with_value(state: AlertState, value: float) -> AlertState:
    return AlertState(state.firing, state.since, state.last_fired_at, value)


# --- specs -------------------------------------------------------------------


def check_metric(metric: Any) -> str:
    """The metric name if the monitor knows it, else a RuleError naming ``metric``."""
    if not isinstance(metric, str) or not metric:
        raise RuleError("metric must be a metric name, e.g. dataset_drift", "metric")
    family, sep, arg = metric.partition(":")
    if not sep and metric in METRICS:
        return metric
    if sep and family == "drift" and arg.strip():
        return metric
    if sep and family == "quality" and arg in QUALITY_METRICS:
        return metric
    if sep and family == "estimated" and arg in ESTIMATED_METRICS:
        return metric
    if sep and family == "estimated":
        raise RuleError(
            f"unknown estimated metric {arg!r}; use one of {', '.join(ESTIMATED_METRICS)}",
            "metric",
        )
    if sep and family == "quality":
        raise RuleError(
            f"unknown quality metric {arg!r}; use one of {', '.join(QUALITY_METRICS)}", "metric"
        )
    raise RuleError(
        f"unknown metric {metric!r}; use one of {', '.join(METRICS)}, drift:<feature> "
        f"quality:<{'|'.join(QUALITY_METRICS)}> or estimated:<{'|'.join(ESTIMATED_METRICS)}>",
        "metric",
    )


def parse_rule(spec: Mapping[str, Any], name: str | None = None) -> AlertRule:
    """Read and check a rule spec (a dict, as in a rule file or a PUT body).

    ``name`` (from a URL or a command line) is used when the spec has none,
    and must match it when it has one. Every error names its field.
    """
    if not isinstance(spec, Mapping):
        raise RuleError("a rule must be an object of fields")
    unknown = sorted(set(spec) - _RULE_FIELDS)
    if unknown:
        raise RuleError(
            f"unknown field {unknown[0]!r}; a rule has {', '.join(sorted(_RULE_FIELDS))}",
            unknown[0],
        )
    given = spec.get("name")
    if name is not None and given is not None and given != name:
        raise RuleError(f"name {given!r} does not match the rule being set ({name!r})", "name")
    rule_name = given if given is not None else name
    if not isinstance(rule_name, str) or not _NAME.match(rule_name):
        raise RuleError(
            "name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "name",
        )
    endpoint = spec.get("endpoint", "*")
    if not isinstance(endpoint, str) or not (endpoint == "*" or _NAME.match(endpoint)):
        raise RuleError("endpoint must be an endpoint name or '*' for every endpoint", "endpoint")
    metric = check_metric(spec.get("metric"))
    op = spec.get("op")
    if op not in OPS:
        raise RuleError(f"op must be one of {', '.join(OPS)}", "op")
    threshold = spec.get("threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
    ):
        raise RuleError("threshold must be a finite number", "threshold")
    window_spec = spec.get("window")
    window = None if window_spec is None else parse_duration(window_spec, "window")
    cooldown = parse_duration(spec.get("cooldown", "0s"), "cooldown", allow_zero=True)
    actions = parse_actions(spec.get("actions"))
    return AlertRule(
        name=rule_name,
        endpoint=endpoint,
        metric=metric,
        op=str(op),
        threshold=float(threshold),
        window=window,
        cooldown=cooldown,
        actions=actions,
    )


def parse_actions(spec: Any) -> tuple[Action, ...]:
    if not isinstance(spec, Sequence) or isinstance(spec, str) or not spec:
        raise RuleError(
            "actions must be a non-empty list, e.g. "
            '[{"type": "webhook", "url": "https://..."}, {"type": "ledger"}]',
            "actions",
        )
    return tuple(_parse_action(a, f"actions[{i}]") for i, a in enumerate(spec))


def _parse_action(spec: Any, where: str) -> Action:
    if not isinstance(spec, Mapping):
        raise RuleError("an action must be an object with a type", where)
    kind = spec.get("type")
    if kind not in ACTION_TYPES:
        raise RuleError(f"type must be one of {', '.join(ACTION_TYPES)}", f"{where}.type")
    unknown = sorted(set(spec) - _ACTION_FIELDS[kind])
    if unknown:
        raise RuleError(f"a {kind} action has no field {unknown[0]!r}", f"{where}.{unknown[0]}")
    if kind == "webhook":
        url = spec.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise RuleError("url must be an http:// or https:// URL", f"{where}.url")
        secret = spec.get("secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise RuleError("secret must be a non-empty string", f"{where}.secret")
        return Action("webhook", url=url, secret=secret)
    if kind == "retrain":
        job = spec.get("job")
        if not isinstance(job, str) or not job.strip():
            raise RuleError("job must name a retraining job", f"{where}.job")
        return Action("retrain", job=job)
    return Action(str(kind))


def parse_duration(value: Any, field: str, *, allow_zero: bool = False) -> int:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` to microseconds; errors name ``field``."""
    text = value.strip().lower() if isinstance(value, str) else None
    if allow_zero and text in ("0", "0s"):
        return 0
    if not text or text[-1] not in dict(_UNITS):
        raise RuleError(f"{field} must be a duration such as 30s, 15m, 1h or 7d", field)
    try:
        n = float(text[:-1])
    except ValueError:
        raise RuleError(f"{field} must be a duration such as 30s, 15m, 1h or 7d", field) from None
    if not math.isfinite(n) or n < 0 or (n == 0 and not allow_zero):
        raise RuleError(f"{field} must be a positive duration", field)
    return int(n * dict(_UNITS)[text[-1]] * 1_000_000)


def format_duration(us: int) -> str:
    """Microseconds as the largest whole unit: ``3600000000`` -> ``1h``."""
    if us == 0:
        return "0s"
    seconds, rest = divmod(us, 1_000_000)
    if rest:
        return f"{us / 1_000_000:g}s"
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"  # pragma: no cover - the "s" unit always divides


def subject(endpoint: str, variant: str | None) -> str:
    """The key a rule's state is kept under: ``endpoint`` or ``endpoint/variant``.

    Endpoint names cannot contain ``/``, so the key splits back unambiguously.
    """
    return endpoint if variant is None else f"{endpoint}/{variant}"


def split_subject(key: str) -> tuple[str, str | None]:
    endpoint, sep, variant = key.partition("/")
    return endpoint, (variant if sep else None)


def evidence(
    rule: AlertRule,
    event: str,
    endpoint: str,
    variant: str | None,
    value: float,
    window_start: int,
    window_end: int,
) -> dict[str, Any]:
    """What an alert says about itself (webhook body and ledger payload share it)."""
    return {
        "rule": rule.name,
        "state": event,
        "endpoint": endpoint,
        "variant": variant,
        "metric": rule.metric,
        "value": value,
        "op": rule.op,
        "threshold": rule.threshold,
        "window": {"from": iso(window_start), "to": iso(window_end)},
    }


def summary(kind: str, payload: Mapping[str, Any]) -> str:
    """One human line for an alert_fired / alert_resolved ledger event."""
    what = "fired" if kind == "alert_fired" else "resolved"
    on = f" on {payload['variant']}" if payload.get("variant") else ""
    value = payload.get("value")
    shown = f"{value:g}" if isinstance(value, int | float) else str(value)
    condition = f"{payload.get('op')} {payload.get('threshold')}"
    text = (
        f"alert {payload.get('rule')} {what}{on}: {payload.get('metric')} = {shown} "
        f"({condition if what == 'fired' else 'no longer ' + condition})"
    )
    for a in payload.get("actions", ()):
        if isinstance(a, Mapping) and a.get("type") == "retrain":
            text += f"; retrain {a.get('job')}: {a.get('result')}"
    return text
