"""Point-in-time training sets: each label row joined to the feature values known at its time.

For every label row (entity ``e``, time ``t``) and every feature table, the row used is
the latest one of that entity with ``t - ttl <= time <= t`` (both bounds inclusive) and,
when the table names a ``created_at`` column, ``created_at <= t``: a value recorded after
the label's time is never used; the previous eligible row is used instead. Ties in time
go to the later ``created_at``, then to the row that comes later in the table. Every
label row is kept, in its order, duplicates included; a label row without an eligible
row gets nulls for that table's columns and is counted in ``TrainingSet.missing``.

DuckDB's ASOF join does the matching. It only sees the keys (entity, time, created_at,
row number); the feature values are gathered afterwards by row number, so the engine
never sorts the value columns and only one feature table's values are in memory at a time.

Column names: a feature column keeps its name unless another feature table or the labels
have a column of the same name; then every table's copy of it is named ``TABLE__COLUMN``
(``JoinSpec.prefix=True`` names all of them that way). The labels' columns never change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from chronoml.datasets._columns import (
    TimeType,
    arrow_type,
    entity_kind,
    gather,
    key_array,
    time_type,
    to_arrow,
)
from chronoml.datasets._engine import match
from chronoml.errors import InvalidInput

Source = pd.DataFrame | str | os.PathLike[str]


class DatasetError(InvalidInput):
    """A training set that cannot be built as asked; ``field`` names the bad input."""

    code = "bad_dataset"


@dataclass(frozen=True, eq=False)
class FeatureSpec:
    """One feature table to join.

    ``source`` is a DataFrame or the path of one Parquet file. ``ttl`` is in microseconds
    (``None``: no limit on age). ``created_at`` names the column saying when each row was
    recorded. ``columns`` picks the value columns (default: all but the keys). ``entity``
    and ``time`` name this table's key columns when they differ from the labels'. ``ref``
    is what lineage records for the source (a snapshot id or a path).
    """

    name: str
    source: Source
    ttl: int | None = None
    created_at: str | None = None
    columns: tuple[str, ...] | None = None
    entity: str | None = None
    time: str | None = None
    ref: str | None = None


@dataclass(frozen=True, eq=False)
class JoinSpec:
    """How labels meet features: the labels' entity and time columns, and the tables."""

    entity: str
    time: str
    features: tuple[FeatureSpec, ...]
    prefix: bool = False


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """The joined frame, how many label rows found no row per table, and the join."""

    frame: pd.DataFrame
    missing: Mapping[str, int]
    columns: Mapping[str, Mapping[str, str]]  # table -> {source column: output column}
    spec: JoinSpec
    labels_ref: str | None = None
    engine_version: str = field(default=duckdb.__version__)

    @property
    def rows(self) -> int:
        """Number of rows: always the number of label rows."""
        return len(self.frame)

    def spec_dict(self) -> dict[str, Any]:
        """The join as plain data, for lineage: inputs, keys, TTLs, rules and engine."""
        return {
            "kind": "point_in_time_join",
            "version": 1,
            "engine": {"name": "duckdb", "version": self.engine_version},
            "labels": {
                "ref": self.labels_ref,
                "entity": self.spec.entity,
                "time": self.spec.time,
                "rows": self.rows,
            },
            "features": [
                {
                    "name": f.name,
                    "ref": f.ref if f.ref is not None else _default_ref(f.source),
                    "entity": f.entity or self.spec.entity,
                    "time": f.time or self.spec.time,
                    "ttl_us": f.ttl,
                    "created_at": f.created_at,
                    "columns": dict(self.columns[f.name]),
                }
                for f in self.spec.features
            ],
            "rules": {
                "window": "t - ttl <= time <= t",
                "created_at": "created_at <= t",
                "ties": "later created_at, then later row",
                "unmatched": "null",
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: rows, missing matches per table and the join."""
        return {"rows": self.rows, "missing": dict(self.missing), "spec": self.spec_dict()}


def _default_ref(source: Source) -> str | None:
    return None if isinstance(source, pd.DataFrame) else str(source)


@dataclass
class _Table:
    """A validated input: where it is, its key columns and its value columns."""

    field: str  # prefix of error fields: "labels" or "features.NAME"
    label: str  # how messages name it
    frame: pd.DataFrame | None
    path: str | None
    types: dict[str, pa.DataType]


def _open(source: Source, fld: str, label: str) -> _Table:
    if isinstance(source, pd.DataFrame):
        types = {str(c): arrow_type(source[c]) for c in source.columns}
        return _Table(fld, label, source, None, types)
    if not isinstance(source, str | os.PathLike):
        raise DatasetError(
            f"{label} must be a DataFrame or the path of a Parquet file, "
            f"not {type(source).__name__}",
            fld,
        )
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"{label}: no Parquet file at {str(source)!r}", fld)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{label}: {str(source)!r} is not a Parquet file ({e})", fld) from None
    return _Table(fld, label, None, str(path), {f.name: f.type for f in schema})


def _need(table: _Table, column: str, role: str) -> pa.DataType:
    if column not in table.types:
        have = ", ".join(sorted(table.types)) or "none"
        raise DatasetError(
            f"{table.label} has no {role} column {column!r} (its columns: {have})",
            f"{table.field}.{role}",
        )
    return table.types[column]


def _need_time(table: _Table, column: str, role: str) -> TimeType:
    t = time_type(_need(table, column, role))
    if t is None:
        raise DatasetError(
            f"{table.label}: {role} column {column!r} is {table.types[column]}, not a time "
            "(use a timestamp or date column; pandas.to_datetime converts text)",
            f"{table.field}.{role}",
        )
    return t


def _validate_spec(spec: JoinSpec) -> None:
    if not spec.features:
        raise DatasetError("at least one feature table is needed", "features")
    seen: set[str] = set()
    for f in spec.features:
        if not f.name or not f.name.strip():
            raise DatasetError("a feature table needs a name", "features")
        if f.name in seen:
            raise DatasetError(f"feature table name {f.name!r} is used twice", "features")
        seen.add(f.name)
        if f.ttl is not None and (
            isinstance(f.ttl, bool) or not isinstance(f.ttl, int) or f.ttl < 0
        ):
            raise DatasetError(
                f"ttl of {f.name!r} must be a whole number of microseconds >= 0 or None, "
                f"not {f.ttl!r}",
                f"features.{f.name}.ttl",
            )


def _output_names(
    label_columns: Sequence[str], values: Mapping[str, Sequence[str]], prefix: bool
) -> dict[str, dict[str, str]]:
    """Per table, source column -> output column, by the rule in the module docstring."""
    owners: dict[str, int] = {}
    for cols in values.values():
        for c in cols:
            owners[c] = owners.get(c, 0) + 1
    taken = set(label_columns)
    out: dict[str, dict[str, str]] = {}
    for name, cols in values.items():
        out[name] = {}
        for c in cols:
            clash = prefix or owners[c] > 1 or c in label_columns
            new = f"{name}__{c}" if clash else c
            if new in taken:
                raise DatasetError(
                    f"output column {new!r} of feature table {name!r} clashes with another "
                    "column; rename one of them",
                    f"features.{name}.columns",
                )
            taken.add(new)
            out[name][c] = new
    return out


def build_training_set(
    labels: Source,
    spec: JoinSpec,
    *,
    labels_ref: str | None = None,
    threads: int | None = None,
) -> TrainingSet:
    """Join every label row to each feature table as of the label's time.

    ``labels`` is a DataFrame or a Parquet path; the result keeps its rows, order, index
    and columns and adds the feature columns. Raises ``DatasetError`` (with ``field``) on
    bad input before any work is done. Nothing is written anywhere.
    """
    _validate_spec(spec)
    lab = _open(labels, "labels", "labels")
    ent_kind = entity_kind(_need(lab, spec.entity, "entity"))
    times: list[tuple[str, str, TimeType]] = [
        ("labels", "labels.time", _need_time(lab, spec.time, "time"))
    ]

    tables: list[tuple[FeatureSpec, _Table, list[str]]] = []
    for f in spec.features:
        fld = f"features.{f.name}"
        tab = _open(f.source, fld, f"feature table {f.name!r}")
        ent, tim = f.entity or spec.entity, f.time or spec.time
        kind = entity_kind(_need(tab, ent, "entity"))
        if kind != ent_kind:
            raise DatasetError(
                f"feature table {f.name!r}: entity column {ent!r} holds {kind} values but "
                f"the labels' {spec.entity!r} holds {ent_kind} values",
                f"{fld}.entity",
            )
        times.append((tab.label, f"{fld}.time", _need_time(tab, tim, "time")))
        if f.created_at is not None:
            times.append(
                (tab.label, f"{fld}.created_at", _need_time(tab, f.created_at, "created_at"))
            )
        keys = {ent, tim, f.created_at}
        if f.columns is None:
            cols = [c for c in tab.types if c not in keys]
        else:
            cols = list(f.columns)
            for c in cols:
                _need(tab, c, "columns")
                if c in keys:
                    raise DatasetError(
                        f"feature table {f.name!r}: {c!r} is a key column, not a value column",
                        f"{fld}.columns",
                    )
            if len(set(cols)) != len(cols):
                raise DatasetError(
                    f"feature table {f.name!r} lists a column twice", f"{fld}.columns"
                )
        tables.append((f, tab, cols))

    _check_zones(times)
    unit = "ns" if any(t.unit == "ns" for _, _, t in times) else "us"
    scale = 1000 if unit == "ns" else 1

    label_frame = lab.frame if lab.frame is not None else _read_labels(lab)
    label_cols = [str(c) for c in label_frame.columns]
    names = _output_names(label_cols, {f.name: cols for f, _, cols in tables}, spec.prefix)

    n = len(label_frame)
    con = duckdb.connect(":memory:")
    try:
        # Row order is carried by the row numbers, so DuckDB may reorder freely.
        con.execute("SET preserve_insertion_order = false")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        con.register(
            "lab",
            pa.table(
                {
                    "e": to_arrow(label_frame[spec.entity]),
                    "k": key_array(label_frame[spec.time], unit),
                    "r": pa.array(np.arange(n, dtype=np.int64)),
                }
            ),
        )
        added: dict[str, Any] = {}
        missing: dict[str, int] = {}
        with ThreadPoolExecutor(max_workers=1) as reader:
            for f, tab, cols in tables:
                # The file's values are read while DuckDB matches its keys: both release
                # the GIL, and only this table's values are held at a time.
                values = reader.submit(_read_values, tab, cols)
                pos = _match(con, f, tab, spec, unit, scale, n)
                missing[f.name] = int((pos < 0).sum())
                for c, column in _gather(tab, cols, values.result(), pos).items():
                    added[names[f.name][c]] = column
                del values
    finally:
        con.close()

    frame = label_frame.copy(deep=False)
    if added:
        extra = pd.DataFrame(added, index=label_frame.index, copy=False)
        frame = pd.concat([frame, extra], axis=1)
    return TrainingSet(frame, missing, names, spec, labels_ref)


def _check_zones(times: Sequence[tuple[str, str, TimeType]]) -> None:
    first_label, _, first = times[0]
    for label, fld, t in times[1:]:
        if t.tz != first.tz:

            def say(tz: str | None) -> str:
                return "naive (no time zone)" if tz is None else f"in time zone {tz}"

            raise DatasetError(
                f"time columns mix time zones: {first_label}'s is {say(first.tz)}, "
                f"{label}'s {fld.rsplit('.', 1)[1]} is {say(t.tz)}; convert them to one zone",
                fld,
            )


def _read_labels(tab: _Table) -> pd.DataFrame:
    assert tab.path is not None
    frame: pd.DataFrame = pq.read_table(tab.path).to_pandas()
    return frame


def _read_values(tab: _Table, cols: list[str]) -> pa.Table | None:
    if tab.path is None:
        return None
    return pq.read_table(tab.path, columns=cols)


def _gather(
    tab: _Table, cols: list[str], table: pa.Table | None, pos: np.ndarray
) -> dict[str, pd.api.extensions.ExtensionArray]:
    """Each value column in label order, null where ``pos`` is -1."""
    if tab.frame is not None:
        return {c: gather(tab.frame[c].array, pos) for c in cols}
    assert table is not None
    # Gathered in Arrow before converting, so only label-sized columns reach pandas.
    picked = table.take(pa.array(pos, mask=pos < 0))
    del table
    frame = picked.to_pandas(types_mapper=_nullable, self_destruct=True)
    return {c: frame[c].array for c in cols}


def _nullable(t: pa.DataType) -> Any:
    # The same dtypes a DataFrame source gets from gather(): a miss is a null, not a cast.
    if pa.types.is_integer(t):
        return pd.api.types.pandas_dtype(str(t).replace("int", "Int").replace("uInt", "UInt"))
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _match(
    con: duckdb.DuckDBPyConnection,
    f: FeatureSpec,
    tab: _Table,
    spec: JoinSpec,
    unit: str,
    scale: int,
    n: int,
) -> np.ndarray:
    """For each label row, the row number of its feature row in this table, or -1."""
    ent, tim = f.entity or spec.entity, f.time or spec.time
    if tab.frame is not None:
        df = tab.frame
        cols: dict[str, pa.Array] = {
            "e": to_arrow(df[ent]),
            "k": key_array(df[tim], unit),
            "r": pa.array(np.arange(len(df), dtype=np.int64)),
        }
        if f.created_at is not None:
            cols["c"] = key_array(df[f.created_at], unit)
        con.register("feat", pa.table(cols))
        source, rows = "feat", len(df)
    else:
        assert tab.path is not None
        epoch = "epoch_ns" if unit == "ns" else "epoch_us"

        def key(col: str) -> str:
            # DATE columns count as midnight; epoch_* needs a timestamp for them.
            t = time_type(tab.types[col])
            expr = f"CAST({_q(col)} AS TIMESTAMP)" if t is not None and t.date else _q(col)
            return f"{epoch}({expr})"

        created = f", {key(f.created_at)} AS c" if f.created_at is not None else ""
        path = tab.path.replace("'", "''")
        rows = pq.read_metadata(tab.path).num_rows
        source = (
            f"(SELECT {_q(ent)} AS e, {key(tim)} AS k{created}, file_row_number AS r "
            f"FROM read_parquet('{path}', file_row_number = true))"
        )
    steps = (86_400, 1, 10**-3, 10**-6, 10**-9)  # a day, a second, ms, us, ns
    per_second = 10**9 if unit == "ns" else 10**6
    granularities = tuple(int(per_second * g) for g in steps if per_second * g >= 1)
    try:
        return match(
            con,
            source,
            rows,
            n,
            None if f.ttl is None else int(f.ttl) * scale,
            f.created_at is not None,
            granularities,
        )
    finally:
        if tab.frame is not None:
            con.unregister("feat")
