"""What retraining an endpoint means: its entrypoint, data, policy and schedule.

One configuration per endpoint (stored by :mod:`chronoml.store.retrain_configs`).
Every job keeps a copy of the configuration it started with, so changing it
never changes a running job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from chronoml.domain.challenger import Policy, PolicyError
from chronoml.errors import InvalidInput

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_PARAM = re.compile(r"^[A-Za-z_][\w.-]*$")
DEFAULT_TIMEOUT_US = 30 * 60 * 1_000_000


class ConfigError(InvalidInput):
    """A retraining setting that cannot work; ``field`` names it."""


@dataclass(frozen=True)
class Entrypoint:
    """The training code: an MLflow Project folder or a Python callable.

    A project runs as ``mlflow run DIR -e ENTRY -P data_version=SNAPSHOT_ID
    -P k=v ... --env-manager local``; a callable ``module:function`` is called
    as ``function(data_version=SNAPSHOT_ID, **params)`` in a child process
    started in ``workdir`` (which is also put on its import path).
    """

    kind: str  # "project" or "callable"
    target: str  # the project folder, or module:function
    params: Mapping[str, str] = field(default_factory=dict)
    entry_point: str = "main"
    workdir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("project", "callable"):
            raise ConfigError("the entrypoint is a project or a callable", "entrypoint")
        if self.kind == "callable" and not _CALLABLE.match(self.target):
            raise ConfigError(f"--callable takes module:function, got {self.target!r}", "callable")
        if self.kind == "project" and not self.target:
            raise ConfigError("--project takes the project's folder", "project")
        for k in self.params:
            if not _PARAM.match(k) or k == "data_version":
                raise ConfigError(
                    f"bad parameter name {k!r} (data_version is set by chronoml)", "params"
                )


@dataclass(frozen=True)
class DataSource:
    """Where fresh training data comes from: a CSV/Parquet path or a SQL query."""

    path: str | None = None
    query: str | None = None
    query_url: str | None = None  # the database the query runs on; None: chronoml's store
    name: str = "training"  # the snapshot's name

    def __post_init__(self) -> None:
        if (self.path is None) == (self.query is None):
            raise ConfigError("give the training data as --data PATH or --query SQL", "data")


@dataclass(frozen=True)
class Holdout:
    """A fixed labelled data set the new version must do well on before it is deployed.

    It fails validation when its score on ``metric`` is worse than the
    champion's by more than the policy's margin, or below ``min_score``.
    """

    path: str
    label_column: str
    min_score: float | None = None


@dataclass(frozen=True)
class RetrainConfig:
    """Everything a retraining job of ``endpoint`` needs."""

    endpoint: str
    entrypoint: Entrypoint
    data: DataSource
    policy: Policy = field(default_factory=Policy)
    model: str | None = None  # the registered model it trains (default: the champion's)
    timeout_us: int = DEFAULT_TIMEOUT_US
    holdout: Holdout | None = None
    every_us: int | None = None  # on a schedule: a job this often

    def __post_init__(self) -> None:
        if self.timeout_us <= 0:
            raise ConfigError("timeout must be positive", "timeout")
        if self.every_us is not None and self.every_us < 60_000_000:
            raise ConfigError("a schedule runs at most once a minute", "every")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["entrypoint"]["params"] = dict(self.entrypoint.params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RetrainConfig:
        for key in ("entrypoint", "data"):
            if not isinstance(d.get(key), Mapping):
                raise ConfigError(f"{key} must be an object", key)
        for key in ("policy", "holdout"):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise ConfigError(f"{key} must be an object", key)
        for key in ("timeout_us", "every_us"):
            v = d.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v > 2**62):
                raise ConfigError(f"{key} must be an integer of microseconds", key)
        if d.get("model") is not None and not isinstance(d["model"], str):
            raise ConfigError("model must be a string", "model")
        try:
            e = dict(d["entrypoint"])
            h = d.get("holdout")
            return cls(
                endpoint=str(d["endpoint"]),
                entrypoint=Entrypoint(**e),
                data=DataSource(**dict(d["data"])),
                policy=Policy.from_dict(d.get("policy") or {}),
                model=d.get("model"),
                timeout_us=int(d.get("timeout_us", DEFAULT_TIMEOUT_US)),
                holdout=Holdout(**dict(h)) if h else None,
                every_us=d.get("every_us"),
            )
        except PolicyError as exc:
            raise ConfigError(exc.message, exc.field) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"bad retraining configuration: {exc}") from None
