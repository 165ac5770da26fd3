"""What this server is serving, kept in step with the ledger.

A watcher polls the ledger head; when it moves, the changed endpoints are
re-read and their models loaded (digest-checked) before the switch, so a
request never meets a variant whose model is not ready.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from chronoml.domain import ledger as L
from chronoml.domain.canary import Guardrails
from chronoml.domain.routing import Router
from chronoml.registry import Registry
from chronoml.registry.models import LoadedModel, load_model
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.store.database import Store
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.live")


@dataclass(frozen=True)
class Canary:
    """The endpoint's latest change is this canary deploy: judge its variant."""

    variant: str
    seq: int
    guardrails: Guardrails


@dataclass(frozen=True)
class LiveEndpoint:
    state: L.EndpointState
    models: dict[str, LoadedModel]
    router: Router
    canary: Canary | None = None
    # the state's shadow variants, looked up once rather than on every request
    shadows: tuple[L.Variant, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadows", self.state.shadows)


@dataclass
class Live:
    """The serving table: endpoint -> state and loaded models."""

    store: Store
    registry: Registry
    # tree ensembles on their fast calls when the probe at load allows it
    fast_calls: bool = True
    endpoints: dict[str, LiveEndpoint] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seen_seq: int = -1
    # each endpoint's privacy policy, read again whenever the ledger moves
    privacy: dict[str, SP.StoredPolicy] = field(default_factory=dict)
    _cache: dict[str, LoadedModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: Worker | None = None
    _head: HeadReader = field(init=False)

    def __post_init__(self) -> None:
        self._head = HeadReader(self.store)

    def get(self, endpoint: str) -> LiveEndpoint | None:
        return self.endpoints.get(endpoint)

    def refresh(self) -> bool:
        """Catch up with the ledger; True if anything changed."""
        with self._lock:
            head_seq = self._head.seq()
            if head_seq == self.seen_seq:
                return False
            # a policy change is a ledger event: one small table read per move of the head
            self.privacy = SP.all_policies(self.store)
            if self.seen_seq < 0:
                changed = set(SL.endpoints(self.store))
            else:
                changed = SL.changed_since(self.store, self.seen_seq)
            t = now_us()
            for name in changed:
                ev = SL.state_event_at(self.store, name, t)
                state = L.state_of(ev, name)
                canary = None
                if ev is not None and ev.kind == "deploy" and ev.payload.get("canary"):
                    canary = Canary(
                        ev.payload["variant"]["variant"],
                        ev.seq,
                        Guardrails.from_dict(ev.payload["canary"]),
                    )
                try:
                    models = {v.name: self._load(v.model) for v in state.variants}
                except Exception as exc:
                    self.errors[name] = f"cannot load models for {name}: {exc}"
                    log.error(self.errors[name])
                    continue
                self.errors.pop(name, None)
                table = dict(self.endpoints)
                if state.variants:
                    table[name] = LiveEndpoint(state, models, Router(state.variants), canary)
                else:
                    table.pop(name, None)
                self.endpoints = table  # swap: readers see old or new, never half
            self.seen_seq = head_seq
            return True

    def _load(self, ref: L.ModelRef) -> LoadedModel:
        cached = self._cache.get(ref.artifact_digest)
        if cached is not None and cached.ref.name == ref.name and cached.ref.version == ref.version:
            return cached
        path = self.registry.fetch(ref)
        model = load_model(ref, path, fast_calls=self.fast_calls)
        log.info("loaded %s v%s (%s): %s", ref.name, ref.version, model.flavor, call_of(model))
        self._cache[ref.artifact_digest] = model
        return model

    def start(self, interval_s: float) -> None:
        """Follow the ledger every ``interval_s`` in a background thread."""
        self._worker = Worker("chronoml-ledger-watch", self.refresh, interval_s)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop(5)
        with self._lock:
            self._head.close()


def call_of(model: LoadedModel) -> str:
    """How ``model`` is called on a float matrix, and why (the load log's words)."""
    return model.call_note or f"{model.model_call} call"


class HeadReader:
    """The ledger head's seq, read on a connection of its own, below SQLAlchemy.

    The watcher asks several times a second on every server; most answers
    are "unchanged", so the question is one prepared query on a held driver
    connection in autocommit (no transaction left open to hold back a WAL
    checkpoint). A failed read drops the connection; the next one reconnects.
    """

    _SQL = "SELECT seq FROM ledger_head WHERE id = 1"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Any = None

    def seq(self) -> int:
        if self._conn is None:
            conn = self.store.engine.raw_connection()
            if not self.store.is_sqlite:  # SQLite's connections already run in autocommit
                conn.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._conn = conn
        try:
            cur = self._conn.driver_connection.cursor()
            try:
                cur.execute(self._SQL)
                row = cur.fetchone()
            finally:
                cur.close()
        except BaseException:
            self.close(broken=True)
            raise
        if row is None:
            raise RuntimeError("the store has no ledger head: run chronoml db upgrade")
        return int(row[0])

    def close(self, broken: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # already gone
            if broken or not self.store.is_sqlite:
                # not handed back to the pool: its autocommit setting stays with it
                conn.invalidate()
            else:
                conn.close()
