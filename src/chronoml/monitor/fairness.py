"""Fairness of a served version over its logged decisions, their labels and their context.

The sensitive attribute is a key of the decisions' context (sent with the
prediction or later with feedback); the figures are
:func:`chronoml.fairness.groups.group_report`'s, over the decisions that have a
label. One model version at a time: the one asked for, or the window's most
served one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from chronoml.domain.reports import FairnessReport, ModelId, Span
from chronoml.errors import InvalidInput
from chronoml.fairness._common import FairnessError
from chronoml.fairness.groups import GroupReport, group_report
from chronoml.store import outcome_blocks as OB
from chronoml.store import outcomes as O
from chronoml.store.database import Store


class FairnessQueryError(InvalidInput):
    """A fairness question that cannot be answered from the log; ``field`` says why."""

    code = "bad_fairness"


@dataclass(frozen=True)
class Served:
    """The decisions of one model version within a window."""

    model_name: str
    version: str
    rows: Sequence[int]  # positions in the window's outcomes
    others: tuple[str, ...]  # the other versions that served in the window


def pick_version(got: O.Outcomes, version: str | None) -> Served:
    """The decisions of ``version`` (or of the window's most served version)."""
    return _pick(got.model_names, got.versions, version)


def _pick(names: Any, versions: Any, version: str | None) -> Served:
    if len(names) == 0:
        raise FairnessQueryError("no decisions in this window", "window", 422)
    n_codes, n_uniq = pd.factorize(np.asarray(names, dtype=object))
    v_codes, v_uniq = pd.factorize(np.asarray(versions, dtype=object))
    key = n_codes.astype(np.int64) * len(v_uniq) + v_codes
    served = [
        (str(n_uniq[k // len(v_uniq)]), str(v_uniq[k % len(v_uniq)]))
        for k in range(len(n_uniq) * len(v_uniq))
    ]
    return _pick_coded(key, served, version)


def _pick_coded(key: Any, served: list[tuple[str, str]], version: str | None) -> Served:
    """:func:`pick_version` over each decision's index into ``served`` (name, version)."""
    if len(key) == 0:
        raise FairnessQueryError("no decisions in this window", "window", 422)
    counts = np.bincount(key, minlength=len(served))
    by: dict[tuple[str, str], int] = {served[k]: k for k in np.flatnonzero(counts).tolist()}
    if version is not None:
        hits = [k for k in by if k[1] == version]
        if not hits:
            shown = ", ".join(sorted({v for _, v in by}))
            raise FairnessQueryError(
                f"version {version} made no decision in this window (served: {shown})",
                "version",
                422,
            )
        chosen = hits[0]
    else:
        chosen = max(by, key=lambda k: (int(counts[by[k]]), k))
    others = tuple(sorted({v for _, v in by if v != chosen[1]}))
    # every decision of the window: no selection to copy
    rows = range(len(key)) if len(by) == 1 else np.flatnonzero(key == by[chosen]).tolist()
    return Served(chosen[0], chosen[1], rows, others)


def attribute_values(got: O.Outcomes, rows: Sequence[int], attribute: str) -> list[Any]:
    """Each decision's value of context ``attribute`` (None where it has none)."""
    values = [got.context[i].get(attribute) for i in rows]
    if all(v is None for v in values):
        known = sorted({k for i in rows for k in got.context[i]})
        hint = f"; their context has: {', '.join(known)}" if known else "; they carry no context"
        raise FairnessQueryError(
            f"no decision in this window has context attribute {attribute!r}{hint}",
            "attribute",
            422,
        )
    return values


def report_for(
    got: O.Outcomes,
    rows: Sequence[int],
    attribute: str,
    *,
    positive_class: Any = None,
    min_group_size: int = 30,
    n_boot: int = 1000,
) -> GroupReport:
    """:func:`group_report` of ``rows`` over ``attribute``; its errors as a 4xx kind."""
    values = attribute_values(got, rows, attribute)
    try:
        return group_report(
            [got.labels[i] for i in rows],
            [got.outputs[i] for i in rows],
            values,
            attribute=attribute,
            positive_class=positive_class,
            min_group_size=min_group_size,
            n_boot=n_boot,
        )
    except FairnessError as exc:
        raise FairnessQueryError(exc.message, exc.field, 422) from None


def fairness(
    store: Store,
    endpoint: str,
    attribute: str,
    start: int,
    end: int,
    *,
    version: str | None = None,
    variant: str | None = None,
    positive_class: Any = None,
    min_group_size: int = 30,
) -> FairnessReport:
    """The fairness report of one version of ``endpoint`` over ``[start, end)``."""
    if not attribute:
        raise FairnessQueryError("name the context attribute to group by", "attribute", 400)
    cols = OB.columns(store, endpoint, start, end, variant=variant)
    if cols is None:  # blocks from before outcome blocks: the rows, one by one
        got = O.outcomes(store, endpoint, start, end, variant=variant)
        served = pick_version(got, version)
        rep = report_for(
            got,
            served.rows,
            attribute,
            positive_class=positive_class,
            min_group_size=min_group_size,
        )
    else:
        served = _pick_coded(cols.served_codes, cols.served, version)
        rows: Any = (
            slice(None)
            if isinstance(served.rows, range)
            else np.asarray(served.rows, dtype=np.int64)
        )
        values = cols.attribute(attribute)[rows]
        if all(v is None for v in values.tolist()):
            known = _keys(cols)
            hint = (
                f"; their context has: {', '.join(known)}" if known else "; they carry no context"
            )
            raise FairnessQueryError(
                f"no decision in this window has context attribute {attribute!r}{hint}",
                "attribute",
                422,
            )
        try:
            rep = group_report(
                cols.labels[rows],
                cols.outputs[rows],
                values,
                attribute=attribute,
                positive_class=positive_class,
                min_group_size=min_group_size,
            )
        except FairnessError as exc:
            raise FairnessQueryError(exc.message, exc.field, 422) from None
    return FairnessReport(
        endpoint,
        Span(start, end, len(served.rows)),
        ModelId(served.model_name, served.version),
        rep.to_dict(),
        other_versions=tuple(served.others),
    )


def _keys(cols: OB.Columns) -> list[str]:
    """Every context attribute some decision of ``cols`` carries (for a hint)."""
    keys = {k for t in cols.context_texts for k in orjson.loads(t)}
    keys |= {k for c in cols.tail_context for k in c} | {k for c in cols.later.values() for k in c}
    return sorted(keys)


def parse_class(text: str | None) -> Any:
    """A ``--positive-class`` value: a JSON number or boolean when it reads as one, else text."""
    if text is None:
        return None
    lowered = text.strip()
    for cast in (int, float):
        try:
            return cast(lowered)
        except ValueError:
            continue
    if lowered in ("true", "false"):
        return lowered == "true"
    return text
