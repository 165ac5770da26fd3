"""Configuration, read once into a typed object and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything chronoml needs to know about where things live.

    ``home`` holds the embedded store (SQLite), the MLflow store and
    artifacts, snapshot copies and archived models. ``store_url`` overrides
    the chronoml database (e.g. ``postgresql+psycopg://host/db``);
    ``mlflow_tracking_uri`` overrides MLflow's.
    """

    home: Path = field(default_factory=lambda: Path(".chronoml"))
    store_url: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    # access: who may reach the server and what they may do (see chronoml.auth)
    bind_host: str = "127.0.0.1"  # the address served on; allowed as a Host header
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted besides the bind address
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed to make changes
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For is believed
    open_predict: bool = False  # predict without credentials (recorded as anonymous)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks: str | None = None  # a JWKS file path or URL
    oidc_roles_claim: str = "roles"
    allow_project_sources: tuple[str, ...] = ()  # URI prefixes of remote MLflow projects
    allow_webhook_hosts: tuple[str, ...] = ()  # private or loopback hosts webhooks may reach
    data_roots: tuple[str, ...] = ()  # folders retraining data paths must lie in
    model_formats: tuple[str, ...] = ()  # flavors a deploy may load (empty: any)
    poll_interval_s: float = 0.25
    max_body_bytes: int = 16 * 1024 * 1024
    max_rows: int = 10_000
    # serving: micro-batching, isolation, protocols
    max_batch_rows: int = 256  # rows one predict call takes at most
    max_wait_ms: float = (
        0.0  # extra wait for a batch to fill (0: batches form while the model is busy)
    )
    # how long the decision log waits before a commit for more rows (0: commit what is queued)
    commit_wait_ms: float = 0.0
    max_queue_rows: int = 20_000  # rows waiting per variant before requests get 503
    # a request of at least this many rows is logged as one ingest block (None: always rows)
    ingest_block_rows: int | None = 16
    predict_timeout_s: float = 10.0  # a request whose model has not answered by then gets 504
    default_endpoint: str | None = None  # the endpoint /invocations serves
    monitor_interval_s: float = 300.0  # 0 turns scheduled monitoring off
    monitor_window_us: int = 3_600_000_000
    monitor_mlflow: bool = True  # mirror monitoring results to MLflow as metrics
    retrain_interval_s: float = 10.0  # how often the server advances retraining jobs (0: never)
    # evidence: the log's signing key (default $CHRONOML_HOME/signing.key) and checkpoints
    signing_key: Path | None = None
    checkpoint_interval_s: float = 3600.0  # how often the server signs a checkpoint (0: never)
    checkpoint_dir: Path | None = None  # where the server also publishes each checkpoint
    checkpoint_webhooks: tuple[str, ...] = ()  # URLs each checkpoint is POSTed to (outbox)
    tsa_url: str | None = None  # an RFC 3161 authority that timestamps each checkpoint
    # PostgreSQL time partitions of the decision log: how often the server makes day
    # partitions ahead (0: never) and, if set, after how long empty ones are detached
    partition_interval_s: float = 3600.0
    detach_after_us: int | None = None
    # archive: decisions older than archive_after_us move to Parquet files (0: never)
    archive_after_us: int = 0
    archive_to: str | None = None  # s3://bucket/prefix or file:///folder (default: home/archive)
    archive_s3_endpoint_url: str | None = None
    archive_access_key: str | None = None  # a ${ENV} reference, never the key
    archive_secret_key: str | None = None
    archive_profile: str | None = None
    # privacy: the secret keyed hashes use (default $CHRONOML_HOME/privacy.key; every
    # server of one store needs the same file), and how long raw inputs are kept
    privacy_key: Path | None = None
    retain_inputs_us: int | None = None  # None: kept until erased
    # tree ensembles served below their per-call checks when a probe at load shows
    # identical outputs (CHRONOML_FAST_MODEL_CALLS=0 keeps every model on its own call)
    fast_model_calls: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        e = os.environ if env is None else env
        values: dict[str, object] = {
            "home": Path(e.get("CHRONOML_HOME", ".chronoml")),
            "store_url": e.get("CHRONOML_STORE") or None,
            "mlflow_tracking_uri": e.get("MLFLOW_TRACKING_URI") or None,
            "mlflow_registry_uri": e.get("MLFLOW_REGISTRY_URI") or None,
            "oidc_issuer": e.get("CHRONOML_OIDC_ISSUER") or None,
            "oidc_audience": e.get("CHRONOML_OIDC_AUDIENCE") or None,
            "oidc_jwks": e.get("CHRONOML_OIDC_JWKS") or None,
            "signing_key": Path(e["CHRONOML_SIGNING_KEY"])
            if e.get("CHRONOML_SIGNING_KEY")
            else None,
            "privacy_key": Path(e["CHRONOML_PRIVACY_KEY"])
            if e.get("CHRONOML_PRIVACY_KEY")
            else None,
            "fast_model_calls": _flag(e, "CHRONOML_FAST_MODEL_CALLS", True),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        home = Path(str(values["home"])).expanduser().resolve()
        values["home"] = home
        return cls(**values)  # type: ignore[arg-type]

    @property
    def database_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'chronoml.db'}"

    @property
    def signing_key_path(self) -> Path:
        """Where the evidence log's Ed25519 signing key is kept."""
        return self.signing_key or self.home / "signing.key"

    @property
    def privacy_key_path(self) -> Path:
        """Where the secret of keyed hashes (hashed features, unit keys) is kept."""
        return self.privacy_key or self.home / "privacy.key"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def embedded(self) -> bool:
        return self.store_url is None or self.store_url.startswith("sqlite")


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _ON or raw in _OFF:
        return raw in _ON
    raise ValueError(f"{name} must be 1 or 0 (true or false), not {env[name]!r}")
