"""``chronoml dataset build`` and ``chronoml.build_dataset``: refs resolved first, the join
as of each label's time, the result stored as a snapshot with its lineage; real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import chronoml
from chronoml.cli.common import cli
from chronoml.datasets import DatasetError
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import snapshots as snapshot_store
from chronoml.training_sets import parse_feature

DAY = pd.Timedelta(days=1)
T = pd.Timestamp("2024-06-10")

LABELS = pd.DataFrame(
    {
        "customer": ["a", "a", "b", "c", "d"],
        "ts": [T, T, T, T, T],  # a twice: duplicate label rows are kept
        "churned": [1, 1, 0, 1, 0],
    }
)
# a: a row at exactly t - 30d (inside) and one in the future (never used)
# b: its only row is 30 days and one second old (outside the TTL)
# c: the newer value was recorded after t (created_at), so the older one is used
# d: cold start, no rows at all
ORDERS = pd.DataFrame(
    {
        "customer": ["a", "a", "b", "c", "c"],
        "ts": [T - 30 * DAY, T + DAY, T - 30 * DAY - pd.Timedelta(seconds=1), T - 5 * DAY, T],
        "loaded_at": [T - 30 * DAY, T + DAY, T - 30 * DAY, T - 5 * DAY, T + DAY],
        "orders": [3.0, 99.0, 7.0, 1.0, 50.0],
    }
)
WEB = pd.DataFrame({"customer": ["a", "d"], "ts": [T, T + DAY], "visits": [4, 8]})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path / "home")


def run(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["--home", str(settings.home), *args], env={"CHRONOML_STORE": ""}
    )


def stored(settings: Settings) -> list[str]:
    store = Store.open(settings.database_url, settings.home)
    try:
        return [s.name for s in snapshot_store.named(store)]
    finally:
        store.close()


def test_build_joins_as_of_each_label_and_stores_the_lineage(
    settings: Settings, tmp_path: Path
) -> None:
    labels = chronoml.snapshot(LABELS, name="labels", settings=settings)
    orders = chronoml.snapshot(ORDERS, name="orders", settings=settings)
    web = tmp_path / "web.parquet"
    WEB.to_parquet(web)
    r = run(
        settings,
        "dataset", "build", "--labels", "labels@latest", "--entity", "customer", "--time", "ts",
        "--features", f"orders={orders.id}:ttl=30d:created_at=loaded_at",
        "--features", f"web={web}",
        "--name", "churn-train", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)
    assert built["rows"] == 5
    assert built["missing"] == {"orders": 2, "web": 3}

    frame = chronoml.load_snapshot("churn-train@latest", settings=settings)
    assert frame["customer"].tolist() == ["a", "a", "b", "c", "d"]
    got = frame["orders"].tolist()
    assert got[:2] == [3.0, 3.0]  # exactly t - ttl is inside; the future row is not used
    assert np.isnan(got[2])  # one second past the TTL
    assert got[3] == 1.0  # the value recorded after t is not used
    assert np.isnan(got[4])  # cold start
    # a feature at exactly t is used; d's only row is after t
    assert frame["visits"].isna().tolist() == [False, False, True, True, True]
    assert frame["visits"].tolist()[:2] == [4, 4]

    r = run(settings, "snapshot", "show", "churn-train@latest", "--json")
    lineage = json.loads(r.stdout)["lineage"]
    assert lineage["labels"]["ref"] == labels.id
    refs = {f["name"]: f["ref"] for f in lineage["features"]}
    assert refs["orders"] == orders.id
    web_snap = chronoml.load_snapshot("churn-train.web@latest", settings=settings)
    assert len(web_snap) == 2 and refs["web"].startswith("sha256:")
    ttl = {f["name"]: f["ttl_us"] for f in lineage["features"]}
    assert ttl == {"orders": 30 * 86_400 * 1_000_000, "web": None}
    assert lineage["engine"]["name"] == "duckdb"

    r = run(settings, "snapshot", "show", "churn-train@latest")
    assert "built from" in r.stdout and orders.id in r.stdout and "ttl 2.592e+06s" in r.stdout


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ("orders=orders@2001-01-01", "no snapshot named 'orders' was taken at or before"),
        ("orders=nope@latest:ttl=30d", "'nope@latest' is neither a file nor a snapshot"),
        ("orders=orders@latest:ttl=soon", "ttl of 'orders': not a duration"),
    ],
)
def test_a_bad_reference_writes_nothing(settings: Settings, features: str, message: str) -> None:
    chronoml.snapshot(LABELS, name="labels", settings=settings)
    chronoml.snapshot(ORDERS, name="orders", settings=settings)
    before = stored(settings)
    r = run(
        settings, "dataset", "build", "--labels", "labels@latest", "--entity", "customer",
        "--time", "ts", "--features", features, "--name", "x",
    )  # fmt: skip
    assert r.exit_code == 1
    assert message in r.output
    assert stored(settings) == before


def test_bad_columns_are_named_and_nothing_is_written(settings: Settings, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    LABELS.to_csv(labels, index=False)  # read back, ts is text: not a time
    chronoml.snapshot(ORDERS, name="orders", settings=settings)
    with pytest.raises(DatasetError) as exc:
        chronoml.build_dataset(
            labels, entity="customer", time="ts", features={"orders": "orders@latest"},
            name="x", settings=settings,
        )  # fmt: skip
    assert exc.value.field == "labels.time" and "not a time" in exc.value.message
    with pytest.raises(DatasetError) as exc:
        chronoml.build_dataset(
            LABELS, entity="user", time="ts", features={"orders": "orders@latest"},
            name="x", settings=settings,
        )  # fmt: skip
    assert exc.value.field == "labels.entity" and "'user'" in exc.value.message
    assert stored(settings) == ["orders"]


def test_python_build_dataset_takes_options_per_table(settings: Settings) -> None:
    built = chronoml.build_dataset(
        LABELS,
        entity="customer",
        time="ts",
        features={"orders": {"source": ORDERS, "ttl": "30d", "created_at": "loaded_at"}},
        name="py",
        settings=settings,
    )
    assert built.missing == {"orders": 2}
    assert built.snapshot.lineage is not None
    assert built.snapshot.lineage["missing"] == {"orders": 2}


def test_feature_options_parse_off_the_end_of_a_reference() -> None:
    f = parse_feature("o=orders@2024-06-01T12:00:00:ttl=7d:created_at=loaded")
    assert (f.name, f.source, f.ttl, f.created_at) == (
        "o",
        "orders@2024-06-01T12:00:00",
        7 * 86_400 * 1_000_000,
        "loaded",
    )
    assert parse_feature("o=sha256:abcdef12").source == "sha256:abcdef12"
    with pytest.raises(DatasetError, match="NAME=REF_OR_PATH"):
        parse_feature("orders")
