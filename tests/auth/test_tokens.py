"""Token secrets: random, shown once, stored as a hash; expired and revoked ones refused."""

from __future__ import annotations

import base64
import hashlib

import pytest

from chronoml.auth import (
    Action,
    Authenticator,
    InvalidSetting,
    Kind,
    Role,
    TokenRecord,
    Unauthenticated,
    bearer,
    check,
    hash_secret,
    new_secret,
    new_token,
)
from chronoml.auth.tokens import MAX_EXPIRES_US, parse_expires, same_hash

NOW = 1_780_000_000_000_000
HOUR = 3_600_000_000


def test_secrets_carry_256_random_bits_and_differ() -> None:
    values = {new_secret() for _ in range(1000)}
    assert len(values) == 1000
    for s in list(values)[:20]:
        assert s.startswith("cml_")
        raw = base64.urlsafe_b64decode(s[4:] + "=")
        assert len(raw) * 8 >= 256


def test_only_the_hash_is_stored() -> None:
    secret, record = new_token("ci", "operator", created_by="os:alice@h", now_us=NOW)
    assert record.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(record) and secret not in str(record.to_dict())
    assert "secret_sha256" not in record.to_dict()
    assert record.role is Role.OPERATOR and record.endpoints == "*"


def test_a_valid_secret_gives_its_principal() -> None:
    secret, record = new_token(
        "deployer", "operator", endpoints="fraud-*", created_by="os:a@h", now_us=NOW
    )
    _, other = new_token("other", "admin", created_by="os:a@h", now_us=NOW)
    p = check(secret, [other, record], NOW + 1, client="10.1.2.3")
    assert p.kind is Kind.TOKEN and p.actor == "token:deployer" and p.client == "10.1.2.3"
    assert p.can(Action.DEPLOY, "fraud-eu") and not p.can(Action.DEPLOY, "churn")


def test_unknown_malformed_expired_and_revoked_tokens_are_refused() -> None:
    secret, record = new_token("ci", "admin", created_by="x", now_us=NOW, expires="1h")
    assert record.expires_at == NOW + HOUR
    check(secret, [record], NOW + HOUR - 1)
    with pytest.raises(Unauthenticated, match="expired"):
        check(secret, [record], NOW + HOUR)
    with pytest.raises(Unauthenticated, match="revoked"):
        check(secret, [record.revoked(NOW + 5)], NOW + 6)
    with pytest.raises(Unauthenticated, match="unknown"):
        check(new_secret(), [record], NOW)
    with pytest.raises(Unauthenticated, match="not a chronoml token"):
        check(secret[:-1], [record], NOW)
    # the hash itself is not a credential
    with pytest.raises(Unauthenticated):
        check(record.secret_sha256, [record], NOW)


def test_revoking_twice_keeps_the_first_time() -> None:
    _, record = new_token("ci", "viewer", created_by="x", now_us=NOW)
    once = record.revoked(NOW + 10)
    assert once.revoked(NOW + 99).revoked_at == NOW + 10


def test_constant_time_comparison_still_compares() -> None:
    h = hash_secret("cml_x")
    assert same_hash(h, h) and not same_hash(h, hash_secret("cml_y"))


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("90s", 90_000_000),
        ("15m", 900_000_000),
        ("12h", 12 * HOUR),
        ("30d", 720 * HOUR),
        ("2w", 336 * HOUR),
        ("1y", 8760 * HOUR),
        (" 7D ", 168 * HOUR),
    ],
)
def test_expires_durations(text: str, us: int) -> None:
    assert parse_expires(text) == us


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1e400h", "1.5h", "11y", "999999y", "d", "3x"])
def test_bad_expires_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidSetting) as e:
        parse_expires(text)
    assert e.value.field == "expires"
    assert MAX_EXPIRES_US == 10 * 365 * 24 * HOUR


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "a/b"])
def test_bad_token_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSetting) as e:
        new_token(name, "viewer", created_by="x", now_us=NOW)
    assert e.value.field == "name"


def test_bad_roles_are_refused() -> None:
    with pytest.raises(InvalidSetting) as e:
        new_token("ci", "superuser", created_by="x", now_us=NOW)
    assert e.value.field == "role" and "approver" in e.value.message


class Store:
    """Token records by hash, as the store keeps them."""

    def __init__(self, *records: TokenRecord) -> None:
        self.records = list(records)
        self.asked: list[str] = []

    def __call__(self, digest: str) -> list[TokenRecord]:
        self.asked.append(digest)
        return [r for r in self.records if r.secret_sha256 == digest]


def test_authenticator_takes_bearer_tokens_and_sees_revocation_at_once() -> None:
    secret, record = new_token("ci", "predictor", created_by="x", now_us=NOW)
    store = Store(record)
    auth = Authenticator(store, clock=lambda: NOW + 1)
    p = auth.authenticate(f"Bearer {secret}", "127.0.0.1")
    assert p.actor == "token:ci" and p.can(Action.PREDICT, "e")
    assert store.asked == [hash_secret(secret)]  # looked up by hash, never by secret
    store.records = [record.revoked(NOW)]
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.authenticate(f"bearer {secret}", "127.0.0.1")


def test_authenticator_without_credentials_is_anonymous() -> None:
    p = Authenticator(Store()).authenticate(None, "1.2.3.4")
    assert p.kind is Kind.ANONYMOUS and not p.grants
    open_p = Authenticator(Store(), open_predict=True).authenticate(None)
    assert open_p.can(Action.PREDICT, "e") and not open_p.can(Action.READ_STATUS, "e")


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token cml_x", "Bearer a b"]
)
def test_malformed_authorization_headers_are_refused(header: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer(header)


def test_a_jwt_without_a_configured_provider_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="not a chronoml token"):
        Authenticator(Store()).authenticate("Bearer aaa.bbb.ccc")
