"""OIDC bearer JWTs, verified against a key set the test makes (a file, or a real local URL)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chronoml.auth import (
    Action,
    InvalidSetting,
    JwksCache,
    JwksUnavailable,
    JwtVerifier,
    Kind,
    OidcSettings,
    Unauthenticated,
)

ISSUER = "https://id.example.test/realms/ml"
AUDIENCE = "chronoml"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private: Any, kid: str) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(private, rsa.RSAPrivateKey):
        out = pyjwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        out = pyjwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        out = pyjwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**out, "kid": kid, "use": "sig"}


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "roles": ["operator:fraud-*", "viewer", "offline_access"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(private: Any, alg: str, kid: str | None, **over: Any) -> str:
    headers = {} if kid is None else {"kid": kid}
    return pyjwt.encode(claims(**over), private, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_bytes(
        jwks(
            jwk(RSA_KEY, "rsa1"),
            jwk(EC_KEY, "ec1"),
            jwk(ED_KEY, "ed1"),
            # a shared secret in the set must never be used to verify anything
            {"kty": "oct", "kid": "hmac1", "k": b64(b"shared-secret-shared-secret-32b!")},
        )
    )
    return path


@pytest.fixture
def verifier(jwks_file: Path) -> JwtVerifier:
    return JwtVerifier(OidcSettings(ISSUER, AUDIENCE, str(jwks_file)))


@pytest.mark.parametrize(
    ("private", "alg", "kid"),
    [(RSA_KEY, "RS256", "rsa1"), (EC_KEY, "ES256", "ec1"), (ED_KEY, "EdDSA", "ed1")],
)
def test_tokens_of_each_algorithm_give_a_principal(
    verifier: JwtVerifier, private: Any, alg: str, kid: str
) -> None:
    p = verifier.verify(sign(private, alg, kid), client="10.0.0.5")
    assert p.kind is Kind.OIDC and p.actor == "oidc:alice" and p.client == "10.0.0.5"
    assert [str(g) for g in p.grants] == ["operator:fraud-*", "viewer"]
    assert p.can(Action.DEPLOY, "fraud-eu") and not p.can(Action.DEPLOY, "churn")
    assert p.can(Action.READ_STATUS, "churn") and not p.can(Action.READ_INPUTS, "churn")


def test_a_token_without_our_roles_authenticates_but_may_do_nothing(verifier: JwtVerifier) -> None:
    p = verifier.verify(sign(RSA_KEY, "RS256", "rsa1", roles=["staff", "admin:", "x:y z"]))
    assert p.grants == () and not p.can(Action.READ_STATUS, "e")


def test_roles_from_a_nested_claim_with_a_prefix(jwks_file: Path) -> None:
    v = JwtVerifier(
        OidcSettings(
            ISSUER,
            AUDIENCE,
            str(jwks_file),
            roles_claim="realm_access.roles",
            role_prefix="chronoml-",
            name_claim="email",
        )
    )
    token = sign(
        RSA_KEY,
        "RS256",
        "rsa1",
        roles=None,
        email="alice@example.test",
        realm_access={"roles": ["chronoml-auditor", "auditor", "uma_authorization"]},
    )
    p = v.verify(token)
    assert p.name == "alice@example.test" and [str(g) for g in p.grants] == ["auditor"]


REFUSED: dict[str, Callable[[], str]] = {
    "expired": lambda: sign(RSA_KEY, "RS256", "rsa1", exp=int(time.time()) - 3600),
    "wrong audience": lambda: sign(RSA_KEY, "RS256", "rsa1", aud="another-service"),
    "wrong issuer": lambda: sign(RSA_KEY, "RS256", "rsa1", iss="https://evil.test/"),
    "no exp": lambda: sign(RSA_KEY, "RS256", "rsa1", exp=None),
    "no subject": lambda: sign(RSA_KEY, "RS256", "rsa1", sub=None),
    "not yet valid": lambda: sign(RSA_KEY, "RS256", "rsa1", nbf=int(time.time()) + 3600),
    "alg none": lambda: forge({"alg": "none", "kid": "rsa1", "typ": "JWT"}, None),
    "alg None spelled otherwise": lambda: forge({"alg": "None", "kid": "rsa1"}, None),
    # the classic confusion: HMAC keyed with the provider's public key
    "HS256 with the public key": lambda: forge(
        {"alg": "HS256", "kid": "rsa1"},
        RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ),
    "HS256 with the set's shared key": lambda: forge(
        {"alg": "HS256", "kid": "hmac1"}, b"shared-secret-shared-secret-32b!"
    ),
    "unknown kid": lambda: sign(RSA_KEY, "RS256", "rsa-unknown"),
    "foreign key under a known kid": lambda: sign(OTHER_RSA, "RS256", "rsa1"),
    "algorithm not matching the key": lambda: sign(EC_KEY, "ES256", "rsa1"),
    "PS256": lambda: sign(RSA_KEY, "PS256", "rsa1"),
    "key from the token's own header": lambda: pyjwt.encode(
        claims(),
        OTHER_RSA,
        algorithm="RS256",
        headers={
            "kid": "attacker",
            "jwk": jwk(OTHER_RSA, "attacker"),
            "jku": "http://127.0.0.1:9/jwks.json",
        },
    ),
    "garbage": lambda: "not.a.jwt",
    "too long": lambda: sign(RSA_KEY, "RS256", "rsa1", pad="x" * 20_000),
}


WHY = {
    "expired": "expired",
    "wrong audience": "audience",
    "wrong issuer": "issuer",
    "no exp": "exp",
    "no subject": "'sub'",
    "not yet valid": "not yet valid",
    "alg none": "algorithm 'none'",
    "alg None spelled otherwise": "algorithm 'None'",
    "HS256 with the public key": "algorithm 'HS256'",
    "HS256 with the set's shared key": "algorithm 'HS256'",
    "unknown kid": "no RS256 key 'rsa-unknown'",
    "foreign key under a known kid": "signature",
    "algorithm not matching the key": "no ES256 key 'rsa1'",
    "PS256": "algorithm 'PS256'",
    "key from the token's own header": "no RS256 key 'attacker'",
    "garbage": "not a JWT",
    "too long": "too long",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_attacks_and_bad_tokens_are_refused(verifier: JwtVerifier, case: str) -> None:
    with pytest.raises(Unauthenticated) as e:
        verifier.verify(REFUSED[case]())
    assert e.value.status == 401
    assert WHY[case] in e.value.message


def test_shared_secrets_in_the_key_set_are_never_loaded(verifier: JwtVerifier) -> None:
    assert verifier.jwks.keys("hmac1") == []
    assert [k.algorithm_name for k in verifier.jwks.keys("rsa1")] == ["RS256"]


def test_a_token_without_kid_uses_the_only_matching_key(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    key = jwk(EC_KEY, "x")
    del key["kid"]
    path.write_bytes(jwks(key))
    v = JwtVerifier(OidcSettings(ISSUER, AUDIENCE, str(path)))
    assert v.verify(sign(EC_KEY, "ES256", None)).name == "alice"
    with pytest.raises(Unauthenticated):
        v.verify(sign(EC_KEY, "ES256", "x"))


@pytest.mark.parametrize("algs", [("HS256",), ("none",), ("RS256", "HS512"), ()])
def test_symmetric_or_no_algorithms_cannot_be_configured(algs: tuple[str, ...]) -> None:
    with pytest.raises(InvalidSetting) as e:
        OidcSettings(ISSUER, AUDIENCE, "jwks.json", algorithms=algs)
    assert e.value.field == "oidc_algorithms"


def test_empty_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidSetting) as e:
        OidcSettings(ISSUER, " ", "jwks.json")
    assert e.value.field == "oidc_audience"


class Provider(ThreadingHTTPServer):
    """A tiny identity provider on 127.0.0.1 serving its key set."""

    body: bytes
    status: int
    hits: int


class Handler(BaseHTTPRequestHandler):
    server: Provider

    def do_GET(self) -> None:
        self.server.hits += 1
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider(("127.0.0.1", 0), Handler)
    server.body, server.status, server.hits = jwks(jwk(RSA_KEY, "rsa1")), 200, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def url_verifier(provider: Provider, clock: Clock) -> JwtVerifier:
    settings = OidcSettings(
        ISSUER,
        AUDIENCE,
        f"http://127.0.0.1:{provider.server_address[1]}/jwks",
        jwks_ttl_s=300,
        min_refresh_s=10,
    )
    return JwtVerifier(settings, JwksCache(settings, clock=clock))


def test_keys_by_url_are_cached_and_refreshed_for_a_new_kid(provider: Provider) -> None:
    clock = Clock()
    v = url_verifier(provider, clock)
    assert v.verify(sign(RSA_KEY, "RS256", "rsa1")).name == "alice"
    assert v.verify(sign(RSA_KEY, "RS256", "rsa1")).name == "alice"
    assert provider.hits == 1  # cached
    # the provider rotates in a new key: a token naming it makes one refresh
    provider.body = jwks(jwk(RSA_KEY, "rsa1"), jwk(EC_KEY, "ec2"))
    clock.t += 11
    assert v.verify(sign(EC_KEY, "ES256", "ec2")).name == "alice"
    assert provider.hits == 2
    # unknown kids do not make the server hammer the provider
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            v.verify(sign(RSA_KEY, "RS256", "nope"))
    assert provider.hits == 2
    clock.t += 11
    with pytest.raises(Unauthenticated):
        v.verify(sign(RSA_KEY, "RS256", "nope"))
    assert provider.hits == 3
    # after the TTL the set is read again
    clock.t += 301
    v.verify(sign(RSA_KEY, "RS256", "rsa1"))
    assert provider.hits == 4


def test_a_revoked_key_stops_working_after_the_ttl(provider: Provider) -> None:
    clock = Clock()
    v = url_verifier(provider, clock)
    token = sign(RSA_KEY, "RS256", "rsa1")
    v.verify(token)
    provider.body = jwks(jwk(EC_KEY, "ec2"))
    clock.t += 301
    with pytest.raises(Unauthenticated):
        v.verify(token)


def test_a_failing_provider_keeps_the_cached_keys_and_is_503_without_them(
    provider: Provider,
) -> None:
    clock = Clock()
    v = url_verifier(provider, clock)
    v.verify(sign(RSA_KEY, "RS256", "rsa1"))
    provider.status = 500
    clock.t += 301
    assert v.verify(sign(RSA_KEY, "RS256", "rsa1")).name == "alice"
    assert provider.hits == 2
    fresh = url_verifier(provider, Clock())
    with pytest.raises(JwksUnavailable) as e:
        fresh.verify(sign(RSA_KEY, "RS256", "rsa1"))
    assert e.value.status == 503 and "500" in e.value.message


def test_a_missing_jwks_file_is_503(tmp_path: Path) -> None:
    v = JwtVerifier(OidcSettings(ISSUER, AUDIENCE, str(tmp_path / "absent.json")))
    with pytest.raises(JwksUnavailable):
        v.verify(sign(RSA_KEY, "RS256", "rsa1"))
