"""Storage adapters: schema, migrations, and every SQL statement, over SQLite or PostgreSQL."""

from chronoml.errors import StoreError
from chronoml.store.database import HEAD_REVISION, Store

__all__ = ["HEAD_REVISION", "Store", "StoreError"]
