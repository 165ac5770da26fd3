"""The JSON form of the typed monitoring and privacy answers, key by key and in order."""

from __future__ import annotations

from chronoml.domain import reports as MR
from chronoml.domain import results as R
from chronoml.domain.drift import DriftReport, FeatureDrift
from chronoml.domain.privacy import Policy
from chronoml.timeutil import iso

T0, T1 = 1_767_225_600_000_000, 1_767_229_200_000_000
SPAN = {"from": iso(T0), "to": iso(T1), "rows": 3}


def _report() -> DriftReport:
    f = FeatureDrift("x", "numeric", "ks", 0.5, 0.05, False, True, "ok", 10, 3)
    return DriftReport((f,), None, 0.0, False, 0.5, 3, False, 1, 0)


def test_a_drift_report_names_its_main_variant_and_keeps_the_rest_shape() -> None:
    bad = MR.VariantDrift("b", MR.ModelId(None, "7"), 1, error="no reference profile")
    good = MR.VariantDrift(
        "a", MR.ModelId("m", "2"), 3, report=_report(), multivariate={"status": "skipped"}
    )
    rep = MR.EndpointDrift("e", MR.Span(T0, T1, 3), (bad, good), ({"feature": "f", "reason": "r"},))
    assert rep.main is good and rep.variant("b") is bad
    assert rep.features == _report().features and rep.dataset_drift is False
    d = rep.as_dict()
    assert list(d) == [
        "endpoint", "window", "variants", "not_used", "features", "prediction",
        "drifted_share", "dataset_drift", "multivariate", "empty",
    ]  # fmt: skip
    assert d["window"] == SPAN and d["not_used"] == [{"feature": "f", "reason": "r"}]
    assert d["variants"][0] == {
        "variant": "b", "model": {"version": "7"}, "rows": 1, "error": "no reference profile"
    }  # fmt: skip
    a = d["variants"][1]
    # the report's own keys follow, "rows" keeping its place
    own = [k for k in _report().to_dict() if k != "rows"]
    assert list(a) == ["variant", "model", "rows", *own, "multivariate"]
    assert d["features"] == a["features"] and d["multivariate"] == {"status": "skipped"}


def test_a_drift_report_without_a_reference_says_why() -> None:
    empty = MR.EndpointDrift("e", MR.Span(T0, T1, 0), ()).as_dict()
    assert empty == {
        "endpoint": "e", "window": {**SPAN, "rows": 0}, "variants": [], "features": [],
        "prediction": None, "drifted_share": None, "dataset_drift": False, "empty": True,
        "message": "no decisions in this window",
    }  # fmt: skip
    bad = MR.VariantDrift("b", MR.ModelId("m", "1"), 3, error="no reference profile")
    rep = MR.EndpointDrift("e", MR.Span(T0, T1, 3), (bad,))
    assert rep.main is None and rep.empty is False
    assert rep.as_dict()["message"] == "no reference profile" and "not_used" not in rep.as_dict()


def test_quality_fairness_and_estimates_as_json() -> None:
    q = MR.VariantQuality("a", MR.ModelId("m", "1"), 4, 2, 0.5, {"task": "classification"})
    assert MR.QualityReport("e", MR.Span(T0, T1, 3), (q,)).as_dict() == {
        "endpoint": "e", "window": SPAN, "variants": [{
            "variant": "a", "model": {"name": "m", "version": "1"}, "decisions": 4,
            "labelled": 2, "label_coverage": 0.5, "metrics": {"task": "classification"},
        }],
    }  # fmt: skip
    sliced = MR.VariantQuality("a", MR.ModelId("m", "1"), 4, 2, 0.5, {}, by={"attribute": "g"})
    assert sliced.as_dict()["by"] == {"attribute": "g"}

    groups = {"attribute": "g", "disparities": {"dp": {"value": 0.1}}, "warnings": ["w"]}
    fair = MR.FairnessReport("e", MR.Span(T0, T1, 3), MR.ModelId("m", "2"), groups, ("1",))
    assert list(fair.as_dict()) == [
        "endpoint", "window", "model", "other_versions", "attribute", "disparities", "warnings",
    ]  # fmt: skip
    assert fair.attribute == "g" and fair.warnings == ("w",) and fair.disparities["dp"]
    alone = MR.FairnessReport("e", MR.Span(T0, T1, 3), MR.ModelId("m", "2"), groups)
    assert "other_versions" not in alone.as_dict()

    est = MR.VersionEstimate(
        {"method": "cbpe", "task": "binary"}, MR.ModelId("m", "2"), 9, 8, 1,
        MR.Span(T0, T1, 60), {"accuracy": {"value": 0.9, "low": 0.8, "high": 1.0}}, None,
    )  # fmt: skip
    assert est.value("accuracy") == 0.9
    got = MR.EstimatedQuality("e", MR.Span(T0, T1, 3), (MR.VariantEstimate("a", est),))
    [v] = got.as_dict()["variants"]
    assert list(v) == [
        "variant", "method", "task", "model", "decisions", "scored", "labelled", "reference",
        "estimated", "realized",
    ]  # fmt: skip
    assert v["reference"] == {**SPAN, "rows": 60} and got.variant("a").estimate is est


def test_privacy_answers_as_json() -> None:
    plain = R.PrivacyPolicy("e", Policy()).as_dict()
    assert plain == {
        "endpoint": "e", "features": {}, "context": {}, "unit_key": "keep", "set_at": None,
        "set_by": None,
    }  # fmt: skip
    set_ = R.PrivacyPolicy("e", Policy({"f": "hash"}, {}, "keep"), 4, T0, "alice").as_dict()
    assert list(set_) == [
        "endpoint", "features", "context", "unit_key", "event_seq", "set_at", "set_by",
    ]  # fmt: skip
    assert set_["set_at"] == iso(T0) and set_["event_seq"] == 4

    erased = R.Erasure("h:ab", {"a": 2, "b": 1}, T0, "alice", files_scrubbed=True)
    assert erased.decisions == 3
    assert erased.as_dict() == {
        "files_scrubbed": True, "unit_hash": "h:ab", "decisions": 3,
        "endpoints": {"a": 2, "b": 1}, "erased_at": iso(T0), "erased_by": "alice",
    }  # fmt: skip
    assert R.Retention(T0, {"a": 5}).as_dict() == {
        "before": iso(T0), "decisions": 5, "endpoints": {"a": 5}
    }  # fmt: skip
