"""Storage adapters: schema, migrations, and queries over SQLite or PostgreSQL."""

from chronoml.store.database import HEAD_REVISION, Store, StoreError

__all__ = ["HEAD_REVISION", "Store", "StoreError"]
