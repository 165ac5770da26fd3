"""One store, one MLflow registry and the settings they came from: what every feature works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from chronoml.auth.roles import Principal
from chronoml.errors import StoreError
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

        A brand-new embedded home is created on first use, unless
        ``create_embedded`` is False (commands that only read): then a missing
        store is a :class:`StoreError` naming where it was looked for. An existing store
        is never migrated implicitly: that is ``chronoml db upgrade``.
        """
        s = settings or Settings.from_env()
        db = s.home / "chronoml.db"
        fresh = s.store_url is None and (not db.exists() or not db.stat().st_size)
        if fresh and not create_embedded:
            # a command that only reads must not leave an empty store behind
            raise StoreError(
                f"no chronoml store at {s.home} (CHRONOML_HOME); deploy something or run "
                "chronoml db upgrade"
            )
        store = Store.open(s.database_url, s.home)
        if s.embedded and s.mlflow_tracking_uri is None:
            private_home(s.home, s.home / "mlflow.db")
        try:
            if create_embedded and fresh:
                store.upgrade()
            store.check_schema()
        except StoreError as exc:
            store.close()
            where = s.store_url.split("@")[-1] if s.store_url else str(s.home)
            raise StoreError(f"{exc.message} (store: {where})", exc.field) from None
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
