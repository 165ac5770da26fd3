"""Erasing a subject's inputs, and inputs past their retention, without breaking a proof.

Erasure rewrites the stored bytes (rather than crypto-shredding them): the
decision log already commits to a salted commitment of the inputs, so the
bytes and the salt can simply go while the leaf, and every proof through it,
stays valid. Rewriting keeps the hot path free of a per-unit key lookup and
an encryption per decision, and leaves window reads as fast as before; the
price is that erasure must reach every copy, which the store does (rows,
columnar blocks, later context, archive files, and on SQLite the free pages
and the WAL). An archive file holding erased inputs is written again without
them and replaces the old one, whose object is then deleted
(:mod:`chronoml.store.archive_erasure`).

Each erasure appends one ``erasure`` ledger event per endpoint (so it is in
the evidence log), holding no personal data: the keyed hash of the unit key
(or the retention cut-off), how many decisions, and who.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.domain import privacy as DP
from chronoml.domain import results as R
from chronoml.errors import InvalidInput, StoreError
from chronoml.privacy import secret
from chronoml.store import archive_erasure as AE
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.timeutil import iso, now_us
from chronoml.timeutil import parse_duration as _duration

log = logging.getLogger("chronoml.privacy")

# decisions erased per transaction by retention: bounded locks and WAL growth
RETENTION_BATCH = 20_000
RETENTION_ACTOR = "monitor:retention"
ARCHIVE_ATTEMPTS = 5


def parse_duration(text: str, field: str = "retain_inputs") -> int:
    """``180d``, ``12h``, ``30m`` in microseconds; InvalidInput names the field."""
    try:
        return _duration(text)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field) from None


def erase_unit(ctx: Context, unit: str, actor: str | None = None) -> R.Erasure:
    """Erase the inputs (and context) of every decision of unit key ``unit``."""
    if not isinstance(unit, str) or not unit:
        raise InvalidInput("give the unit key to erase", "unit")
    key = secret.load(ctx.settings.privacy_key_path)
    hashed = DP.unit_hash(key, unit)
    who = ctx.actor(actor)
    at = now_us()

    AE.sweep(ctx.store)  # replaced archive files a crash may have left behind

    def tx(conn: Any, plan: AE.Plan) -> dict[str, int]:
        with SP.zeroing_freed(conn, ctx.store.is_sqlite):
            AE.lock_in(conn)
            # the key as sent, and as stored by an endpoint that hashes unit keys
            targets = SP.by_units(conn, [unit, hashed])
            SP.erase_in(conn, targets)
            counts = AE.commit_in(conn, plan, "subject", at)
            for t in targets:
                counts[t.endpoint] = counts.get(t.endpoint, 0) + 1
            for endpoint, n in sorted(counts.items()):
                payload = {"reason": "subject", "unit_hash": hashed, "decisions": n}
                SL.append_in(conn, L.Change("erasure", endpoint, who, payload), now=at)
            return counts

    # archived decisions: their files are rewritten first, then committed with the rest
    counts = _with_archive(ctx, lambda: AE.plan_units(ctx.store, [unit, hashed]), tx, "the erasure")
    AE.sweep(ctx.store)
    scrubbed = SP.scrub(ctx.store) if counts else True
    if not scrubbed:
        log.warning("erasure: the SQLite WAL stayed busy; old pages go at its next checkpoint")
    return R.Erasure(hashed, counts, at, who, files_scrubbed=scrubbed)


def erase_older(
    ctx: Context, retain_us: int, actor: str | None = None, *, now: int | None = None
) -> R.Retention:
    """Erase the inputs of decisions older than ``retain_us``; outputs, commitments and
    lineage stay."""
    t = now_us() if now is None else now
    before = t - retain_us
    who = ctx.actor(actor)
    counts: dict[str, int] = {}
    for endpoint in SL.endpoints(ctx.store):
        since = -(2**62)
        while True:

            def tx(conn: Any, endpoint: str = endpoint, since: int = since) -> tuple[int, int, int]:
                with SP.zeroing_freed(conn, ctx.store.is_sqlite):
                    targets, read, last = SP.older_than(
                        conn, endpoint, since, before, RETENTION_BATCH
                    )
                    if targets:
                        SP.erase_in(conn, targets)
                        payload = {
                            "reason": "retention",
                            "before": before,
                            "decisions": len(targets),
                        }
                        SL.append_in(conn, L.Change("erasure", endpoint, who, payload), now=t)
                    return len(targets), read, last

            n, read, last = ctx.store.write_retrying(tx, "the retention erasure")
            if n:
                counts[endpoint] = counts.get(endpoint, 0) + n
            if read < RETENTION_BATCH or last == since:
                break
            since = last

        def archived_tx(conn: Any, plan: AE.Plan, endpoint: str = endpoint) -> dict[str, int]:
            AE.lock_in(conn)
            got = AE.commit_in(conn, plan, "retention", t)
            n = got.get(endpoint, 0)
            if n:
                payload = {"reason": "retention", "before": before, "decisions": n}
                SL.append_in(conn, L.Change("erasure", endpoint, who, payload), now=t)
            return got

        def plan(endpoint: str = endpoint) -> AE.Plan:
            return AE.plan_older(ctx.store, endpoint, before)

        done = _with_archive(ctx, plan, archived_tx, "the retention erasure")
        for e, n in done.items():
            counts[e] = counts.get(e, 0) + n
    AE.sweep(ctx.store)
    if counts:
        SP.scrub(ctx.store)
    return R.Retention(before, counts)


def _with_archive(
    ctx: Context,
    plan: Callable[[], AE.Plan],
    tx: Callable[[Any, AE.Plan], dict[str, int]],
    what: str,
) -> dict[str, int]:
    """Plan the archive rewrites (files written and checked), then commit them in ``tx``;
    plan again when the archive changed in between (an archive run committed new files,
    or another erasure replaced one)."""
    for _ in range(ARCHIVE_ATTEMPTS):
        p = plan()
        try:
            return ctx.store.write_retrying(functools.partial(_run, tx, p), what)
        except AE.Stale:
            AE.discard(ctx.store, p)
            log.info("%s: the archive changed while its files were rewritten; again", what)
    raise StoreError(f"{what}: the archive kept changing while its files were rewritten; try again")


def _run(tx: Callable[[Any, AE.Plan], dict[str, int]], plan: AE.Plan, conn: Any) -> dict[str, int]:
    return tx(conn, plan)


def erased_note(
    ctx: Context, conn: Any, endpoint: str, unit: str | None, ts: int
) -> dict[str, Any]:
    """When, by whom and why a decision's inputs were erased, from its erasure event."""
    hashes: set[str] = set()
    if unit is not None:
        hashes.add(unit)  # a unit stored hashed is its own hash
        if ctx.settings.privacy_key_path.exists():
            hashes.add(DP.unit_hash(secret.load(ctx.settings.privacy_key_path), unit))
    for ev in SP.erasure_events_in(conn, endpoint):
        p = ev.payload
        if (p.get("reason") == "subject" and p.get("unit_hash") in hashes) or (
            p.get("reason") == "retention" and int(p.get("before", 0)) > ts
        ):
            return {
                "erased_at": iso(ev.recorded_at),
                "erased_by": ev.actor,
                "reason": p.get("reason"),
                "event_seq": ev.seq,
            }
    return {"erased_at": None, "erased_by": None, "reason": "unknown", "event_seq": None}
