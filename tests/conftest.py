"""Shared fixtures: real SQLite files, a real PostgreSQL schema, a real MLflow store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

PG_ADMIN_URL = os.environ.get(
    "CHRONOML_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_reachable() -> tuple[bool, str]:
    from chronoml.store.database import reachable

    return reachable(PG_ADMIN_URL)


_PG = None


def pg_available() -> bool:
    """PostgreSQL is required in CI; elsewhere its tests skip with the reason."""
    global _PG
    if _PG is None:
        _PG = _pg_reachable()
    ok, why = _PG
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required in CI: {why}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL} ({why}); set CHRONOML_TEST_PG to run these")
    return True


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema of its own, dropped afterwards."""
    pg_available()
    from sqlalchemy import create_engine, text

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _database_url(name: str) -> str:
    """The admin URL with another database (its host, socket and options kept)."""
    from sqlalchemy.engine import make_url

    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to the head once per test process, to clone for each test.

    Migrating a fresh PostgreSQL schema takes about a second (some 170 DDL statements);
    ``CREATE DATABASE ... TEMPLATE`` copies the migrated one in well under that.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from chronoml.store import Store

    pg_available()
    name = "tmpl_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except DBAPIError as exc:  # a role without CREATEDB, say
        admin.dispose()
        why = f"cannot create a database at {PG_ADMIN_URL}: {str(exc.orig).strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(f"{why}; the stores of these tests are databases cloned from a migrated one")
    try:
        s = Store.open(_database_url(name), tmp_path_factory.mktemp("pg-template"))
        try:
            s.upgrade()
        finally:
            s.close()
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def pg_migrated_url(_pg_template: str) -> Iterator[str]:
    """A PostgreSQL database of its own, already migrated to the head, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {_pg_template}"))
    try:
        yield _database_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on both stores (PostgreSQL's already migrated)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'chronoml.db'}"
    pg_available()
    return str(request.getfixturevalue("pg_migrated_url"))


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """A migrated store on ``store_url``, closed after the test."""
    from chronoml.store import Store

    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    yield s
    s.close()


@dataclass(frozen=True)
class Models:
    """Registered versions shared by the session's tests."""

    tracking_uri: str
    name: str
    linked_v1: str
    linked_v2: str
    unlinked_v3: str
    columns: list[str]
    snapshot_id: str


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Train and register three versions once: two linked to snapshots, one not."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import chronoml
    from chronoml.settings import Settings

    root = tmp_path_factory.mktemp("mlflow")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    s = Settings.from_env({}, home=root / "home", mlflow_tracking_uri=tracking)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    exp = mlflow.create_experiment("tests", artifact_location=(root / "artifacts").as_uri())
    data = load_breast_cancer(as_frame=True).frame
    X, y = data.drop(columns=["target"]), data["target"]
    snap = chronoml.snapshot(data, name="cancer", settings=s)

    def register(estimator: object, link: bool) -> str:
        estimator.fit(X, y)  # type: ignore[attr-defined]
        with mlflow.start_run(experiment_id=exp):
            if link:
                chronoml.log_snapshot(snap)
            info = mlflow.sklearn.log_model(
                estimator,
                name="model",
                registered_model_name="cancer",
                signature=infer_signature(X.head(), y.head()),
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                serialization_format="cloudpickle",
            )
        return str(info.registered_model_version)

    v1 = register(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), True)
    v2 = register(GradientBoostingClassifier(n_estimators=20, random_state=0), True)
    v3 = register(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)), False)
    return Models(tracking, "cancer", v1, v2, v3, list(X.columns), snap.id)


@pytest.fixture
def settings(tmp_path: Path, store_url: str, models: Models) -> object:
    from chronoml.settings import Settings

    return Settings.from_env(
        {},
        home=tmp_path / "home",
        store_url=None if store_url.startswith("sqlite") else store_url,
        mlflow_tracking_uri=models.tracking_uri,
    )


@pytest.fixture
def cm(settings: object) -> Iterator[object]:
    from chronoml.service import Chronoml
    from chronoml.store import Store

    store = Store.open(settings.database_url, settings.home)  # type: ignore[attr-defined]
    store.upgrade()
    c = Chronoml(settings, store)  # type: ignore[arg-type]
    yield c
    c.close()
