"""Replay logged decisions on their archived models.

Replay answers "does the recorded model, byte for byte, produce this
decision again?": it loads the artifact whose digest the ledger recorded,
re-runs it on the logged inputs and compares the output with the logged
one exactly (as the JSON the gateway wrote).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from chronoml.domain import codec
from chronoml.errors import NotFound, Refused
from chronoml.explain.decisions import model_frame
from chronoml.registry.archive import ArtifactError, DecisionModelError
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.timeutil import iso

if TYPE_CHECKING:
    from chronoml.context import Context
    from chronoml.domain.ledger import ModelRef
    from chronoml.explain.models import Models
    from chronoml.registry.models import LoadedModel

Progress = Callable[[int], None]
EXAMPLES = 10


class ModelFailed(RuntimeError):
    """The archived model raised on the logged inputs."""


def run(model: LoadedModel, df: pd.DataFrame) -> tuple[list[Any], list[str]]:
    """The model's outputs on ``df``, as values and as the JSON text the gateway logs."""
    try:
        pred = model.predict(df)
        values, _ = codec.encode_outputs(pred, len(df))
    except Exception as exc:
        raise ModelFailed(
            f"model {model.ref.name} v{model.ref.version} failed on the logged inputs: {exc}"
        ) from exc
    texts = [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode() for v in values]
    return values, texts


def difference(original: Any, replayed: Any) -> Any:
    """replayed - original for numbers (per key or item for objects and lists); else None."""
    if is_num(original) and is_num(replayed):
        return replayed - original
    if (
        isinstance(original, dict)
        and isinstance(replayed, dict)
        and original.keys() == replayed.keys()
    ):
        return {k: difference(original[k], replayed[k]) for k in original}
    if isinstance(original, list) and isinstance(replayed, list) and len(original) == len(replayed):
        return [difference(a, b) for a, b in zip(original, replayed, strict=True)]
    return None


def is_num(v: Any) -> bool:
    """A number, not a boolean."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _abs_max(d: Any) -> float | None:
    if is_num(d):
        return abs(float(d))
    parts = d.values() if isinstance(d, dict) else d if isinstance(d, list) else ()
    vals = [x for x in (_abs_max(p) for p in parts) if x is not None]
    return max(vals) if vals else None


def model_dict(ref: ModelRef) -> dict[str, Any]:
    """A model's name, version and artifact digest, as reports show them."""
    return {"name": ref.name, "version": ref.version, "artifact_digest": ref.artifact_digest}


def replay_decision(cm: Context, models: Models, decision_id: str) -> dict[str, Any]:
    """Re-run one decision on its archived model; say whether the output is identical."""

    row = D.get(cm.store, decision_id)
    if row is None:
        raise NotFound(f"unknown decision {decision_id!r}")
    ref = models.ref_of(row.event_seq, row.variant, row.model_name, row.model_version)
    model = models.load(ref)  # digest checked now, not at some earlier load
    SP.check_inputs_whole(cm.store, decision_id, row.layout, model.schema)
    df = codec.decode_frame(cm.layouts.get(row.layout), [bytes(row.num)], [row.txt])
    values, texts = run(model, model_frame(model, df))
    original = orjson.loads(row.output)
    identical = texts[0] == row.output
    return {
        "decision_id": decision_id,
        "identical": identical,
        "original": original,
        "replayed": values[0],
        "difference": None if identical else difference(original, values[0]),
        "model": {**model_dict(ref), "digest_verified": True},
        "time": iso(row.ts),
    }


def replay_range(
    cm: Context,
    models: Models,
    endpoint: str,
    start: int,
    end: int,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Replay every decision of ``endpoint`` in ``[start, end)``, or a seeded sample of them.

    Shadow decisions are included: they are logged decisions too. Each
    version's artifact is digest-checked once per run; decisions whose
    artifact is missing or altered are counted as unverifiable, with why.
    """

    if not SL.exists(cm.store, endpoint):
        raise NotFound(f"unknown endpoint {endpoint!r}")
    if start >= end:
        raise Refused("the range's start must be before its end", "from")
    if sample is not None and sample < 1:
        raise Refused("sample must be at least 1", "sample")
    t0 = time.perf_counter()
    total = DR.count(cm.store, endpoint, start, end, include_shadow=True)
    ids: list[str] | None = None
    if sample is not None and sample < total:
        keys = DR.keys(cm.store, endpoint, start, end, include_shadow=True)
        pick = np.sort(np.random.default_rng(seed).choice(len(keys), sample, replace=False))
        ids = [keys[i].id for i in pick]
    checking = len(ids) if ids is not None else total
    if on_total is not None:
        on_total(checking)
    loaded: dict[str, LoadedModel | Exception] = {}
    per: dict[str, dict[str, Any]] = {}
    examples: list[dict[str, Any]] = []
    counts = {"identical": 0, "different": 0, "unverifiable": 0}
    largest: float | None = None
    for batch in DR.batches(
        cm.store, cm.layouts, endpoint, start, end, include_shadow=True, ids=ids
    ):
        who = list(
            zip(
                batch.event_seqs,
                batch.variants,
                batch.model_names,
                batch.model_versions,
                strict=True,
            )
        )
        groups: dict[tuple[int, str, str, str], list[int]] = {}
        for i, w in enumerate(who):
            groups.setdefault(w, []).append(i)
        for (seq, variant, name, version), idx in groups.items():
            try:
                ref = models.ref_of(seq, variant, name, version)
            except DecisionModelError as exc:
                entry = per.setdefault(
                    f"{name} v{version}",
                    {
                        "model": {"name": name, "version": version},
                        "checked": 0,
                        "identical": 0,
                        "different": 0,
                        "unverifiable": 0,
                    },
                )
                entry["unverifiable"] += len(idx)
                entry["checked"] += len(idx)
                entry["error"] = str(exc)
                counts["unverifiable"] += len(idx)
                continue
            entry = per.setdefault(
                ref.artifact_digest,
                {
                    "model": model_dict(ref),
                    "checked": 0,
                    "identical": 0,
                    "different": 0,
                    "unverifiable": 0,
                },
            )
            entry["checked"] += len(idx)
            got = loaded.get(ref.artifact_digest)
            if got is None:
                try:
                    got = models.load(ref)
                except ArtifactError as exc:
                    got = exc
                loaded[ref.artifact_digest] = got
            if isinstance(got, Exception):
                entry["unverifiable"] += len(idx)
                entry["error"] = str(got)
                counts["unverifiable"] += len(idx)
                continue
            sub = batch.frame.iloc[idx]
            try:
                values, texts = run(got, model_frame(got, sub))
            except ModelFailed as exc:
                entry["unverifiable"] += len(idx)
                entry["error"] = str(exc)
                counts["unverifiable"] += len(idx)
                continue
            for j, i in enumerate(idx):
                if texts[j] == batch.outputs[i]:
                    entry["identical"] += 1
                    counts["identical"] += 1
                    continue
                entry["different"] += 1
                counts["different"] += 1
                original = orjson.loads(batch.outputs[i])
                diff = difference(original, values[j])
                size = _abs_max(diff)
                if size is not None and (largest is None or size > largest):
                    largest = size
                if len(examples) < EXAMPLES:
                    examples.append(
                        {
                            "decision_id": batch.ids[i],
                            "time": iso(batch.ts[i]),
                            "original": original,
                            "replayed": values[j],
                            "difference": diff,
                        }
                    )
        if progress is not None:
            progress(len(batch))
    secs = time.perf_counter() - t0
    checked = sum(counts.values())
    return {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end), "rows": total},
        "checked": checked,
        "sampled": ids is not None,
        **counts,
        "all_identical": checked == counts["identical"],
        "largest_difference": largest,
        "by_version": list(per.values()),
        "examples": examples,
        "seconds": round(secs, 3),
    }
