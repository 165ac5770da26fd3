"""The MLflow bridge: URIs, versions, runs, artifacts and their digests.

MLflow stays the registry and run store; chronoml reads through its client.
``mlflow`` is imported lazily (it costs about 1.6 s) so the CLI starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chronoml.domain.ledger import ModelRef
from chronoml.domain.snapshot import Snapshot
from chronoml.registry.models import schema_from_mlflow
from chronoml.settings import Settings
from chronoml.timeutil import iso

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

SNAPSHOT_TAG = "chronoml.snapshot.id"
CARD_FOLDER = "chronoml/model_cards"
INTENDED_USE_TAG = "intended_use"
SNAPSHOT_NAME_TAG = "chronoml.snapshot.name"
SNAPSHOT_ROWS_TAG = "chronoml.snapshot.rows"
SNAPSHOT_CREATED_TAG = "chronoml.snapshot.created_at"
CODE_VERSION_TAG = "chronoml.code_version"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))/?$")


class RegistryError(LookupError):
    """A model URI that cannot be resolved, or an artifact that cannot be trusted."""


def quiet_mlflow_env() -> None:
    """Turn MLflow's telemetry off for this process and every child it starts."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    # MLflow warns about its own deprecations at import; they are not ours to fix.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure(settings: Settings) -> None:
    """Point the ``mlflow`` client of this process at chronoml's MLflow store."""
    quiet_mlflow_env()
    # lazy: mlflow costs 1.6 s to import
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)


def setup_mlflow(experiment: str = "chronoml", settings: Settings | None = None) -> str:
    """Configure MLflow for training runs chronoml can deploy; returns the tracking URI.

    Uses ``MLFLOW_TRACKING_URI`` when set, else the SQLite store inside
    ``CHRONOML_HOME``, and creates ``experiment`` with its artifacts in the
    home folder (not in ``./mlruns`` of the current directory).
    """
    s = settings or Settings.from_env()
    configure(s)
    # lazy: mlflow costs 1.6 s to import
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if s.mlflow_tracking_uri is None:
            location = (s.artifact_root / experiment).as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return s.tracking_uri


def log_snapshot(snap: Snapshot, context: str = "training", *, tags: bool = True) -> None:
    """Link the active MLflow run (and every version it registers) to ``snap``.

    Tags the run with the full snapshot id and logs the snapshot as a run
    input. MLflow's dataset digest column holds at most 36 characters, so it
    gets the first 32 hex digits; the tags carry the full id. The run's code
    version is recorded too, unless it has one: MLflow's git commit tag, else
    the commit of the git checkout holding the running script. ``tags=False``
    logs the input only, leaving the run's link as it is.
    """
    # lazy: mlflow costs 1.6 s to import
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "log_snapshot needs an active MLflow run: call it inside mlflow.start_run()"
        )
    if tags:
        values = {
            SNAPSHOT_TAG: snap.id,
            SNAPSHOT_NAME_TAG: snap.name,
            SNAPSHOT_ROWS_TAG: str(snap.rows),
            SNAPSHOT_CREATED_TAG: str(snap.created_at),
        }
        have = mlflow.get_run(run.info.run_id).data.tags
        if CODE_VERSION_TAG not in have:
            # lazy: lineage imports this module, so it cannot be imported at the top
            from chronoml.registry.lineage import code_version_of

            code = have.get(GIT_COMMIT_TAG) or code_version_of()
            if code:
                values[CODE_VERSION_TAG] = code
        mlflow.set_tags(values)
    if snap.path:
        with warnings.catch_warnings():
            # MLflow registers the local-file source twice and says so; harmless
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(Path(snap.path).as_uri())
        dataset = MetaDataset(source=source, name=snap.name, digest=snap.id.split(":", 1)[1][:32])  # type: ignore[abstract]
        mlflow.log_input(dataset, context=context, tags={SNAPSHOT_TAG: snap.id})


def artifact_digest(folder: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> str:
    """sha256 over every file of an artifact folder: relative path, size, content hash.

    ``exclude`` names top-level files left out (a lineage file written beside them).
    """
    root = Path(folder)
    if not root.is_dir():
        raise RegistryError(f"artifact folder {root} does not exist")
    h = hashlib.sha256(b"chronoml.artifact.v1\x00")
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in exclude
    )
    for p in files:
        rel = p.relative_to(root).as_posix().encode()
        fh = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        h.update(len(rel).to_bytes(8, "little") + rel)
        h.update(p.stat().st_size.to_bytes(8, "little"))
        h.update(fh.digest())
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Resolved:
    """A model URI resolved to one registered version, with its lineage."""

    ref: ModelRef
    linked: bool  # whether the version's run is linked to a data snapshot
    archive: Path


class Registry:
    """Reads MLflow through its client and keeps verified copies of deployed models."""

    def __init__(self, settings: Settings, client: MlflowClient | None = None) -> None:
        self.settings = settings
        if client is None:
            configure(settings)
            # lazy: mlflow costs 1.6 s to import
            from mlflow.tracking import MlflowClient

            client = MlflowClient(settings.tracking_uri, settings.registry_uri)
        self.client = client
        self.archive_root = settings.home / "models"

    def resolve(self, uri: str) -> Resolved:
        """Resolve ``models:/name/N`` or ``models:/name@alias``, archive and digest it."""
        # lazy: mlflow costs 1.6 s to import
        from mlflow.exceptions import MlflowException

        m = _URI.match(uri.strip())
        if m is None:
            raise RegistryError(
                f"{uri!r} is not a registered-model URI; use models:/NAME/VERSION or "
                "models:/NAME@ALIAS (register the model first: chronoml deploys versions)"
            )
        name = m["name"]
        try:
            if m["alias"]:
                mv = self.client.get_model_version_by_alias(name, m["alias"])
            elif m["version"] == "latest":
                versions = self.client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise RegistryError(f"model URI {uri} not found: {name!r} has no versions")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                mv = self.client.get_model_version(name, m["version"])
        except MlflowException as exc:
            raise RegistryError(f"model URI {uri} not found: {exc.message}") from None
        tags: dict[str, str] = {}
        if mv.run_id:
            try:
                tags = dict(self.client.get_run(mv.run_id).data.tags)
            except MlflowException:
                tags = {}
        snapshot: dict[str, Any] | None = None
        if SNAPSHOT_TAG in tags:
            created = tags.get(SNAPSHOT_CREATED_TAG)
            snapshot = {
                "id": tags[SNAPSHOT_TAG],
                "name": tags.get(SNAPSHOT_NAME_TAG),
                "rows": int(tags[SNAPSHOT_ROWS_TAG]) if SNAPSHOT_ROWS_TAG in tags else None,
                "created_at": iso(int(created)) if created else None,
            }
        code_version = tags.get(CODE_VERSION_TAG) or tags.get(GIT_COMMIT_TAG)
        source = f"models:/{name}/{mv.version}"
        archive, digest = self._archive(source)
        ref = ModelRef(
            name=name,
            version=str(mv.version),
            run_id=mv.run_id,
            artifact_digest=digest,
            artifact_uri=self.client.get_model_version_download_uri(name, str(mv.version)),
            data_snapshot=snapshot,
            code_version=code_version,
        )
        return Resolved(ref=ref, linked=snapshot is not None, archive=archive)

    def _archive(self, source: str) -> tuple[Path, str]:
        """Copy the artifact into the archive, named by its digest; return both."""
        # lazy: mlflow costs 1.6 s to import
        import mlflow.artifacts

        self.archive_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.archive_root, prefix=".incoming-"))
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp))
            )
            digest = artifact_digest(local)
            dest = self.archive_root / digest.split(":", 1)[1]
            if not dest.exists():
                os.replace(local, dest)
            return dest, digest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def log_metrics(self, run_id: str, metrics: dict[str, float], ts_ms: int, step: int) -> None:
        """Log ``metrics`` to an MLflow run in one call (nothing when empty)."""
        # lazy: mlflow costs 1.6 s to import
        from mlflow.entities import Metric

        if metrics:
            batch = [Metric(k, v, ts_ms, step) for k, v in metrics.items()]
            self.client.log_batch(run_id, metrics=batch)

    def log_card(
        self, run_id: str, endpoint: str, card: dict[str, Any], markdown: str, page: str
    ) -> list[str]:
        """Store a model card (one per endpoint the version serves) as artifacts of
        ``run_id``; returns their artifact paths."""
        folder = f"{CARD_FOLDER}/{endpoint}"
        files = {
            f"{folder}/model_card.json": json.dumps(card, indent=2, default=str),
            f"{folder}/model_card.md": markdown,
            f"{folder}/model_card.html": page,
        }
        for path, text in files.items():
            self.client.log_text(run_id, text, path)
        return list(files)

    def read_card(self, run_id: str, endpoint: str) -> dict[str, Any] | None:
        """The model card stored for ``endpoint`` in ``run_id``, or None when there is none."""
        # lazy: mlflow costs 1.6 s to import
        from mlflow.exceptions import MlflowException

        path = f"{CARD_FOLDER}/{endpoint}/model_card.json"
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except (MlflowException, OSError):
                return None
            got: dict[str, Any] = json.loads(Path(local).read_text())
            return got

    def intended_use(self, ref: ModelRef) -> str | None:
        """What the version is for, as its owner wrote it: the registered version's
        description, else its run's ``intended_use`` tag."""
        # lazy: mlflow costs 1.6 s to import
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(ref.name, ref.version)
            if mv.description:
                return str(mv.description)
            if ref.run_id:
                tag = self.client.get_run(ref.run_id).data.tags.get(INTENDED_USE_TAG)
                return str(tag) if tag else None
        except MlflowException:
            return None
        return None

    def fetch(self, ref: ModelRef) -> Path:
        """The archived artifact for ``ref``, its digest checked.

        Falls back to downloading from MLflow when this machine has no
        archived copy; either way the bytes must match the recorded digest.
        """
        dest = self.archive_root / ref.artifact_digest.split(":", 1)[1]
        if not dest.exists():
            _, _ = self._archive(f"models:/{ref.name}/{ref.version}")
        if not dest.exists():
            raise RegistryError(
                f"artifact of {ref.name} v{ref.version} no longer matches the digest recorded "
                f"at deploy ({ref.artifact_digest}); refusing to load it"
            )
        found = artifact_digest(dest)
        if found != ref.artifact_digest:
            raise RegistryError(
                f"artifact {dest} of {ref.name} v{ref.version} fails its digest check: "
                f"recorded {ref.artifact_digest}, found {found}"
            )
        return dest

    def input_columns(self, ref: ModelRef) -> list[str] | None:
        """The input column names of ``ref``'s signature; None when it has none."""
        # lazy: mlflow costs 1.6 s to import
        from mlflow.models import Model

        model = Model.load(str(self.fetch(ref)))
        schema = schema_from_mlflow(model.get_input_schema())  # type: ignore[no-untyped-call]
        return [c for c, _ in schema] if schema is not None else None


def ensure_experiment(settings: Settings, experiment: str) -> None:
    """Create the training experiment with its artifacts in chronoml's home (not ./mlruns)."""
    # lazy: mlflow costs 1.6 s to import
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    if client.get_experiment_by_name(experiment) is None:
        location = (settings.artifact_root / experiment).as_uri()
        try:
            client.create_experiment(experiment, artifact_location=location)
        except Exception:  # created by a concurrent job in between
            if client.get_experiment_by_name(experiment) is None:
                raise
