"""Fairness guardrails: an accurate but unfair challenger is held back, with the numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chronoml.fairness import (
    GroupReport,
    GuardrailError,
    evaluate,
    group_report,
    parse_guardrail,
    parse_guardrails,
)


def _report(right_f: float, right_m: float, seed: int, n: int = 4000) -> GroupReport:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.array(["F", "M"]), n // 2)
    y_true = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(group == "F", right_f, right_m)
    return group_report(y_true, np.where(right, y_true, 1 - y_true), group, attribute="sex")


def test_parse_reads_limits_and_margins() -> None:
    g = parse_guardrail("equalized_odds_difference=0.05")
    assert (g.kind, g.metric, g.threshold, g.attribute) == (
        "limit",
        "equalized_odds_difference",
        0.05,
        None,
    )
    m = parse_guardrail(" sex:group_accuracy = 0.02 ", "margin")
    assert (m.kind, m.attribute, m.spec) == ("margin", "sex", "sex:group_accuracy=0.02")
    assert parse_guardrail(m.spec, "margin") == m
    both = parse_guardrails(["demographic_parity_ratio=0.8"], ["equalized_odds_difference=0.01"])
    assert [x.kind for x in both] == ["limit", "margin"]


@pytest.mark.parametrize(
    ("spec", "kind", "field", "words"),
    [
        ("equalized_odds_difference", "limit", "max_gap", "METRIC=NUMBER"),
        ("parity=0.1", "limit", "max_gap", "unknown fairness metric"),
        ("equalized_odds_difference=abc", "margin", "fairness_margin", "not a number"),
        ("equalized_odds_difference=-1", "limit", "max_gap", ">= 0"),
        ("demographic_parity_ratio=1.5", "limit", "max_gap", "[0, 1]"),
        ("group_accuracy=0.1", "limit", "max_gap", "use it as a margin"),
    ],
)
def test_parse_errors_name_the_setting(spec: str, kind: str, field: str, words: str) -> None:
    with pytest.raises(GuardrailError) as e:
        parse_guardrail(spec, kind)  # type: ignore[arg-type]
    assert e.value.field == field and words in e.value.message


def test_accurate_but_unfair_challenger_is_held_back() -> None:
    champion = _report(0.80, 0.80, seed=1)
    challenger = _report(0.70, 0.98, seed=2)  # better overall, much worse for F
    assert challenger.overall.accuracy > champion.overall.accuracy
    rails = parse_guardrails(
        ["equalized_odds_difference=0.05", "demographic_parity_ratio=0.8"], ["group_accuracy=0.02"]
    )
    verdict = evaluate(rails, {"sex": challenger}, {"sex": champion})
    assert not verdict.passed and verdict.status == "fail"
    failed = {c.guardrail.metric: c for c in verdict.failed}
    assert set(failed) == {"equalized_odds_difference", "group_accuracy"}
    eo = failed["equalized_odds_difference"]
    assert eo.challenger == challenger.disparity("equalized_odds_difference").value
    assert eo.challenger > 0.05 and eo.bound == 0.05  # type: ignore[operator]
    acc = failed["group_accuracy"]
    assert acc.group == "F" and acc.champion == champion.group("F").accuracy
    assert acc.bound == pytest.approx(champion.group("F").accuracy - 0.02)
    assert "equalized_odds_difference" in verdict.summary() and "'F'" in verdict.summary()
    json.dumps(verdict.to_dict(), allow_nan=False)


def test_fair_challenger_passes() -> None:
    # large groups, so that sampling noise in the differences stays well under the margins
    champion = _report(0.80, 0.80, seed=3, n=40_000)
    challenger = _report(0.85, 0.85, seed=4, n=40_000)
    rails = parse_guardrails(
        ["equalized_odds_difference=0.05", "worst_group_accuracy=0.8"],
        ["equalized_odds_difference=0.02", "group_accuracy=0.01"],
    )
    verdict = evaluate(rails, {"sex": challenger}, {"sex": champion})
    assert verdict.passed, verdict.summary()
    assert verdict.summary() == "fairness guardrails passed (4)"


def test_margin_without_champion_is_unknown_not_passed() -> None:
    rails = parse_guardrails([], ["equalized_odds_difference=0.02"])
    verdict = evaluate(rails, {"sex": _report(0.8, 0.8, seed=5)}, None)
    assert verdict.status == "unknown" and not verdict.passed
    assert verdict.unknown[0].reason.startswith("no champion figures for 'sex'")


def test_undefined_figure_is_unknown() -> None:
    one_group = group_report([0, 1, 1, 0], [0, 1, 0, 0], ["a"] * 4, attribute="sex")
    verdict = evaluate(parse_guardrails(["equalized_odds_difference=0.05"]), {"sex": one_group})
    assert verdict.status == "unknown"


def test_unmeasured_attribute_is_an_error() -> None:
    with pytest.raises(GuardrailError) as e:
        evaluate(
            parse_guardrails(["age:equalized_odds_difference=0.05"]),
            {"sex": _report(0.8, 0.8, seed=6)},
        )
    assert e.value.field == "max_gap" and "'age'" in e.value.message
    with pytest.raises(GuardrailError) as e:
        evaluate(parse_guardrails(["equalized_odds_difference=0.05"]), {})
    assert e.value.field == "attribute"
