"""Numbers every store keeps differently from how Python holds them: a NaN output and -0.0.

SQLite keeps a NaN in a REAL column as NULL and -0.0 as 0. A decision whose leaf hash was
taken over the number as the model gave it then failed ``audit verify --decisions`` on
SQLite although nobody had touched it: a false alarm is as bad for an auditor as a miss."""

from __future__ import annotations

import json
import math

import numpy as np
from evidence_fill import T0, deploy

from chronoml.domain import codec
from chronoml.domain.feedback import Label
from chronoml.evidence import audit as EA
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store.feedback import record


def test_nan_and_negative_zero_outputs_verify_untouched(store: Store) -> None:
    seq = SL.append(store, deploy("reg", "a"), now=T0).seq
    outputs, nums = codec.encode_outputs(np.array([math.nan, -0.0, 2.5, -1.0]), 4)
    rows: list[D.DecisionTuple] = [
        (
            f"0190a000-0000-7000-8000-{i:012d}", T0 + 10 + i, "reg", "a", "reg", "1", seq, False, None, f"0190a000-0000-7000-9000-{i:012d}",
            "lay1", json.dumps([float(i)]).encode(), None, json.dumps(None if i == 0 else o),
            nums[i], 1.0, None, None,
        )
        for i, o in enumerate(outputs)
    ]  # fmt: skip
    app = D.Appender(store)
    app.append(rows, [])
    app.close()
    record(store, [Label("0190a000-0000-7000-8000-000000000003", -0.0, None)], actor="labeller")
    report = EA.verify(store, decisions=True)
    assert report.ok, report.problems
    assert report.decisions == 4 and report.feedback == 1
