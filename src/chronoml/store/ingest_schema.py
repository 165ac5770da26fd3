"""The table of ingest blocks: a request of many rows logged as one row (migration 0018)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from chronoml.store.schema import metadata

# A request of many rows as one row; decision i's id is the block's with i in its last 16 bits
ingest_blocks = Table(
    "ingest_blocks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("unit", String(200), nullable=True),
    Column("request_id", String(36), nullable=False),
    Column("layout", String(16), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("num", LargeBinary, nullable=False),  # rows x width bytes
    Column("txt", Text, nullable=True),  # JSON lists of each row's value
    Column("outputs", Text, nullable=False),
    Column("output_num", LargeBinary, nullable=False),  # float64 per row
    Column("output_none", LargeBinary, nullable=True),  # 1 per row without a number
    Column("scores", LargeBinary, nullable=True),  # rows x classes float64
    Column("context", Text, nullable=True),
    Column("erased", LargeBinary, nullable=True),  # 1 per erased row
)
Index("ix_ingest_blocks_endpoint_ts", ingest_blocks.c.endpoint, ingest_blocks.c.ts)
Index("ix_ingest_blocks_unit", ingest_blocks.c.unit)
