"""Writing one archive file: put under its digest, read back, checked before any commit.

A file is written to the object store under the sha256 of its bytes, read back and
compared byte for byte, then decoded again and compared column by column with the
table it was written from. Only a file that passes all three is handed to the
archive's commit (:mod:`chronoml.store.archive`), which is when rows leave the
database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chronoml.domain.archive import ArchiveError, FileLeaf, file_name, index_digest, unit_index
from chronoml.store import archive_columns as AC
from chronoml.store import archive_parquet as AP
from chronoml.store.archive_objects import Objects

if TYPE_CHECKING:
    from chronoml.store.decisions import Layouts


@dataclass
class Written:
    """One file written, read back and checked, not yet committed."""

    leaf: FileLeaf
    size: int
    units: bytes | None = None  # its unit index (None: a file without one)


def put_checked(objs: Objects, data: bytes) -> tuple[str, bytes]:
    """Put a file's bytes under their digest and read them back (digest checked)."""
    sha = hashlib.sha256(data).hexdigest()
    name = file_name(sha)
    objs.put(name, data)
    back = objs.get(name)
    # the bytes read back are those hashed, byte for byte: so their digest is ``sha``
    # (a comparison costs a tenth of hashing them again)
    if back != data:
        raise ArchiveError(f"archive file {name} read back with another digest", "archive")
    return sha, back


def write_file(
    objs: Objects, endpoint: str, layout: str, part: AC.Chunk, layouts: Layouts
) -> Written:
    """Write a chunk (one layout, time order) as a file, read it back and check it."""
    sch = layouts.get(layout)
    packed = part.packed()
    table = AP.physical(part.arrays, packed, sch)
    data = AP.write(table)
    sha, back = put_checked(objs, data)
    # the ids and the inputs as stored, bit for bit: the transforms from the database's
    # values to them were checked to invert exactly when the table was built
    checked = AP.physical_names(table.schema, ["id", *AP.input_names(sch)])
    if not same(AP.read_physical(back, checked), table.select(checked)):
        raise ArchiveError(
            f"archive file {file_name(sha)} does not hold the rows written", "archive"
        )
    ts = part.ts
    ends = pc.min_max(part.arrays["id"])
    lo, hi = AC.texts(
        pa.array([ends["min"].as_py(), ends["max"].as_py()], ends.type[0].type)
    ).to_pylist()
    units = unit_index(pc.unique(part.arrays["unit"]).drop_null().to_pylist())
    leaf = FileLeaf(
        sha, endpoint, layout, int(ts[0]), int(ts[-1]), len(part), lo, hi, index_digest(units)
    )
    return Written(leaf, len(data), units)


def write_table(objs: Objects, table: pa.Table, old: Any, units: bytes | None) -> Written:
    """Write a physical table, a rewrite of the archive file ``old`` (its
    ``archive_files`` row) holding the same decisions, read it back and check it: every
    column bit for bit, the ids those of ``old``. ``units``: its unit index, when known
    (the same decisions hold the same unit keys); else it is built from the table."""
    data = AP.write(table)
    sha, back = put_checked(objs, data)
    if not same(AP.read_physical(back), table):
        raise ArchiveError(
            f"archive file {file_name(sha)} does not hold the rows written", "archive"
        )
    ids = AP.logical(table.select(["id"])).column("id")
    got = pc.min_max(ids)
    if (len(ids), got["min"].as_py(), got["max"].as_py()) != (old.rows, old.min_id, old.max_id):
        raise ArchiveError(f"archive file {old.sha256} rewritten with other rows", "archive")
    if units is None:
        units = unit_index(pc.unique(table.column("unit")).drop_null().to_pylist())
    leaf = FileLeaf(
        sha, old.endpoint, old.layout, int(old.ts_min), int(old.ts_max), int(old.rows),
        old.min_id, old.max_id, index_digest(units),
    )  # fmt: skip
    return Written(leaf, len(data), units)


def same(a: pa.Table, b: pa.Table) -> bool:
    """Whether two tables hold the same values bit for bit (NaN included)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = _one(a.column(name)), _one(b.column(name))
        if pa.types.is_floating(x.type):
            if not x.is_valid().equals(y.is_valid()):
                return False
            xs = x.fill_null(0).to_numpy(zero_copy_only=False).view("<i8")
            ys = y.fill_null(0).to_numpy(zero_copy_only=False).view("<i8")
            if not np.array_equal(xs, ys):
                return False
        elif not x.equals(y):
            return False
    return True


def _one(col: pa.ChunkedArray) -> pa.Array:
    """A column as one array (without a copy when it is one chunk already)."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
