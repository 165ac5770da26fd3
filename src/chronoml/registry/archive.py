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
from pathlib import Path
from typing import TYPE_CHECKING

from chronoml.domain.ledger import ModelRef
from chronoml.registry import RegistryError, artifact_digest

if TYPE_CHECKING:
    import pandas as pd

    from chronoml.explain.explainers import Explainer
    from chronoml.registry.models import LoadedModel
    from chronoml.service import Chronoml


class ArtifactError(RegistryError):
    """A model artifact that is missing, or whose bytes are not the ones deployed."""

    def __init__(self, message: str, ref: ModelRef, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.reason = reason  # "missing" or "tampered"


class DecisionModelError(LookupError):
    """The ledger does not say which model made a decision."""


def verified_path(cm: Chronoml, ref: ModelRef) -> Path:
    """The archived artifact of ``ref``, its bytes checked against the recorded digest."""
    hexdigest = ref.artifact_digest.split(":", 1)[-1]
    dest = cm.registry.archive_root / hexdigest
    if dest.is_dir():
        found = artifact_digest(dest)
        if found != ref.artifact_digest:
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} fails its digest "
                f"check: the archived copy {dest} hashes to {found}; refusing to use it",
                ref,
                "tampered",
            )
        return dest
    return _from_mlflow(cm, ref, dest)


def _from_mlflow(cm: Chronoml, ref: ModelRef, dest: Path) -> Path:
    """No archived copy on this machine: take MLflow's, if its bytes are the recorded ones."""
    import os
    import shutil
    import tempfile

    import mlflow.artifacts

    cm.registry.archive_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cm.registry.archive_root, prefix=".incoming-"))
    try:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{ref.name}/{ref.version}", dst_path=str(tmp)
                )
            )
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            local, why = None, first
        else:
            why = "MLflow has no files for it"
        if local is None or not (local / "MLmodel").is_file():
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} is missing: no "
                f"archived copy at {dest} and none from MLflow ({why})",
                ref,
                "missing",
            )
        found = artifact_digest(local)
        if found != ref.artifact_digest:
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} fails its digest "
                f"check: there is no archived copy and MLflow's hashes to {found}; refusing to "
                "use it",
                ref,
                "tampered",
            )
        if not dest.exists():
            os.replace(local, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Models:
    """Loads archived models (digest checked on each use) and caches loads and explainers.

    ``serving`` may return the instance a gateway already serves for a
    digest, so an explanation uses the very object that decided.
    """

    def __init__(
        self, cm: Chronoml, serving: Callable[[str], LoadedModel | None] | None = None
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
            from chronoml.store import ledger as SL

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
        from chronoml.registry.models import load_model

        path = verified_path(self.cm, ref) if verify else None
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
            path = verified_path(self.cm, ref)
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
        from chronoml.explain.explainers import explainer_for

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
        from chronoml.domain.snapshot import SnapshotError
        from chronoml.explain.explainers import NotExplainable
        from chronoml.store import snapshots

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
