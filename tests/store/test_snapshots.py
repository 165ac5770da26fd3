"""Snapshots: the id covers every value, is the same everywhere, and the stored
copy is immutable; also through the ``chronoml snapshot`` command."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from chronoml.cli.common import cli
from chronoml.domain.snapshot import SnapshotError, content_id
from chronoml.store import Store, snapshots

# Built the same way here and in a fresh interpreter: every column kind,
# with missing values in the ones that can hold them.
RECIPE = """
import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
n = 500
df = pd.DataFrame(
    {
        "customer": [f"c{i:05d}" for i in range(n)],
        "age": rng.integers(18, 90, n),
        "balance": rng.normal(1000, 300, n).round(2),
        "churned": rng.random(n) < 0.2,
        "signup": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        "plan": pd.Categorical(rng.choice(["basic", "pro", "team"], n)),
        "referrals": pd.array(rng.integers(0, 5, n), dtype="Int64"),
    }
)
df.loc[3, "balance"] = np.nan
df.loc[5, "customer"] = None
df.loc[7, "referrals"] = pd.NA
"""


def recipe_frame() -> pd.DataFrame:
    scope: dict[str, object] = {}
    exec(RECIPE, scope)
    df = scope["df"]
    assert isinstance(df, pd.DataFrame)
    return df


def sid(df: pd.DataFrame) -> str:
    return content_id(df)[0]


# --- the id ---------------------------------------------------------------------------


def test_same_data_same_id_here_and_in_another_process() -> None:
    df = recipe_frame()
    ours = sid(df)
    assert ours.startswith("sha256:") and len(ours) == len("sha256:") + 64
    assert sid(df.copy()) == ours
    assert sid(recipe_frame()) == ours
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # nothing may depend on str hashing
    code = RECIPE + "\nfrom chronoml.domain.snapshot import content_id\nprint(content_id(df)[0])\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ours


def test_the_index_is_not_part_of_the_data(store: Store) -> None:
    df = recipe_frame()
    shuffled_index = df.set_index(pd.Index(range(1000, 1000 + len(df))))
    assert snapshots.take(store, shuffled_index, "customers").id == sid(df)


N = 20_000


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "amount": rng.normal(50, 10, N),
            "country": rng.choice(["DE", "FR", "NL"], N),
            "flag": rng.random(N) < 0.5,
            "ts": pd.date_range("2025-01-01", periods=N, freq="min"),
        }
    )


def edit_cell(col: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out.loc[15_000, col] = value
        return out

    return edit


EDITS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "int cell": edit_cell("id", -1),
    "float cell, last bit": lambda df: df.assign(
        amount=df["amount"].where(
            df.index != 15_000, np.nextafter(df.loc[15_000, "amount"], np.inf)
        )
    ),
    "float cell to NaN": edit_cell("amount", np.nan),
    "string cell": edit_cell("country", "BE"),
    "string cell to missing": edit_cell("country", None),
    "bool cell": lambda df: df.assign(flag=df["flag"] ^ (df.index == 15_000)),
    "timestamp cell": edit_cell("ts", pd.Timestamp("1999-01-01")),
    "last row": lambda df: df.assign(id=df["id"].where(df.index != N - 1, 0)),
    "column renamed": lambda df: df.rename(columns={"country": "Country"}),
    "columns reordered": lambda df: df[["amount", "id", "country", "flag", "ts"]],
    "rows swapped": lambda df: df.iloc[[*range(14_999), 15_000, 14_999, *range(15_001, N)]],
    "row dropped": lambda df: df.iloc[:-1],
    "row appended": lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True),
    "int column as float": lambda df: df.assign(id=df["id"].astype("float64")),
    "int column as string": lambda df: df.assign(id=df["id"].astype(str)),
    "timestamp with a zone": lambda df: df.assign(ts=df["ts"].dt.tz_localize("UTC")),
    "column added": lambda df: df.assign(extra=0),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_any_change_gives_a_new_id(big: pd.DataFrame, edit: str) -> None:
    changed = EDITS[edit](big).reset_index(drop=True)
    assert not changed.equals(big)
    assert sid(changed) != sid(big)


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # inside MLflow's digest
def test_a_change_mlflow_does_not_see_is_seen(big: pd.DataFrame) -> None:
    import mlflow.data

    frame = big[["id", "amount", "country"]]
    changed = frame.copy()
    changed.loc[15_000, "amount"] = 0.0
    # MLflow digests a sample of the first rows: row 15,000 is not in it
    assert mlflow.data.from_pandas(changed).digest == mlflow.data.from_pandas(frame).digest
    assert sid(changed) != sid(frame)


def test_missing_values_and_zeros_are_normalised() -> None:
    nan_bits = [0x7FF8000000000000, 0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000F00]
    nans = [struct.unpack("<d", struct.pack("<Q", b))[0] for b in nan_bits]
    assert all(np.isnan(nans))
    base = sid(pd.DataFrame({"x": [1.0, float("nan"), 0.0]}))
    for nan in nans:
        assert sid(pd.DataFrame({"x": [1.0, nan, 0.0]})) == base
    assert sid(pd.DataFrame({"x": [1.0, None, -0.0]})) == base
    assert sid(pd.DataFrame({"x": pd.array([1.0, None, 0.0], dtype="Float64")})) == base
    assert sid(pd.DataFrame({"x": np.array([1.0, np.nan, 0.0], dtype="float32")})) == base
    # missing is not zero, and not an empty string
    assert sid(pd.DataFrame({"x": [1.0, 0.0, 0.0]})) != base
    ints = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    assert sid(ints) != sid(pd.DataFrame({"n": [1, 0, 3]}))
    assert sid(ints) == sid(pd.DataFrame({"n": pd.array([1, pd.NA, 3], dtype="Int64")}))
    strings = pd.DataFrame({"s": ["a", None, "c"]})
    assert sid(strings) == sid(pd.DataFrame({"s": ["a", np.nan, "c"]}))
    assert sid(strings) != sid(pd.DataFrame({"s": ["a", "", "c"]}))
    times = pd.DataFrame({"t": pd.to_datetime(["2025-01-01", None])})
    assert sid(times) != sid(pd.DataFrame({"t": pd.to_datetime(["2025-01-01", "1970-01-01"])}))
    # a zone is a view of the same instant
    berlin = pd.DataFrame({"t": pd.to_datetime(["2025-01-01 01:00"]).tz_localize("Europe/Berlin")})
    utc = pd.DataFrame({"t": pd.to_datetime(["2025-01-01 00:00"]).tz_localize("UTC")})
    assert sid(berlin) == sid(utc)


# --- taking snapshots ------------------------------------------------------------------------


def plain_frame() -> pd.DataFrame:
    """Values that survive a CSV round trip exactly."""
    return pd.DataFrame(
        {
            "customer": ["ann", "bob", "cem", "dee"],
            "age": [31, 45, 27, 60],
            "balance": [1200.5, -3.25, 0.0, 99.75],
            "churned": [False, True, False, True],
        }
    )


def test_csv_and_parquet_of_the_same_data_are_one_snapshot(store: Store, tmp_path: Path) -> None:
    df = plain_frame()
    csv, parquet = tmp_path / "customers.csv", tmp_path / "customers.parquet"
    df.to_csv(csv, index=False)
    df.to_parquet(parquet, index=False)

    first = snapshots.take(store, csv, "customers")
    assert first.id == sid(df)
    assert first.rows == 4
    assert [c for c, _ in first.columns] == list(df.columns)
    again = snapshots.take(store, parquet, "customers-parquet")
    assert again == first  # the record already there, name and time included
    assert snapshots.take(store, df, "customers") == first
    assert store.list_snapshots() == [first]

    assert first.path is not None
    copy = Path(first.path)
    assert copy.parent == store.home / "snapshots"
    assert list(copy.parent.iterdir()) == [copy]
    assert stat.S_IMODE(copy.stat().st_mode) & 0o222 == 0  # nobody may write
    loaded = snapshots.load(first)
    assert sid(loaded) == first.id
    pd.testing.assert_frame_equal(loaded, df, check_dtype=False)


def test_a_changed_copy_does_not_load(store: Store) -> None:
    snap = snapshots.take(store, plain_frame(), "customers")
    assert snap.path is not None
    copy = Path(snap.path)
    os.chmod(copy, 0o644)
    plain_frame().assign(age=[31, 45, 27, 61]).to_parquet(copy, index=False)
    with pytest.raises(SnapshotError, match="does not match its id"):
        snapshots.load(snap)
    copy.unlink()
    with pytest.raises(SnapshotError, match="no stored copy"):
        snapshots.load(snap)


def test_retaking_returns_the_recorded_snapshot(store: Store) -> None:
    df = recipe_frame()
    first = snapshots.take(store, df, "customers")
    second = snapshots.take(store, df.copy(), "customers")
    assert second == first
    assert store.get_snapshot(first.id) == first
    assert len(store.list_snapshots()) == 1
    other = snapshots.take(store, df.iloc[:-1], "customers")
    assert other.id != first.id and len(store.list_snapshots()) == 2
    with pytest.raises(SnapshotError, match="needs a name"):
        snapshots.take(store, df, " ")


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI that only knows what the test tells it."""
    for var in ("CHRONOML_HOME", "CHRONOML_STORE", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def test_cli_snapshot_prints_the_id(runner: CliRunner, tmp_path: Path) -> None:
    df = plain_frame()
    path = tmp_path / "customers.csv"
    df.to_csv(path, index=False)
    home = tmp_path / "home"
    args = ["--home", str(home), "snapshot", str(path), "--name", "customers"]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == sid(df)
    assert "customers, 4 rows, 4 columns" in result.stderr

    again = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert '"id": "' + sid(df) + '"' in again.stdout

    store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
    try:
        recorded = store.list_snapshots()
    finally:
        store.close()
    assert [(s.id, s.name, s.rows) for s in recorded] == [(sid(df), "customers", 4)]


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    json_file = tmp_path / "data.json"
    json_file.write_text('{"a": [1, 2]}')
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("name\nJos\xe9\n".encode("latin-1"))
    lists = tmp_path / "lists.parquet"
    pd.DataFrame({"tags": [["a", "b"], ["c"]]}).to_parquet(lists)
    return {
        "unsupported suffix": (json_file, "expected a .csv or .parquet file"),
        "corrupt parquet": (corrupt, "cannot read"),
        "undecodable csv": (latin1, "cannot read"),
        "unsupported column type": (lists, "column 'tags'"),
    }


@pytest.mark.parametrize(
    "case",
    ["unsupported suffix", "corrupt parquet", "undecodable csv", "unsupported column type"],
)
def test_cli_snapshot_of_a_bad_file_fails_cleanly(
    runner: CliRunner, tmp_path: Path, case: str
) -> None:
    path, message = bad_files(tmp_path)[case]
    home = tmp_path / "home"
    result = runner.invoke(cli, ["--home", str(home), "snapshot", str(path), "--name", "x"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output
    assert not (home / "snapshots").exists()
