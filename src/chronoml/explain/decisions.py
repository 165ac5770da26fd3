"""Explanations of logged decisions, and global importance per version and window.

An explanation is computed by the archived model that made the decision
(digest checked), from the logged inputs, and stored with the decision the
first time it is asked for (or inline, with ``?explain=true`` on predict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from chronoml.domain import codec
from chronoml.domain.explanation import NotExplainable, mean_abs
from chronoml.errors import NotFound, Refused
from chronoml.explain.base import Explainer
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import explanations as SE
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.timeutil import iso

if TYPE_CHECKING:
    from chronoml.context import Context
    from chronoml.domain.ledger import ModelRef
    from chronoml.explain.models import Models
    from chronoml.registry.models import LoadedModel

# Explaining with the model-agnostic explainer costs about 0.1 s a row: a
# predict request with ?explain=true may hold at most this many rows.
AGNOSTIC_MAX_ROWS = 100
DEFAULT_SAMPLE = {"low": 1000, "high": 200}


class TooManyRows(ValueError):
    """More rows than an inline model-agnostic explanation allows."""


def model_frame(model: LoadedModel, df: pd.DataFrame) -> pd.DataFrame:
    """The logged columns the model takes, in its order."""
    if model.schema is None:
        return df.reset_index(drop=True)
    return df[[c for c, _ in model.schema]].reset_index(drop=True)


def explain_decision(cm: Context, models: Models, decision_id: str) -> dict[str, Any]:
    """The decision's explanation: the stored one, or computed now (and stored)."""

    stored = SE.get(cm.store, decision_id)
    if stored is not None:
        return stored
    row = D.get(cm.store, decision_id)
    if row is None:
        raise NotFound(f"unknown decision {decision_id!r}")
    ref = models.ref_of(row.event_seq, row.variant, row.model_name, row.model_version)
    model = models.load(ref)
    SP.check_inputs_whole(cm.store, decision_id, row.layout, model.schema)
    df = codec.decode_frame(cm.layouts.get(row.layout), [bytes(row.num)], [row.txt])
    exp = models.explainer(model).explain(model_frame(model, df))[0]
    SE.put_many(cm.store, [(decision_id, exp)])
    got = SE.get(cm.store, decision_id)
    assert got is not None
    return got


def check_rows(explainer: Explainer, n: int) -> None:
    """Refuse an inline (``?explain=true``) request too large for a model-agnostic explainer."""
    if explainer.per_row_cost == "high" and n > AGNOSTIC_MAX_ROWS:
        raise TooManyRows(
            f"{n} rows: with {explainer.name} (about 0.1 s a row) ?explain=true takes "
            f"at most {AGNOSTIC_MAX_ROWS} rows per request"
        )


def importance(
    cm: Context,
    models: Models,
    endpoint: str,
    start: int,
    end: int,
    *,
    version: str | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean |SHAP| per feature over the window's decisions, per model version.

    Decisions are sampled (seeded) when there are more than ``sample``: by
    default 1,000 for tree models and 200 for the model-agnostic explainer.
    Shadow decisions are left out, as in drift reports.
    """

    if not SL.exists(cm.store, endpoint):
        raise NotFound(f"unknown endpoint {endpoint!r}")
    if start >= end:
        raise Refused("the window's start must be before its end", "from")
    if sample is not None and sample < 1:
        raise Refused("sample must be at least 1", "sample")
    keys = DR.keys(cm.store, endpoint, start, end, include_shadow=False)
    groups: dict[str, tuple[ModelRef, list[str], set[str]]] = {}
    for k in keys:
        ref = models.ref_of(k.event_seq, k.variant, k.model_name, k.model_version)
        if version is not None and ref.version != version:
            continue
        g = groups.setdefault(ref.artifact_digest, (ref, [], set()))
        g[1].append(k.id)
        g[2].add(k.variant)
    out: dict[str, Any] = {
        "endpoint": endpoint,
        "window": {"from": iso(start), "to": iso(end), "rows": len(keys)},
        "versions": [],
    }
    for ref, ids, variants in sorted(groups.values(), key=lambda g: -len(g[1])):
        entry: dict[str, Any] = {
            "model": {
                "name": ref.name,
                "version": ref.version,
                "artifact_digest": ref.artifact_digest,
            },
            "variants": sorted(variants),
            "rows": len(ids),
        }
        try:
            model = models.load(ref)
            explainer = models.explainer(model)
        except (NotExplainable, LookupError) as exc:  # ArtifactError is a LookupError
            entry["error"] = str(exc)
            out["versions"].append(entry)
            continue
        n = sample or DEFAULT_SAMPLE[explainer.per_row_cost]
        rng = np.random.default_rng(seed)
        chosen = (
            ids
            if len(ids) <= n
            else [ids[i] for i in np.sort(rng.choice(len(ids), n, replace=False))]
        )
        frames = [
            model_frame(model, b.frame)
            for b in DR.batches(
                cm.store, cm.layouts, endpoint, 0, 0, include_shadow=True, ids=chosen
            )
        ]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        exps = explainer.explain(df)
        entry.update(
            {
                "sampled": len(exps),
                "explainer": explainer.name,
                "output_scale": explainer.output_scale,
                "background": explainer.background.to_dict(),
                "note": explainer.note,
                "features": [
                    {"feature": f, "mean_abs_shap": a, "mean_shap": m} for f, a, m in mean_abs(exps)
                ],
            }
        )
        out["versions"].append(entry)
    return out
