"""The same requests logged twice: as decision rows (endpoint "rows") and as ingest
blocks (endpoint "held"), so every read can be compared between the two."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from chronoml.domain import codec
from chronoml.domain import ledger as L
from chronoml.ids import new_block_ids, new_ids
from chronoml.store import Store, ingest
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

T0 = 1_767_225_600_000_000
TEXT_SCHEMA = (("x", "float"), ("k", "int"), ("city", "string"), ("flag", "bool"))
NUM_SCHEMA = (("x", "float"), ("k", "int"))
MARK = 31415.926535897932  # the inputs of unit "u-erase"


@dataclass
class Twins:
    """The ids of each request's decisions, by endpoint, in the same order."""

    rows: list[list[str]] = field(default_factory=list)
    held: list[list[str]] = field(default_factory=list)
    block_ids: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    def pairs(self) -> list[tuple[str, str]]:
        return [
            (a, b) for ra, rb in zip(self.rows, self.held, strict=True)
            for a, b in zip(ra, rb, strict=True)
        ]  # fmt: skip


def deploy(store: Store) -> int:
    model = L.ModelRef("m", "1", None, "ab" * 32)
    seq = 0
    for endpoint in ("rows", "held"):
        v = L.Variant(name="a", model=model, weight=0, shadow=False)
        ev = SL.append(
            store, L.Change("deploy", endpoint, "alice", {"variant": v.to_dict()}), now=T0
        )
        seq = ev.seq
    return seq


def fill(store: Store, requests: int = 12, per: int = 40) -> Twins:
    """``requests`` requests of ``per`` rows each (variant "a" with text inputs and some
    context, "b" numeric only: the blocks' two encoders), logged both ways."""
    seq = deploy(store)
    layouts = D.Layouts(store)
    text_layout, num_layout = codec.layout_id(TEXT_SCHEMA), codec.layout_id(NUM_SCHEMA)
    layouts.ensure(text_layout, TEXT_SCHEMA)
    layouts.ensure(num_layout, NUM_SCHEMA)
    app = D.Appender(store)
    twins = Twins()
    rng = np.random.default_rng(7)
    for q in range(requests):
        variant = "a" if q % 3 else "b"
        sch, layout = (TEXT_SCHEMA, text_layout) if variant == "a" else (NUM_SCHEMA, num_layout)
        unit = "u-erase" if q == 4 else f"u{q}"
        df = pd.DataFrame(
            {
                "x": np.full(per, MARK) if unit == "u-erase" else rng.normal(size=per),
                "k": rng.integers(-5, 5, size=per),
                "city": rng.choice(["oslo", "lima", None], size=per),
                "flag": rng.integers(0, 2, size=per).astype(bool),
            }
        )[[c for c, _ in sch]]
        nums, txts = codec.encode(df, sch)
        outs = [str(int(v)) for v in rng.integers(0, 2, size=per)]
        scores = [np.array([0.25, 0.75]).tobytes() for _ in range(per)]
        ctx = (
            [orjson.dumps({"ch": "web"}).decode() if i % 5 == 0 else None for i in range(per)]
            if variant == "a"
            else None
        )
        ts = T0 + 1000 * (q + 1)
        request_id = new_ids(1)[0]
        block_id, held_ids = new_block_ids(per)
        block = ingest.Block(
            block_id, held_ids, ts, "held", variant, "m", "1" if variant == "a" else "2", seq,
            q == 7, unit, request_id, layout, 1.5 + q, nums, txts, outs,
            [float(o) for o in outs], scores, ctx,
        )  # fmt: skip
        row_ids = new_ids(per)
        rows = [(row_ids[i], *t[1:2], "rows", *t[3:]) for i, t in enumerate(block.tuples())]
        app.append(rows, (), [block])  # one group commit: rows first, then the block
        twins.rows.append(row_ids)
        twins.held.append(held_ids)
        twins.block_ids.append(block_id)
        twins.units.append(unit)
    app.close()
    return twins
