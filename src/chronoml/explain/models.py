"""The archived models behind past decisions, for explaining and replaying them.

A decision names its model through the ledger: the state event that routed
it holds the variant and its :class:`~chronoml.domain.ledger.ModelRef`, with
the artifact digest recorded at deploy. :class:`Models` loads that archived
artifact, checking its digest on every use, so an explanation or a replay
is never computed by a model other than the one that decided.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pandas as pd

from chronoml.context import Context
from chronoml.domain.explanation import NotExplainable
from chronoml.domain.ledger import ModelRef
from chronoml.domain.snapshot import SnapshotError
from chronoml.explain.base import Explainer
from chronoml.explain.explainers import explainer_for
from chronoml.registry.archive import ArtifactError, DecisionModelError, verified_path
from chronoml.registry.models import LoadedModel, load_model
from chronoml.store import ledger as SL
from chronoml.store import snapshots


class Models:
    """Loads archived models (digest checked on each use) and caches loads and explainers.

    ``serving`` may return the instance a gateway already serves for a
    digest, so an explanation uses the very object that decided.
    """

    def __init__(
        self, cm: Context, serving: Callable[[str], LoadedModel | None] | None = None
    ) -> None:
        self.cm = cm
        self.serving = serving
        self._models: dict[str, LoadedModel] = {}
        self._explainers: dict[str, Explainer] = {}
        self._refs: dict[tuple[int, str], ModelRef] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def ref_of(self, event_seq: int, variant: str, name: str, version: str) -> ModelRef:
        """The model of a logged decision, from the ledger event that routed it."""
        key = (event_seq, variant)
        ref = self._refs.get(key)
        if ref is None:
            ev = SL.event(self.cm.store, event_seq)
            v = None
            if ev is not None and ev.state is not None:
                v = next((x for x in ev.state if x.name == variant), None)
            if v is None:
                raise DecisionModelError(
                    f"ledger event #{event_seq} does not hold variant {variant!r}: "
                    "cannot tell which model decided"
                )
            ref = v.model
            self._refs[key] = ref
        if ref.name != name or ref.version != version:
            raise DecisionModelError(
                f"the decision names {name} v{version}, but ledger event #{event_seq} gives "
                f"variant {variant!r} {ref.name} v{ref.version}"
            )
        return ref

    def load(self, ref: ModelRef, *, verify: bool = True) -> LoadedModel:
        """The model of ``ref``; with ``verify``, its archived bytes are hashed first."""
        path = verified_path(self.cm.registry, ref) if verify else None
        digest = ref.artifact_digest
        with self._lock:
            cached = self._models.get(digest)
        if cached is not None:
            return cached
        if self.serving is not None:
            live = self.serving(digest)
            if live is not None:
                return live
        if path is None:
            path = verified_path(self.cm.registry, ref)
        try:
            model = load_model(ref, path)
        except Exception as exc:
            raise ArtifactError(
                f"artifact {digest} of {ref.name} v{ref.version} does not load: {exc}",
                ref,
                "unloadable",
            ) from None
        with self._lock:
            self._models[digest] = model
        return model

    def cached_explainer(self, model: LoadedModel) -> Explainer | None:
        """The explainer of ``model`` if it is built already (never blocks on building one)."""
        return self._explainers.get(model.ref.artifact_digest)

    def explainer(self, model: LoadedModel) -> Explainer:
        """The explainer of ``model``, built once per artifact (failures are not cached)."""
        digest = model.ref.artifact_digest
        with self._build_lock:
            got = self._explainers.get(digest)
            if got is None:
                snap = model.ref.data_snapshot
                got = explainer_for(
                    model,
                    lambda: self._background(model.ref),
                    snapshot_id=str(snap["id"]) if snap else None,
                )
                self._explainers[digest] = got
        return got

    def _background(self, ref: ModelRef) -> tuple[pd.DataFrame, str]:
        info = ref.data_snapshot
        if not info:
            raise NotExplainable(f"{ref.name} v{ref.version} is not linked to a data snapshot")
        snap = self.cm.store.get_snapshot(str(info["id"]))
        if snap is None or not snap.path:
            raise NotExplainable(
                f"its training snapshot {info['id']} is not in this store "
                "(take it here with chronoml snapshot)"
            )
        try:
            return snapshots.load(snap), snap.id
        except SnapshotError as exc:
            raise NotExplainable(str(exc)) from None
