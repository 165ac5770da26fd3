"""The ledger: append-only, hash-chained events and the state they imply.

Everything here is pure: events in, state out. Storage adapters persist
events and answer ``state_at`` with an index, but the meaning of the ledger
is defined by the functions in this module.

Times are integers: microseconds since the Unix epoch, UTC. That keeps the
canonical encoding (and therefore every hash) free of formatting choices.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chronoml.domain import buckets as B
from chronoml.domain import challenger
from chronoml.domain.alerts import summary
from chronoml.domain.challenger import change_note
from chronoml.domain.lineage import EndpointState, ModelRef, Variant

GENESIS_HASH = "0" * 64

# Kinds that change what is live. Every other kind (alerts, job outcomes,
# experiment verdicts) is recorded on the chain but leaves the state alone.
STATE_KINDS = frozenset({"deploy", "set_weights", "rollback", "retire"})

TOTAL_WEIGHT = 10_000  # weights are kept in basis points: 100.00% == 10_000


class LedgerError(ValueError):
    """A change that cannot be recorded; nothing was written."""


@dataclass(frozen=True)
class LedgerEvent:
    """One recorded change. ``hash`` covers everything else, ``prev_hash`` included."""

    seq: int
    kind: str
    endpoint: str
    actor: str
    recorded_at: int
    effective_at: int
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str = ""
    # for state-changing kinds: the resulting variants and the event a
    # rollback of this event would return to
    state: tuple[Variant, ...] | None = None
    back: int | None = None

    @property
    def sets_state(self) -> bool:
        return self.kind in STATE_KINDS

    def content(self) -> dict[str, Any]:
        """The canonical content the hash covers."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "actor": self.actor,
            "recorded_at": self.recorded_at,
            "effective_at": self.effective_at,
            "payload": self.payload,
            "state": [v.to_dict() for v in self.state] if self.state is not None else None,
            "back": self.back,
            "prev_hash": self.prev_hash,
        }


def canonical_json(obj: Any) -> bytes:
    """A byte-exact encoding: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(event: LedgerEvent) -> str:
    return hashlib.sha256(canonical_json(event.content())).hexdigest()


def seal(event: LedgerEvent) -> LedgerEvent:
    """Return the event with its hash filled in."""
    return replace(event, hash=event_hash(event))


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying a chain."""

    ok: bool
    events: int
    head: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(events: Iterable[LedgerEvent]) -> ChainReport:
    """Recompute every hash and link; name the first event that does not match."""
    prev = GENESIS_HASH
    expected_seq = 1
    n = 0
    for ev in events:
        n += 1
        if ev.seq != expected_seq:
            return ChainReport(
                False, n, prev, ev.seq, f"expected seq {expected_seq}, found {ev.seq}"
            )
        if ev.prev_hash != prev:
            return ChainReport(
                False, n, prev, ev.seq, "prev_hash does not match the event before it"
            )
        if event_hash(ev) != ev.hash:
            return ChainReport(False, n, prev, ev.seq, "content does not match its hash")
        prev = ev.hash
        expected_seq += 1
    return ChainReport(True, n, prev)


# --- applying changes ------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A requested change, before it is sealed onto the chain."""

    kind: str
    endpoint: str
    actor: str
    payload: Mapping[str, Any] = field(default_factory=dict)


def scale_weights(existing: Sequence[int], room: int) -> list[int]:
    """Shrink ``existing`` weights in proportion so they sum to ``room``.

    Largest-remainder rounding keeps the total exact.
    """
    total = sum(existing)
    if not existing:
        return []
    if total == 0:
        # nothing to preserve: share the room equally
        base, extra = divmod(room, len(existing))
        return [base + (1 if i < extra else 0) for i in range(len(existing))]
    raw = [w * room / total for w in existing]
    floors = [int(x) for x in raw]
    short = room - sum(floors)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - floors[i]), i))
    for i in order[:short]:
        floors[i] += 1
    return floors


def percent_to_bp(percent: float, what: str = "weight") -> int:
    if percent != percent or percent < 0 or percent > 100:
        raise LedgerError(f"{what} must be between 0 and 100, got {percent}")
    bp = round(percent * 100)
    if abs(bp - percent * 100) > 1e-6:
        raise LedgerError(f"{what} has more than two decimals: {percent}")
    return bp


def owned_buckets(variants: Sequence[Variant]) -> dict[str, B.Ranges]:
    """Who owns which routing buckets in a state (contiguous for older states)."""
    answering = [v for v in variants if not v.shadow and v.weight > 0]
    if answering and all(v.buckets is not None for v in answering):
        return {v.name: v.buckets for v in answering if v.buckets is not None}
    return B.contiguous([(v.name, v.weight) for v in answering])


def _assign_buckets(before: Sequence[Variant], after: tuple[Variant, ...]) -> tuple[Variant, ...]:
    """Give ``after`` bucket ownership that moves the fewest units from ``before``."""
    weights = [(v.name, v.weight) for v in after if not v.shadow and v.weight > 0]
    owned = B.rebalance(owned_buckets(before), weights, TOTAL_WEIGHT)
    return tuple(
        replace(v, buckets=owned[v.name]) if v.name in owned else replace(v, buckets=None)
        for v in after
    )


def apply_deploy(
    current: tuple[Variant, ...], variant: Variant, weight_bp: int | None
) -> tuple[Variant, ...]:
    """The variants after deploying ``variant``.

    ``weight_bp=None``: it becomes the only live variant (shadows stay).
    A weight: it joins (or is re-weighted) at that share and the other
    answering variants shrink in proportion. Shadow: added as a copy-only variant.
    Routing buckets move as little as the new weights allow.
    """
    return _assign_buckets(current, _deploy_weights(current, variant, weight_bp))


def _deploy_weights(
    current: tuple[Variant, ...], variant: Variant, weight_bp: int | None
) -> tuple[Variant, ...]:
    others = tuple(v for v in current if v.name != variant.name)
    if variant.shadow:
        # demoting an answering variant frees its share: the others grow in
        # proportion so the answering weights still add up to 100%
        answering = [v for v in others if not v.shadow]
        scaled = scale_weights([v.weight for v in answering], TOTAL_WEIGHT)
        grown = {v.name: w for v, w in zip(answering, scaled, strict=True)}
        return (
            *(v if v.shadow else replace(v, weight=grown[v.name]) for v in others),
            replace(variant, weight=0),
        )
    if weight_bp is None or not [v for v in others if not v.shadow]:
        if weight_bp is not None and weight_bp != TOTAL_WEIGHT:
            raise LedgerError(
                f"endpoint has no other live variant to share traffic with; "
                f"deploy without a weight or with weight 100 (got {weight_bp / 100:g})"
            )
        keep = tuple(v for v in others if v.shadow)
        return (*keep, replace(variant, weight=TOTAL_WEIGHT))
    if weight_bp <= 0 or weight_bp >= TOTAL_WEIGHT:
        if weight_bp == TOTAL_WEIGHT:
            keep = tuple(v for v in others if v.shadow)
            return (*keep, replace(variant, weight=TOTAL_WEIGHT))
        raise LedgerError("a weighted deploy needs a weight above 0 and at most 100")
    answering = [v for v in others if not v.shadow]
    scaled = scale_weights([v.weight for v in answering], TOTAL_WEIGHT - weight_bp)
    new_weights = {v.name: w for v, w in zip(answering, scaled, strict=True)}
    out: list[Variant] = []
    for v in others:
        if v.shadow:
            out.append(v)
        elif new_weights[v.name] > 0:
            out.append(replace(v, weight=new_weights[v.name]))
    out.append(replace(variant, weight=weight_bp))
    return tuple(out)


def apply_weights(current: tuple[Variant, ...], weights: Mapping[str, int]) -> tuple[Variant, ...]:
    """Set the split of the answering variants; it must name each and add up to 100%.

    Only the units the new split requires move (see :mod:`chronoml.domain.buckets`).
    """
    return _assign_buckets(current, _split_weights(current, weights))


def _split_weights(current: tuple[Variant, ...], weights: Mapping[str, int]) -> tuple[Variant, ...]:
    answering = {v.name for v in current if not v.shadow}
    unknown = set(weights) - {v.name for v in current}
    if unknown:
        raise LedgerError(f"unknown variant(s): {', '.join(sorted(unknown))}")
    shadows_named = [n for n in weights if n not in answering]
    if shadows_named:
        raise LedgerError(f"shadow variant(s) take no weight: {', '.join(sorted(shadows_named))}")
    missing = answering - set(weights)
    if missing:
        raise LedgerError(
            f"weights must name every live variant; missing: {', '.join(sorted(missing))}"
        )
    if any(w < 0 for w in weights.values()):
        raise LedgerError("weights must not be negative")
    total = sum(weights.values())
    if total != TOTAL_WEIGHT:
        raise LedgerError(f"weights must add up to 100, got {total / 100:g}")
    out = []
    for v in current:
        if v.shadow:
            out.append(v)
        elif weights[v.name] > 0:
            out.append(replace(v, weight=weights[v.name]))
    return tuple(out)


def plan(
    head_seq: int,
    head_hash: str,
    history: Sequence[LedgerEvent],
    change: Change,
    now: int,
    effective_at: int | None = None,
) -> LedgerEvent:
    """Turn a requested change into the next sealed event on the chain.

    ``history`` holds the state-changing events of ``change.endpoint`` in seq
    order (only the tail matters). Effective times never go back: an event
    takes effect no earlier than it is recorded, and no earlier than the
    endpoint's previous event, so a recorded past can never change.
    """
    eff = now if effective_at is None else effective_at
    if eff < now:
        raise LedgerError("effective_at is in the past; history cannot be rewritten")
    last = history[-1] if history else None
    if last is not None and eff < last.effective_at:
        raise LedgerError("effective_at is before the endpoint's latest change")
    current = last.state if last is not None and last.state is not None else ()
    state: tuple[Variant, ...] | None = None
    back: int | None = None
    payload = dict(change.payload)
    if change.kind == "deploy":
        variant = replace(Variant.from_dict(payload["variant"]), since=head_seq + 1)
        weight = payload.get("weight_bp")
        state = apply_deploy(current, variant, weight)
        back = last.seq if last is not None else None
    elif change.kind == "set_weights":
        if not current:
            raise LedgerError(f"endpoint {change.endpoint!r} has nothing live")
        state = apply_weights(current, payload["weights_bp"])
        back = last.seq if last is not None else None
    elif change.kind == "rollback":
        if last is None:
            raise LedgerError(f"endpoint {change.endpoint!r} has never been deployed")
        ends = payload.get("canary_seq")
        if ends is not None and last.seq != ends:
            # a guardrail's rollback only undoes the canary it judged
            raise LedgerError(
                f"the canary of event {ends} is no longer the latest change of "
                f"{change.endpoint!r} (event {last.seq} is): nothing to roll back"
            )
        if last.back is None:
            raise LedgerError(
                f"endpoint {change.endpoint!r} has no earlier configuration to roll back to; "
                "use retire to take it offline"
            )
        by_seq = {e.seq: e for e in history}
        target = by_seq.get(last.back)
        if target is None:
            raise LedgerError(f"rollback target event {last.back} not in history")
        state = target.state or ()
        back = target.back
        payload["to_seq"] = target.seq
    elif change.kind == "retire":
        if last is None or not current:
            raise LedgerError(f"endpoint {change.endpoint!r} has nothing live")
        state = ()
        back = last.seq
    elif change.kind in STATE_KINDS:  # pragma: no cover - guarded by STATE_KINDS
        raise LedgerError(f"unhandled kind {change.kind}")
    if state and not any(not v.shadow for v in state):
        raise LedgerError(
            f"this change would leave endpoint {change.endpoint!r} with only shadow variants, "
            "so nothing would answer its requests: deploy an answering variant first "
            "(without --shadow), or retire the endpoint"
        )
    event = LedgerEvent(
        seq=head_seq + 1,
        kind=change.kind,
        endpoint=change.endpoint,
        actor=change.actor,
        recorded_at=now,
        effective_at=eff,
        payload=payload,
        prev_hash=head_hash,
        state=state,
        back=back,
    )
    return seal(event)


def state_of(event: LedgerEvent | None, endpoint: str) -> EndpointState:
    if event is None or event.state is None:
        return EndpointState(endpoint)
    return EndpointState(endpoint, event.state, event.seq)


def state_at(events: Sequence[LedgerEvent], endpoint: str, t: int) -> EndpointState:
    """What ``endpoint`` served at time ``t``: a pure function of the events.

    Uses the state each event carries; events are ordered by effective time
    (then seq), and only those with ``effective_at <= t`` count.
    """
    mine = sorted(
        (e for e in events if e.endpoint == endpoint and e.sets_state),
        key=lambda e: (e.effective_at, e.seq),
    )
    keys = [e.effective_at for e in mine]
    i = bisect.bisect_right(keys, t)
    return state_of(mine[i - 1] if i else None, endpoint)


def replay_state(events: Sequence[LedgerEvent], endpoint: str, t: int) -> EndpointState:
    """Brute force: re-derive the state from scratch by re-applying each change.

    Independent of the state stored in events; used to check ``state_at``.
    """
    variants: tuple[Variant, ...] = ()
    stack: list[tuple[Variant, ...]] = []
    last_seq: int | None = None
    for e in sorted(events, key=lambda e: (e.effective_at, e.seq)):
        if e.endpoint != endpoint or not e.sets_state or e.effective_at > t:
            continue
        if e.kind == "deploy":
            stack.append(variants)
            joining = replace(Variant.from_dict(e.payload["variant"]), since=e.seq)
            variants = apply_deploy(variants, joining, e.payload.get("weight_bp"))
        elif e.kind == "set_weights":
            stack.append(variants)
            variants = apply_weights(variants, e.payload["weights_bp"])
        elif e.kind == "retire":
            stack.append(variants)
            variants = ()
        elif e.kind == "rollback":
            variants = stack.pop()
        last_seq = e.seq
    return EndpointState(endpoint, variants, last_seq)


def event_summary(e: LedgerEvent) -> str:
    """One human line for an event, used by the CLI timeline."""
    p = e.payload
    if e.kind in STATE_KINDS and isinstance(p.get("job"), Mapping):
        # a change made by a retraining job: the usual line, and which job and verdict

        plain = replace(e, payload={k: v for k, v in p.items() if k != "job"})
        return event_summary(plain) + change_note(p)
    if e.kind == "deploy":
        v = p["variant"]
        m = v["model"]
        how = (
            "shadow"
            if v["shadow"]
            else (
                f"at {p['weight_bp'] / 100:g}%"
                if p.get("weight_bp") is not None
                else "as the only variant"
            )
        )
        text = f"deploy {m['name']} v{m['version']} as {v['variant']} {how}"
        if p.get("canary"):
            g = p["canary"]
            text += (
                f" (canary: rolled back if its error rate exceeds {g['max_error_rate']:.1%} "
                f"or its p99 {g['max_p99_ms']:g} ms, judged after {g['min_requests']} requests)"
            )
        if p.get("allow_unlinked_data"):
            text += " (no linked data snapshot: allowed by --allow-unlinked-data)"
        return text
    if e.kind == "set_weights":
        split = ", ".join(f"{k}={w / 100:g}%" for k, w in sorted(p["weights_bp"].items()))
        return f"set weights {split}"
    if e.kind == "rollback":
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return f"rollback to the configuration of event {p.get('to_seq')}{reason}"
    if e.kind == "retire":
        return "retire: nothing live"
    if e.kind in ("alert_fired", "alert_resolved"):
        return summary(e.kind, p)
    if e.kind.startswith("job_") or e.kind == "experiment_verdict":
        return challenger.summary(e.kind, p)
    if e.kind == "privacy":
        pol = p.get("policy", {})
        rules = [f"{k}={v}" for k, v in sorted(pol.get("features", {}).items())]
        rules += [f"context {k}={v}" for k, v in sorted(pol.get("context", {}).items())]
        rules += ["unit key hashed"] if pol.get("unit_key") == "hash" else []
        return "privacy policy: " + (", ".join(rules) or "every input kept")
    if e.kind == "erasure":
        why = "retention" if p.get("reason") == "retention" else f"subject {p.get('unit_hash')}"
        return f"erased the inputs of {p.get('decisions')} decisions ({why})"
    return f"{e.kind} {json.dumps(dict(p), sort_keys=True)}"


# the lineage types are part of the ledger's vocabulary (events hold them)
__all__ = [
    "GENESIS_HASH",
    "STATE_KINDS",
    "TOTAL_WEIGHT",
    "ChainReport",
    "Change",
    "EndpointState",
    "LedgerError",
    "LedgerEvent",
    "ModelRef",
    "Variant",
    "apply_deploy",
    "apply_weights",
    "canonical_json",
    "event_hash",
    "event_summary",
    "owned_buckets",
    "percent_to_bp",
    "plan",
    "replay_state",
    "scale_weights",
    "seal",
    "state_at",
    "state_of",
    "verify_chain",
]
