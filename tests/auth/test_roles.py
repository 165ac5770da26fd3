"""Roles and principals: each role does what the issue lists, on its endpoints only."""

from __future__ import annotations

import getpass

import pytest

from chronoml.auth import (
    Action,
    Forbidden,
    Grant,
    InvalidSetting,
    Kind,
    Principal,
    Role,
    Unauthenticated,
    parse_grant,
    roles_for,
)


def who(*grants: str) -> Principal:
    return Principal("ci", Kind.TOKEN, tuple(parse_grant(g) for g in grants))


EXPECTED = {
    Role.VIEWER: {Action.READ_STATUS},
    Role.AUDITOR: {
        Action.READ_STATUS,
        Action.READ_INPUTS,
        Action.EXPLAIN,
        Action.REPLAY,
        Action.AUDIT,
        Action.ERASE,
    },
    Role.PREDICTOR: {Action.PREDICT},
    Role.OPERATOR: {
        Action.READ_STATUS,
        Action.DEPLOY,
        Action.ALERTS,
        Action.FEEDBACK,
        Action.RETRAIN,
    },
    Role.APPROVER: {Action.READ_STATUS, Action.APPROVE},
    Role.ADMIN: set(Action),
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_permits_exactly_its_actions(role: Role) -> None:
    p = who(role.value)
    assert {a for a in Action if p.can(a, "fraud")} == EXPECTED[role]


def test_viewer_is_included_in_auditor_and_nothing_but_admin_configures_code() -> None:
    viewer, auditor = who("viewer"), who("auditor")
    assert all(auditor.can(a, "e") for a in Action if viewer.can(a, "e"))
    assert not viewer.can(Action.READ_INPUTS, "e")
    assert roles_for(Action.CONFIGURE_CODE) == [Role.ADMIN]
    assert roles_for(Action.TOKENS) == [Role.ADMIN]
    assert roles_for(Action.PREDICT) == [Role.PREDICTOR, Role.ADMIN]
    # the one who configures training code is not thereby an approver, nor the reverse
    assert not who("operator").can(Action.APPROVE, "e")
    assert not who("approver").can(Action.DEPLOY, "e")


def test_grants_are_limited_to_their_endpoint_glob() -> None:
    p = who("operator:fraud-*", "viewer:churn")
    assert p.can(Action.DEPLOY, "fraud-eu")
    assert not p.can(Action.DEPLOY, "churn")
    assert p.can(Action.READ_STATUS, "churn")
    assert not p.can(Action.READ_STATUS, "churn-2")
    assert not p.can(Action.DEPLOY, "Fraud-eu")  # case-sensitive, on every OS
    assert p.visible(Action.READ_STATUS, ["fraud-eu", "churn", "other"]) == ["fraud-eu", "churn"]


def test_actions_on_no_single_endpoint_need_a_grant_on_every_endpoint() -> None:
    assert who("admin").can(Action.TOKENS)
    assert not who("admin:fraud-*").can(Action.TOKENS)
    assert who("admin:fraud-*").can(Action.TOKENS, "fraud-1")


def test_forbidden_names_the_missing_role() -> None:
    with pytest.raises(Forbidden) as e:
        who("viewer").require(Action.READ_INPUTS, "fraud")
    assert e.value.role == "auditor" and e.value.status == 403
    assert "auditor or admin" in e.value.message and "token:ci has viewer" in e.value.message
    who("auditor").require(Action.READ_INPUTS, "fraud")


def test_anonymous_gets_401_and_may_predict_only_when_predict_is_open() -> None:
    closed = Principal.anonymous("10.0.0.1")
    with pytest.raises(Unauthenticated) as e:
        closed.require(Action.PREDICT, "fraud")
    assert e.value.status == 401
    opened = Principal.anonymous("10.0.0.1", open_predict=True)
    opened.require(Action.PREDICT, "fraud")
    assert opened.actor == "anonymous"
    with pytest.raises(Unauthenticated):
        opened.require(Action.READ_STATUS, "fraud")


def test_an_approver_cannot_approve_a_job_it_started() -> None:
    p = Principal("alice", Kind.OIDC, (Grant(Role.APPROVER),))
    with pytest.raises(Forbidden):
        p.require_not_starter("oidc:alice")
    p.require_not_starter("oidc:bob")
    p.require_not_starter("token:alice")  # another kind of principal is someone else


def test_os_principal_names_the_user_and_host() -> None:
    p = Principal.os_user()
    assert p.kind is Kind.OS and p.actor.startswith(f"os:{getpass.getuser()}@")
    assert Principal.os_user("chronoml_rw").name.endswith("(db chronoml_rw)")
    assert p.to_dict()["roles"] == ["admin"]


@pytest.mark.parametrize("text", ["root", "operator:", "operator:a b", "operator:" + "x" * 201])
def test_bad_roles_and_globs_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidSetting) as e:
        parse_grant(text)
    assert e.value.field in ("role", "endpoint")
