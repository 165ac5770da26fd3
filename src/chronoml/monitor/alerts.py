"""Alert rules over monitored windows: storage, evaluation and durable actions.

The monitor computes a window's metrics for an endpoint and variant and
calls :meth:`AlertEngine.evaluate`. For each rule that watches that metric,
the engine applies :func:`chronoml.domain.alerts.transition` and, when the
rule fires or resolves, commits in ONE transaction: the new state, the
ledger event (``alert_fired`` / ``alert_resolved``), the outbox rows of its
webhooks and whatever a retraining hook enqueues. A crash loses all of them
or none; the :class:`~chronoml.monitor.outbox.Outbox` deliverer sends the
webhooks afterwards. Log lines are written after the commit.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chronoml.domain import alerts as A
from chronoml.domain.ledger import Change, LedgerEvent
from chronoml.monitor import outbox
from chronoml.store import alerts as SA
from chronoml.store import ledger as SL
from chronoml.store.database import Store, Tx
from chronoml.store.retrain_configs import alert_hook
from chronoml.timeutil import iso, now_us

log = logging.getLogger("chronoml.alerts")

T = TypeVar("T")

# (connection, change, now) -> the sealed event, inside the caller's transaction
LedgerAppend = Callable[[Tx, Change, int], LedgerEvent]
# (connection, job, evidence) -> what happened, inside the alert's transaction
RetrainHook = Callable[[Tx, str, Mapping[str, Any]], str]


def _append(conn: Tx, change: Change, now: int) -> LedgerEvent:
    return SL.append_in(conn, change, now=now)


def _queue_retraining(conn: Tx, job: str, evidence: Mapping[str, Any]) -> str:
    return alert_hook(conn, job, evidence)


@dataclass(frozen=True)
class AlertOutcome:
    """What one rule made of one window of one endpoint and variant.

    ``event`` is ``"fired"``, ``"resolved"`` or None (no change); ``firing``
    is the state afterwards; ``suppressed`` says the condition held but the
    rule was inside its cooldown. ``results`` has one entry per action that
    ran, e.g. ``{"type": "retrain", "job": "churn", "result": "no retraining
    configured"}``; ``deliveries`` are the outbox ids of its webhooks.
    """

    rule: str
    endpoint: str
    variant: str | None
    metric: str
    value: float | None
    event: str | None
    firing: bool
    suppressed: bool = False
    ledger_seq: int | None = None
    deliveries: tuple[int, ...] = ()
    results: tuple[Mapping[str, Any], ...] = field(default=())


class AlertEngine:
    """Alert rules in the store, evaluated against monitored windows.

    ``ledger_append`` seals alert events inside the engine's transaction
    (default: :func:`chronoml.store.ledger.append_in`). ``retrain`` is the
    retraining hook (default: queue a job for the endpoint the action names,
    :func:`chronoml.store.retrain_configs.alert_hook`, which reports "no
    retraining configured" when it has no configuration). ``on_enqueue`` is
    called after a commit that added webhooks (pass ``Outbox.wake`` to send
    them at once).
    """

    def __init__(
        self,
        store: Store,
        actor: str = "monitor",
        ledger_append: LedgerAppend = _append,
        *,
        retrain: RetrainHook | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.actor = actor
        self.ledger_append = ledger_append
        self.retrain = retrain if retrain is not None else _queue_retraining
        self.on_enqueue = on_enqueue

    # --- rules -------------------------------------------------------------

    def put(self, spec: Mapping[str, Any] | A.AlertRule, name: str | None = None) -> A.AlertRule:
        """Create or replace a rule (by name). Raises RuleError naming a bad field."""
        rule = spec if isinstance(spec, A.AlertRule) else A.parse_rule(spec, name)
        self._upsert([rule])
        return rule

    def load_file(self, path: str | Path) -> list[A.AlertRule]:
        """Upsert every rule of a TOML or JSON file; all are checked before any is written.

        TOML: ``[[rules]]`` tables. JSON: a list of rules, or ``{"rules": [...]}``.
        """
        rules = read_rule_file(path)
        self._upsert(rules)
        return rules

    def get(self, name: str) -> A.AlertRule | None:
        return SA.rule(self.store, name)

    def rules(self) -> list[A.AlertRule]:
        return SA.rules(self.store)

    def remove(self, name: str) -> bool:
        """Delete a rule and its state; False if there was no such rule."""
        return SA.remove(self.store, name)

    def windows(self, endpoint: str | None = None) -> list[int]:
        """The window lengths (microseconds) rules ask for, on ``endpoint`` or any."""
        return sorted(
            {
                r.window
                for r in self.rules()
                if r.window is not None and (endpoint is None or r.applies_to(endpoint))
            }
        )

    def status(self, *, redact: bool = True) -> list[dict[str, Any]]:
        """Every rule with its spec and the state of each subject it has seen."""
        rules = self.rules()
        states: dict[str, list[dict[str, Any]]] = {}
        now = now_us()
        by_name = {r.name: r for r in rules}
        for name, subject, st in SA.all_states(self.store):
            rule = by_name.get(name)
            if rule is None:
                continue
            endpoint, variant = A.split_subject(subject)
            states.setdefault(name, []).append(
                {
                    "endpoint": endpoint,
                    "variant": variant,
                    "firing": st.firing,
                    "since": iso(st.since),
                    "last_fired_at": iso(st.last_fired_at) if st.last_fired_at else None,
                    "last_value": st.last_value,
                    "in_cooldown": A.in_cooldown(rule, st, now),
                }
            )
        return [
            {
                **r.to_dict(redact=redact),
                "description": r.describe(),
                "firing": any(s["firing"] for s in states.get(r.name, [])),
                "states": states.get(r.name, []),
            }
            for r in rules
        ]

    def _upsert(self, rules: list[A.AlertRule]) -> None:
        SA.upsert(self.store, rules, now_us())

    # --- evaluation --------------------------------------------------------

    def evaluate(
        self,
        endpoint: str,
        variant: str | None,
        metrics: Mapping[str, float | None],
        window_start: int,
        window_end: int,
        *,
        now: int | None = None,
    ) -> list[AlertOutcome]:
        """Apply every rule watching ``endpoint`` in windows of this length.

        ``metrics`` maps metric names (``dataset_drift``, ``drift:age``,
        ``quality:f1``, ...) to the window's values; a missing or None value
        changes nothing. Transitions are timed at ``window_end``; ``now``
        (default: the clock) is when events are recorded. Returns one outcome
        per applicable rule, in rule-name order.
        """
        rules = [r for r in self.rules() if r.applies_to(endpoint, window_end - window_start)]
        if not rules:
            return []
        key = A.subject(endpoint, variant)
        t_rec = now if now is not None else now_us()
        logs: list[tuple[A.AlertRule, str, dict[str, Any]]] = []

        def write(conn: Tx) -> list[AlertOutcome]:
            logs.clear()
            previous = SA.lock_states(conn, key, [r.name for r in rules])
            out = []
            for rule in rules:
                raw = metrics.get(rule.metric)
                value = float(raw) if raw is not None and math.isfinite(raw) else None
                before = previous.get(rule.name)
                after, ev = A.transition(rule, before, value, window_end)
                if after is None or value is None:
                    firing = before.firing if before is not None else False
                    out.append(
                        AlertOutcome(rule.name, endpoint, variant, rule.metric, value, None, firing)
                    )
                    continue
                SA.save_state(conn, rule.name, key, after, exists=before is not None)
                if ev is None:
                    suppressed = rule.breached(value) and not after.firing
                    out.append(
                        AlertOutcome(
                            rule.name,
                            endpoint,
                            variant,
                            rule.metric,
                            value,
                            None,
                            after.firing,
                            suppressed,
                        )
                    )
                    continue
                evidence = A.evidence(rule, ev, endpoint, variant, value, window_start, window_end)
                out.append(self._act(conn, rule, ev, evidence, after, t_rec))
                logs.append((rule, ev, evidence))
            return out

        outcomes = self._retrying(write)
        for rule, ev, evidence in logs:
            if any(a.type == "log" for a in rule.actions):
                _log_line(rule, ev, evidence)
        if self.on_enqueue is not None and any(o.deliveries for o in outcomes):
            self.on_enqueue()
        return outcomes

    def _act(
        self,
        conn: Tx,
        rule: A.AlertRule,
        ev: str,
        evidence: dict[str, Any],
        state: A.AlertState,
        t: int,
    ) -> AlertOutcome:
        """Run a transition's actions inside its transaction."""
        results: list[dict[str, Any]] = []
        for action in rule.actions:
            if action.type == "retrain" and ev == "fired":
                assert action.job is not None
                result = (
                    self.retrain(conn, action.job, evidence)
                    if self.retrain is not None
                    else A.NO_RETRAINING
                )
                results.append({"type": "retrain", "job": action.job, "result": result})
            elif action.type == "log":
                results.append({"type": "log"})
        seq: int | None = None
        if any(a.type == "ledger" for a in rule.actions):
            payload = {
                **evidence,
                "actions": [
                    *results,
                    *(
                        {"type": "webhook", "url": a.url}
                        for a in rule.actions
                        if a.type == "webhook"
                    ),
                ],
            }
            kind = "alert_fired" if ev == "fired" else "alert_resolved"
            seq = self.ledger_append(
                conn, Change(kind, evidence["endpoint"], self.actor, payload), t
            ).seq
            results.append({"type": "ledger", "seq": seq})
        body = {**evidence, "time": iso(t), "ledger_seq": seq}
        retrains = [r for r in results if r["type"] == "retrain"]
        if retrains:
            body["retrain"] = [{"job": r["job"], "result": r["result"]} for r in retrains]
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        deliveries = []
        for action in rule.actions:
            if action.type == "webhook":
                assert action.url is not None
                oid = outbox.enqueue(conn, action.url, data, secret=action.secret, now=t)
                deliveries.append(oid)
                results.append({"type": "webhook", "url": action.url, "delivery": oid})
        return AlertOutcome(
            rule.name,
            evidence["endpoint"],
            evidence["variant"],
            rule.metric,
            evidence["value"],
            ev,
            state.firing,
            False,
            seq,
            tuple(deliveries),
            tuple(results),
        )

    def _retrying(self, fn: Callable[[Tx], T]) -> T:
        return self.store.write_retrying(fn, "alerts")


def read_rule_file(path: str | Path) -> list[A.AlertRule]:
    """Parse a TOML (``[[rules]]``) or JSON (a list, or ``{"rules": [...]}``) rule file.

    Errors name the rule (by position and name) and the field.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise A.RuleError(f"cannot read {p}: {exc.strerror}") from None
    data: Any
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
        raise A.RuleError(f"{p} is not valid {kind}: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("rules")
    if not isinstance(data, list):
        raise A.RuleError(
            f"{p} must hold a list of rules ([[rules]] tables in TOML, a list in JSON)", "rules"
        )
    rules: list[A.AlertRule] = []
    for i, spec in enumerate(data):
        try:
            rules.append(A.parse_rule(spec))
        except A.RuleError as exc:
            name = spec.get("name") if isinstance(spec, Mapping) else None
            where = f"rules[{i}]" + (f" ({name})" if isinstance(name, str) else "")
            field_name = f"rules[{i}].{exc.field}" if exc.field else f"rules[{i}]"
            raise A.RuleError(f"{p}: {where}: {exc.message}", field_name) from None
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise A.RuleError(f"{p}: rule {dupes[0]!r} is defined twice", "name")
    return rules


def _log_line(rule: A.AlertRule, ev: str, evidence: Mapping[str, Any]) -> None:
    on = evidence["endpoint"] + (f"/{evidence['variant']}" if evidence["variant"] else "")
    w = evidence["window"]
    # both at WARNING: with no logging configured (as under `chronoml server`)
    # Python still prints warnings, and a "log" action must be seen
    log.warning(
        "alert %s %s on %s: %s = %g (%s %s %g), window %s to %s",
        rule.name,
        ev,
        on,
        rule.metric,
        evidence["value"],
        "breaches" if ev == "fired" else "no longer",
        rule.op,
        rule.threshold,
        w["from"],
        w["to"],
    )
