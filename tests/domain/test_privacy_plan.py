"""The privacy policy compiled for a schema: what each path of the gateway stores."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from chronoml.domain import codec
from chronoml.domain import privacy as P
from chronoml.errors import InvalidInput

SECRET = b"s" * 32
SCHEMA = (("a", "float"), ("b", "int"), ("c", "float"))
POLICY = P.Policy({"a": "hash", "b": "drop"}, {"sex": "drop", "email": "hash"}, "hash")


def test_matrix_and_frame_paths_store_the_same() -> None:
    plan = P.StoragePlan(POLICY, SCHEMA, SECRET)
    assert plan.stored_schema == (("a", "string"), ("c", "float"))
    mat = np.array([[1.5, 3.0, 7.25], [2.0, 4.0, 8.5]])
    packed, texts = plan.encode_matrix(mat)
    frame = pd.DataFrame({"a": [1.5, 2.0], "b": [3, 4], "c": [7.25, 8.5]})
    assert plan.encode_frame(frame) == (packed, texts)
    back = [codec.decode(plan.stored_schema, n, t) for n, t in zip(packed, texts, strict=True)]
    assert [r["c"] for r in back] == [7.25, 8.5] and all("b" not in r for r in back)
    assert back[0]["a"] == P.keyed_hash(SECRET, "a", 1.5) and back[0]["a"].startswith("h:")
    assert P.keyed_hash(SECRET, "a", 3) == P.keyed_hash(SECRET, "a", 3.0)  # int and float alike
    assert P.keyed_hash(b"t" * 32, "a", 1.5) != back[0]["a"]  # keyed: another secret differs
    assert plan.layout != codec.layout_id(SCHEMA)


def test_context_and_unit() -> None:
    plan = P.StoragePlan(POLICY, SCHEMA, SECRET)
    (text,) = plan.context(['{"sex": "F", "email": "x@y.z", "region": "north"}'])
    assert text is not None
    got = orjson.loads(text)
    assert got == {"email": P.keyed_hash(SECRET, "email", "x@y.z"), "region": "north"}
    assert plan.unit("u-1") == P.unit_hash(SECRET, "u-1") != "u-1"
    assert plan.unit(None) is None
    keep = P.StoragePlan(P.Policy(), SCHEMA, SECRET)
    assert keep.identity and keep.unit("u-1") == "u-1" and P.Policy().plain


def test_rules_and_merging() -> None:
    assert P.parse_rules(["a=hash", " b = drop "]) == {"a": "hash", "b": "drop"}
    for bad, named in (["a"], "NAME="), (["a=shred"], "shred"), (["=hash"], "NAME="):
        with pytest.raises(InvalidInput) as e:
            P.parse_rules(bad)
        assert named in e.value.message and e.value.field == "feature"
    merged = POLICY.merged({"a": "keep", "c": "drop"}, {}, None)
    assert merged.features == {"b": "drop", "c": "drop"} and merged.unit_key == "hash"
    assert P.Policy.from_dict(merged.to_dict()) == merged
