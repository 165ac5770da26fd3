"""The archive's tables: decisions moved out of the database into content-addressed
Parquet files, how far each endpoint is archived, and how the archiver is doing."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    exists,
    select,
)

from chronoml.store.schema import metadata

# migration 0013
# Decisions moved out of the database into content-addressed Parquet files
# (one endpoint and input layout each); the evidence log commits each file.
archive_files = Table(
    "archive_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("endpoint", String(200), nullable=False),
    Column("layout", String(16), nullable=False),
    Column("ts_min", BigInteger, nullable=False),
    Column("ts_max", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("min_id", String(36), nullable=False),
    Column("max_id", String(36), nullable=False),
    Column("target", Text, nullable=False),  # JSON: URL, endpoint URL, credential references
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_archive_files_endpoint", archive_files.c.endpoint, archive_files.c.ts_max)
Index("ix_archive_files_ids", archive_files.c.min_id, archive_files.c.max_id)

# Every decision of the endpoint with ts < archived_to is in archive files.
archive_marks = Table(
    "archive_marks",
    metadata,
    Column("endpoint", String(200), primary_key=True),
    Column("archived_to", BigInteger, nullable=False),
)

# One row: how the background archiver is doing (failures back it off).
archive_state = Table(
    "archive_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", BigInteger, nullable=True),
    Column("last_success_at", BigInteger, nullable=True),
    Column("next_attempt_at", BigInteger, nullable=True),
)

# migration 0017
# An archive file rewritten without erased inputs: the new file holds the same decisions
# (ids, times, outputs, commitments), is committed by a new ``archive`` entry, and replaces
# the old one for every reader; the old file's row and entry stay (the log is append-only).
# ``erased_before``: a retention rewrite left no input older than this in the new file.
# ``old_deleted_at``: when the old object was deleted from its store (NULL: not yet).
archive_replacements = Table(
    "archive_replacements",
    metadata,
    Column("old_sha256", String(64), primary_key=True),
    Column("new_sha256", String(64), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("erased_before", BigInteger, nullable=True),
    Column("replaced_at", BigInteger, nullable=False),
    Column("old_deleted_at", BigInteger, nullable=True),
)
Index("ix_archive_replacements_new", archive_replacements.c.new_sha256)

# A file retention found holding no input older than ``erased_before`` (they were erased
# before it was archived): the next retention pass skips it unread.
archive_cleared = Table(
    "archive_cleared",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("erased_before", BigInteger, nullable=False),
)

# migration 0021
# Which unit keys an archive file holds (``chronoml.domain.archive.unit_index``: their
# hashes sorted, end to end), so erasing a subject opens only the files that may hold it.
# The file's evidence leaf commits the index's digest. A file archived before 0021 has
# none: an erasure reads its unit column instead.
archive_units = Table(
    "archive_units",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("units", LargeBinary, nullable=False),
)


def live() -> ColumnElement[bool]:
    """Archive files not replaced by a rewrite: the ones readers use."""
    R = archive_replacements
    return ~exists(select(R.c.old_sha256).where(R.c.old_sha256 == archive_files.c.sha256))
