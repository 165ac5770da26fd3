"""One store, one MLflow registry and the settings they came from: what every feature works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from chronoml.auth.roles import Principal
from chronoml.registry import Registry
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store.database import private_home


@dataclass
class Context:
    """An open store with its registry; features take this, the facade extends it.

    >>> ctx = Context.open()                        # CHRONOML_HOME / CHRONOML_STORE
    """

    settings: Settings
    store: Store
    _registry: Registry | None = None
    layouts: D.Layouts = field(init=False)
    _os_actor: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.layouts = D.Layouts(self.store)

    @classmethod
    def open(cls, settings: Settings | None = None, *, create_embedded: bool = True) -> Self:
        """Open the configured store; it must be at the current schema.

        A brand-new embedded home is created on first use. An existing store
        is never migrated implicitly: that is ``chronoml db upgrade``.
        """
        s = settings or Settings.from_env()
        store = Store.open(s.database_url, s.home)
        if s.embedded and s.mlflow_tracking_uri is None:
            private_home(s.home, s.home / "mlflow.db")
        try:
            db = s.home / "chronoml.db"
            if (
                create_embedded
                and s.store_url is None
                and (not db.exists() or not db.stat().st_size)
            ):
                store.upgrade()
            store.check_schema()
        except Exception:
            store.close()
            raise
        return cls(s, store)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry

    def close(self) -> None:
        self.store.close()

    def actor(self, actor: str | None = None) -> str:
        """Who a change is recorded as: the caller's principal, else this process's OS user.

        The CLI and the Python API open the store directly: whoever can do
        that is recorded by their operating-system user and host (and their
        database role on PostgreSQL), never by a name they choose.
        """
        if actor:
            return actor
        if self._os_actor is None:
            try:
                self._os_actor = Principal.os_user(self.store.database_role()).actor
            except (KeyError, OSError):
                self._os_actor = "os:unknown"
        return self._os_actor
