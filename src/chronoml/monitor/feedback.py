"""Late-arriving labels (feedback) attached to logged decisions.

Labels are append-only: a second label for the same decision is accepted
only as an explicit update, and the earlier value stays in the history.
"""

from __future__ import annotations

import os

from chronoml.domain.feedback import FeedbackError, Label, check_label
from chronoml.domain.snapshot import SnapshotError
from chronoml.store.feedback import history, history_in, labels_of, record
from chronoml.store.snapshots import read_table
from chronoml.timeutil import parse_time

__all__ = [
    "FeedbackError",
    "Label",
    "check_label",
    "history",
    "history_in",
    "labels_of",
    "read_file",
    "record",
]


def read_file(path: str | os.PathLike[str]) -> list[Label]:
    """Labels from a CSV or Parquet file with columns decision_id, label[, time]."""
    try:
        df = read_table(path)
    except SnapshotError as exc:
        raise FeedbackError(str(exc), status=400) from None
    missing = [c for c in ("decision_id", "label") if c not in df.columns]
    if missing:
        raise FeedbackError(
            f"{path}: missing column {missing[0]!r} (need decision_id, label[, time])"
        )
    out = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        t = rec.get("time")
        try:
            observed = parse_time(str(t)) if t is not None and t == t else None
        except ValueError as exc:
            raise FeedbackError(f"{path} row {i + 1}: {exc}", field="time") from None
        label = rec["label"]
        if hasattr(label, "item"):
            label = label.item()
        out.append(Label(str(rec["decision_id"]), label, observed))
    return out
