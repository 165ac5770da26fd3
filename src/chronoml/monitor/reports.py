"""Drift reports over the decision log, against each version's reference profile.

The profile is built once, when a version is deployed, from its training
snapshot (the features the model takes, and the model's predictions on that
data). A report reads the window's decisions column by column and compares
each variant's rows with the profile of the version that decided them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from chronoml.domain.drift import METHODS, drift_report
from chronoml.domain.ledger import ModelRef
from chronoml.domain.profile import PREDICTION, Profile
from chronoml.domain.profiling import build_profile
from chronoml.domain.reports import EndpointDrift, ModelId, Span, VariantDrift
from chronoml.errors import Refused
from chronoml.monitor import multivariate
from chronoml.monitor.slices import DEFAULT_BINS, SliceError, Slicing, mark_worst, members, slicing
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.store import snapshots
from chronoml.store.database import Store
from chronoml.window import Window
from chronoml.worker import parallel

if TYPE_CHECKING:
    from chronoml.registry.models import LoadedModel

log = logging.getLogger("chronoml.monitor")
# below this many decisions a slice's verdicts rest on too few rows
SMALL_SLICE = 30


def ensure_profile(store: Store, model: LoadedModel) -> str | None:
    """Build and store the reference profile of ``model`` if it has none.

    Returns why no profile could be built (``None`` when one exists): the
    training snapshot must be in this store with its stored copy.
    """
    ref = model.ref
    if store.get_profile(ref.artifact_digest) is not None:
        return None
    snap_info = ref.data_snapshot
    if not snap_info:
        return "the version is not linked to a data snapshot"
    snap = store.get_snapshot(str(snap_info["id"]))
    if snap is None or not snap.path:
        return f"its training snapshot {snap_info['id']} is not in this store"
    df = snapshots.load(snap)
    columns = [c for c, _ in model.schema] if model.schema else [c for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        return f"its training snapshot lacks the model input {missing[0]!r}"
    features = df[columns]
    predictions: Any = None
    try:
        predictions = np.asarray(model.predict(features))
        if predictions.ndim != 1:
            predictions = None
    except Exception as exc:  # a profile without the prediction is still useful
        log.warning("profile of %s v%s: predictions failed: %s", ref.name, ref.version, exc)
    profile = build_profile(features, predictions)
    store.put_profile(ref.artifact_digest, ref.name, ref.version, snap.id, profile.to_bytes())
    return None


def endpoint_drift(
    store: Store,
    layouts: D.Layouts,
    endpoint: str,
    window: Window,
    *,
    variant: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    by: str | None = None,
    bins: int = DEFAULT_BINS,
) -> EndpointDrift:
    """:func:`drift` of ``endpoint``, each version against the profile of what served it."""
    served: dict[tuple[str, str], ModelRef] = {}
    for e in SL.history(store, endpoint):
        for v in e.state or ():
            served[(v.name, v.model.version)] = v.model
    try:
        return drift(
            store,
            layouts,
            endpoint,
            window.start,
            window.end,
            served,
            variant=variant,
            overrides=overrides,
            by=by,
            bins=bins,
        )
    except SliceError:
        raise
    except ValueError as exc:  # a bad override
        raise Refused(str(exc), "overrides") from None


def drift(
    store: Store,
    layouts: D.Layouts,
    endpoint: str,
    start: int,
    end: int,
    models: dict[tuple[str, str], ModelRef],
    *,
    variant: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    by: str | None = None,
    bins: int = DEFAULT_BINS,
) -> EndpointDrift:
    """The drift report of ``endpoint`` over ``[start, end)``, per variant and version.

    ``overrides`` maps a feature (or ``prediction``) to ``{"method", "threshold"}``.
    ``by`` (a model input or a context attribute) adds each variant's report per slice
    (see :mod:`chronoml.monitor.slices`), the most drifted slice marked worst.

    ``models`` maps (variant, version) to the model that served them. The
    top-level verdict is that of the variant with most decisions.
    """
    w = D.window(store, layouts, endpoint, start, end, variant=variant)
    sliced: Slicing | None = None
    if by is not None:
        if w.rows == 0:
            raise SliceError("no decisions in this window to break down", "window")
        if by not in w.columns:
            w = D.window(store, layouts, endpoint, start, end, variant=variant, with_context=True)
        sliced = slicing(by, w.context, w.columns, bins=bins)
    span = Span(start, end, w.rows)
    # features the privacy policy hashes or drops are not compared: say so
    policy = SP.get(store, endpoint)
    not_used = policy.policy.not_used() if policy is not None else []
    skip = {n["feature"] for n in not_used}
    groups: dict[tuple[str, str], np.ndarray[Any, Any] | None] = {}
    if w.rows and (w.variants == w.variants[0]).all() and (w.versions == w.versions[0]).all():
        # one variant and version (the usual window): no per-row selection
        groups[(w.variants[0], w.versions[0])] = None
    else:
        for key in dict.fromkeys(zip(w.variants.tolist(), w.versions.tolist(), strict=True)):
            groups[key] = np.flatnonzero((w.variants == key[0]) & (w.versions == key[1]))

    def size(idx: np.ndarray[Any, Any] | None) -> int:
        return w.rows if idx is None else len(idx)

    variants: list[VariantDrift] = []
    for (vname, version), idx in sorted(groups.items(), key=lambda kv: -size(kv[1])):
        ref = models.get((vname, version))
        raw = store.get_profile(ref.artifact_digest) if ref is not None else None
        model = ModelId(ref.name, ref.version) if ref is not None else ModelId(None, version)
        if ref is None or raw is None:
            no_profile = (
                "no reference profile for this version (is its training snapshot in this store?)"
            )
            variants.append(VariantDrift(vname, model, size(idx), error=no_profile))
            continue
        profile = Profile.from_bytes(raw)
        if skip:
            kept = {k: v for k, v in profile.features.items() if k not in skip}
            profile = replace(profile, features=kept)
        current = w.columns if idx is None else {c: v[idx] for c, v in w.columns.items()}
        if skip:
            current = {c: v for c, v in current.items() if c not in skip}
        outputs = w.outputs if idx is None else w.outputs[idx]
        feats = {k: v for k, v in (overrides or {}).items() if k != PREDICTION}
        report = drift_report(
            profile,
            current,
            outputs,
            overrides=feats,
            prediction_override=(overrides or {}).get(PREDICTION),
            map_features=parallel(2),
        )
        by_slice: dict[str, Any] | None = None
        if sliced is not None and by is not None:
            keys = sliced.keys if idx is None else [sliced.keys[i] for i in idx]
            by_slice = {
                **sliced.describe(by),
                **_by_slice(profile, current, outputs, keys, by, feats, overrides),
            }
        variants.append(
            VariantDrift(
                vname,
                model,
                size(idx),
                report=report,
                multivariate=multivariate.section(store, ref, current),
                by=by_slice,
            )
        )
    return EndpointDrift(endpoint, span, tuple(variants), tuple(not_used))


def _by_slice(
    profile: Profile,
    current: dict[str, np.ndarray[Any, Any]],
    outputs: np.ndarray[Any, Any],
    keys: list[str],
    by: str,
    feats: dict[str, dict[str, Any]],
    overrides: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """One variant's drift per slice. Slicing on a model input makes that input differ from
    the training data within each slice by construction, so it is left out of the slices'
    verdicts."""
    if by in profile.features:
        profile = replace(profile, features={k: v for k, v in profile.features.items() if k != by})
    slices = []
    for key, rows in members(keys).items():
        idx = np.asarray(rows)
        rep = drift_report(
            profile,
            {c: v[idx] for c, v in current.items() if c != by},
            outputs[idx],
            overrides=feats,
            prediction_override=(overrides or {}).get(PREDICTION),
        )
        d = rep.to_dict()
        slices.append(
            {
                "slice": key,
                "rows": len(rows),
                "drifted_share": d["drifted_share"],
                "dataset_drift": d["dataset_drift"],
                "number_of_drifted_features": d["number_of_drifted_features"],
                "prediction": d["prediction"],
                "features": d["features"],
                **({"warning": f"only {len(rows)} decisions"} if len(rows) < SMALL_SLICE else {}),
            }
        )
    worst = mark_worst(
        slices,
        lambda s: (
            None
            if s["drifted_share"] is None
            else (s["drifted_share"], bool((s["prediction"] or {}).get("drifted")), s["rows"])
        ),
    )
    return {
        "slices": slices,
        "worst": worst,
        "worst_rule": "highest share of drifted features, prediction drift breaking ties",
    }


def parse_overrides(methods: list[str], thresholds: list[str]) -> dict[str, dict[str, Any]]:
    """``feature=method`` and ``feature=threshold`` pairs into an overrides map."""
    out: dict[str, dict[str, Any]] = {}
    for item in methods:
        name, sep, method = item.rpartition("=")
        if not sep or not name or method not in METHODS:
            raise ValueError(
                f"expected FEATURE=METHOD with METHOD one of {', '.join(METHODS)}; got {item!r}"
            )
        out.setdefault(name, {})["method"] = method
    for item in thresholds:
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            out.setdefault(name, {})["threshold"] = float(value)
        except ValueError:
            raise ValueError(f"expected FEATURE=THRESHOLD (a number); got {item!r}") from None
    return out


def to_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of a drift report (no scripts, no network)."""
    # lazy: jinja2 is needed only by the HTML report
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("chronoml", "templates"), autoescape=select_autoescape())
    return env.get_template("drift_report.html").render(r=report)
