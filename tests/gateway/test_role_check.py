"""The route's role check, remembered per principal object, rule and endpoint."""

from __future__ import annotations

import pytest

from chronoml.auth import Forbidden, Grant, Kind, Principal, Role, Unauthenticated
from chronoml.gateway.rules import ACTIONS, check

PREDICT = ACTIONS[("POST", "/v1/endpoints/{endpoint}/predict")]


def test_a_permission_granted_once_is_for_that_endpoint_only() -> None:
    assert PREDICT is not None
    p = Principal("fraud-client", Kind.TOKEN, (Grant(Role.PREDICTOR, "fraud-*"),))
    for _ in range(3):
        check(p, PREDICT, "fraud-eu")  # allowed, then remembered
    with pytest.raises(Forbidden):
        check(p, PREDICT, "credit-eu")
    with pytest.raises(Forbidden):
        check(p, PREDICT, "credit-eu")  # a refusal is never remembered as a permission


def test_an_equal_principal_without_the_grant_is_refused_after_one_with_it() -> None:
    assert PREDICT is not None
    allowed = Principal("client", Kind.TOKEN, (Grant(Role.PREDICTOR),))
    check(allowed, PREDICT, "fraud")
    # the same name looked up again after its role was taken away: a new object
    viewer = Principal("client", Kind.TOKEN, (Grant(Role.VIEWER),))
    with pytest.raises(Forbidden):
        check(viewer, PREDICT, "fraud")
    with pytest.raises(Unauthenticated):
        check(Principal("anonymous", Kind.ANONYMOUS), PREDICT, "fraud")


def test_many_principals_do_not_grow_the_memory_without_bound() -> None:
    assert PREDICT is not None
    from chronoml.gateway import rules

    for i in range(5000):
        check(Principal(f"c{i}", Kind.TOKEN, (Grant(Role.PREDICTOR),)), PREDICT, "fraud")
    assert len(rules._allowed) <= 4096
