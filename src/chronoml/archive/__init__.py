"""Archiving old decisions to Parquet files in an object store, on demand or in the background."""

from chronoml.archive.runner import Archiver, run, target_from_settings

__all__ = ["Archiver", "run", "target_from_settings"]
