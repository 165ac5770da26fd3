"""Training data read by a query: from chronoml's own database, or one a data source names."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import create_engine, text

from chronoml.store.database import Store


def read_query(store: Store, query: str, url: str | None = None) -> pd.DataFrame:
    """The result of ``query`` as a frame, run on ``url`` (default: chronoml's database)."""
    engine = create_engine(url) if url else store.engine
    try:
        with engine.connect() as conn:
            return pd.read_sql(text(query), conn)
    finally:
        if url:
            engine.dispose()
