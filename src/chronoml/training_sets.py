"""Point-in-time training sets built from snapshots and files, stored as snapshots.

Every input is resolved first: a snapshot reference to its snapshot (its data checked
against its id), a path to its table. The join (:func:`chronoml.datasets.build_training_set`)
then checks every column and time, so a bad input is refused before anything is written.
Only then are the inputs that were plain files snapshotted (so the lineage names a
snapshot for each input) and the result stored as a new snapshot whose lineage is the
join spec with its inputs' snapshot ids and the count of unmatched rows per table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from chronoml.context import Context
from chronoml.datasets import DatasetError, FeatureSpec, JoinSpec, build_training_set
from chronoml.domain.snapshot import Snapshot, SnapshotError, content_id
from chronoml.snapshots import resolve
from chronoml.store import snapshots as snapshot_store
from chronoml.timeutil import parse_duration

Source = pd.DataFrame | str | os.PathLike[str]
_OPTION = re.compile(r":(ttl|created_at|entity|time)=([^:]*)$")


@dataclass(frozen=True, eq=False)
class FeatureInput:
    """One feature table as the user names it: a snapshot reference, a path or a frame."""

    name: str
    source: Source
    ttl: int | None = None  # microseconds
    created_at: str | None = None
    entity: str | None = None
    time: str | None = None


def parse_feature(text: str) -> FeatureInput:
    """Parse ``NAME=REF_OR_PATH[:ttl=30d][:created_at=COL][:entity=COL][:time=COL]``."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest:
        raise DatasetError(
            f"--features takes NAME=REF_OR_PATH[:ttl=30d][:created_at=COL], got {text!r}",
            "features",
        )
    options: dict[str, str] = {}
    while m := _OPTION.search(rest):
        options.setdefault(m[1], m[2])
        rest = rest[: m.start()]
    return FeatureInput(
        name.strip(),
        rest,
        ttl=_ttl(options["ttl"], name) if "ttl" in options else None,
        created_at=options.get("created_at") or None,
        entity=options.get("entity") or None,
        time=options.get("time") or None,
    )


def _ttl(value: Any, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise DatasetError(f"ttl of {name!r}: {exc}", f"features.{name}.ttl") from None


def feature_input(name: str, value: Source | Mapping[str, Any] | FeatureInput) -> FeatureInput:
    """A feature table from the Python API: a source, or a mapping with ``source`` and the
    options (``ttl`` as ``"30d"``, a timedelta or microseconds, ``created_at``, ...)."""
    if isinstance(value, FeatureInput):
        return value
    if isinstance(value, Mapping):
        if "source" not in value:
            raise DatasetError(f"feature table {name!r} needs a source", f"features.{name}")
        return FeatureInput(
            name,
            value["source"],
            ttl=_ttl(value.get("ttl"), name),
            created_at=value.get("created_at"),
            entity=value.get("entity"),
            time=value.get("time"),
        )
    return FeatureInput(name, value)


@dataclass(frozen=True)
class _Input:
    """A resolved input: its frame, its snapshot id, and the snapshot if already stored."""

    frame: pd.DataFrame
    snapshot_id: str
    stored: Snapshot | None


def _resolve(ctx: Context, source: Source, fld: str) -> _Input:
    """A snapshot reference or a path (a path that exists wins), read and checked."""
    if isinstance(source, pd.DataFrame):
        return _Input(source, _content_id(source, fld), None)
    text = os.fspath(source)
    if Path(text).is_file():
        try:
            frame = snapshot_store.read_table(text)
        except SnapshotError as exc:
            raise DatasetError(f"{fld}: {exc}", fld) from None
        return _Input(frame, _content_id(frame, fld), None)
    try:
        snap = resolve(ctx.store, text)
    except (LookupError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        raise DatasetError(
            f"{fld}: {text!r} is neither a file nor a snapshot ({message})", fld
        ) from None
    return _Input(snapshot_store.load(snap), snap.id, snap)


def _content_id(frame: pd.DataFrame, fld: str) -> str:
    try:
        return content_id(frame.reset_index(drop=True))[0]
    except SnapshotError as exc:
        raise DatasetError(f"{fld}: {exc}", fld) from None


@dataclass(frozen=True)
class BuiltDataset:
    """A stored training set: its snapshot, rows, unmatched rows per table and lineage."""

    snapshot: Snapshot
    missing: Mapping[str, int]
    lineage: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_dict(),
            "rows": self.snapshot.rows,
            "missing": dict(self.missing),
            "lineage": dict(self.lineage),
        }


def build(
    ctx: Context,
    labels: Source,
    *,
    entity: str,
    time: str,
    features: list[FeatureInput],
    name: str,
    prefix: bool = False,
    actor: str | None = None,
) -> BuiltDataset:
    """Build the point-in-time training set and store it as snapshot ``name``."""
    if not name or not name.strip():
        raise DatasetError("the training set needs a name", "name")
    if not features:
        raise DatasetError("at least one feature table is needed", "features")
    lab = _resolve(ctx, labels, "labels")
    inputs = {f.name: _resolve(ctx, f.source, f"features.{f.name}") for f in features}
    spec = JoinSpec(
        entity=entity,
        time=time,
        features=tuple(
            FeatureSpec(
                name=f.name,
                source=inputs[f.name].frame,
                ttl=f.ttl,
                created_at=f.created_at,
                entity=f.entity,
                time=f.time,
                ref=inputs[f.name].snapshot_id,
            )
            for f in features
        ),
        prefix=prefix,
    )
    ts = build_training_set(lab.frame, spec, labels_ref=lab.snapshot_id)
    # everything checked: the result first (the one write that can still refuse a column
    # type), then the inputs that were files, so the lineage names a snapshot for each
    who = ctx.actor(actor)
    lineage = {**ts.spec_dict(), "missing": dict(ts.missing)}
    try:
        snap = snapshot_store.take(ctx.store, ts.frame, name, actor=who, lineage=lineage)
    except SnapshotError as exc:
        raise DatasetError(f"the joined table cannot be stored: {exc}", "features") from None
    for role, inp in [("labels", lab), *inputs.items()]:
        if inp.stored is None:
            snapshot_store.take(ctx.store, inp.frame, f"{name}.{role}", actor=who)
    return BuiltDataset(snap, dict(ts.missing), snap.lineage or lineage)
