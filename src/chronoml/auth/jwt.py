"""JWT bearer tokens from an OpenID Connect provider, verified against its published keys.

The server is configured with the provider's issuer, the audience its tokens
carry for chronoml, and where its JSON Web Key Set is (a file, or an http(s)
URL fetched and cached). A token is accepted only when it is signed with
RS256, ES256 or EdDSA by a key of that set, and its ``iss``, ``aud`` and
``exp`` are right. Roles come from a configured claim: a list of ``role`` or
``role:glob`` strings (or one space-separated string).

What is never trusted: ``alg: none`` and HMAC algorithms (a verifier that
accepted HS256 could be handed a token signed with the public key as the
secret), and key locations in the token's own header (``jku``, ``x5u``,
``jwk``): keys come from the configured set only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt

from chronoml.auth.errors import InvalidSetting, Unauthenticated
from chronoml.auth.roles import Grant, Kind, Principal, parse_grant

ALGORITHMS = ("RS256", "ES256", "EdDSA")
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 1 << 20


class JwksUnavailable(RuntimeError):
    """The provider's keys could not be read and none are cached (a 503, not the caller's fault)."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class OidcSettings:
    """How to verify the provider's tokens; ``jwks`` is a file path or an http(s) URL."""

    issuer: str
    audience: str
    jwks: str
    roles_claim: str = "roles"  # a dotted path reaches nested claims: realm_access.roles
    name_claim: str = "sub"
    role_prefix: str = ""  # e.g. "chronoml:" keeps only roles the provider names so
    algorithms: tuple[str, ...] = ALGORITHMS
    leeway_s: int = 30
    jwks_ttl_s: float = 300.0
    min_refresh_s: float = 10.0  # an unknown kid refetches at most this often
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("issuer", "audience", "jwks", "roles_claim", "name_claim"):
            if not getattr(self, name).strip():
                raise InvalidSetting(f"oidc {name} must not be empty", field=f"oidc_{name}")
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if bad or not self.algorithms:
            raise InvalidSetting(
                f"oidc algorithms must be among {', '.join(ALGORITHMS)}; not {bad or 'none'}",
                field="oidc_algorithms",
            )


def _parse_jwks(data: bytes, where: str) -> dict[str | None, list[pyjwt.PyJWK]]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise JwksUnavailable(f"the JWKS at {where} is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksUnavailable(f"the JWKS at {where} has no 'keys' list")
    keys: dict[str | None, list[pyjwt.PyJWK]] = {}
    for entry in doc["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC", "OKP"):  # never a shared secret ("oct")
            continue
        try:
            key = pyjwt.PyJWK(entry)
        except (pyjwt.PyJWKError, pyjwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue  # a key of a kind we do not use must not spoil the others
        if key.algorithm_name not in ALGORITHMS:
            continue
        kid = entry.get("kid")
        keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return keys


class JwksCache:
    """The provider's keys: read from a file or fetched by URL, kept for a TTL.

    A token naming a key id not in the cache triggers a refresh (providers
    rotate keys), at most once per ``min_refresh_s``, so garbage kids cannot
    make the server hammer the provider. When a refresh fails the keys
    already held stay in use.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, list[pyjwt.PyJWK]] | None = None
        self._fetched_at = -float("inf")
        self.fetches = 0

    def _read(self) -> bytes:
        where = self._settings.jwks
        self.fetches += 1
        if where.startswith(("http://", "https://")):
            client = self._client or httpx.Client()
            try:
                with client.stream(
                    "GET", where, timeout=self._settings.timeout_s, follow_redirects=False
                ) as response:
                    if response.status_code != 200:
                        raise JwksUnavailable(f"the JWKS URL answered {response.status_code}")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise JwksUnavailable("the JWKS is larger than 1 MiB")
                    return bytes(body)
            except httpx.HTTPError as e:
                raise JwksUnavailable(f"cannot fetch the JWKS: {type(e).__name__}") from None
            finally:
                if self._client is None:
                    client.close()
        try:
            with Path(where).open("rb") as f:
                data = f.read(MAX_JWKS_BYTES + 1)
        except OSError as e:
            raise JwksUnavailable(f"cannot read the JWKS file: {e.strerror}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise JwksUnavailable("the JWKS file is larger than 1 MiB")
        return data

    def _refresh(self, *, forced: bool) -> None:
        now = self._clock()
        if forced and now - self._fetched_at < self._settings.min_refresh_s:
            return
        self._fetched_at = now
        try:
            self._keys = _parse_jwks(self._read(), self._settings.jwks)
        except JwksUnavailable:
            if self._keys is None:
                raise

    def keys(self, kid: str | None) -> list[pyjwt.PyJWK]:
        """The keys with this id (or the keys without one), refreshing when stale or unknown."""
        with self._lock:
            if self._keys is None or self._clock() - self._fetched_at >= self._settings.jwks_ttl_s:
                self._refresh(forced=False)
            assert self._keys is not None
            if kid not in self._keys:
                self._refresh(forced=True)
            return list(self._keys.get(kid, []))


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def grants_from_claim(value: object, prefix: str = "") -> tuple[Grant, ...]:
    """The grants named by a roles claim; entries that are not ours are skipped."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        return ()
    out: list[Grant] = []
    for item in items:
        if not isinstance(item, str) or not item.startswith(prefix):
            continue
        try:
            grant = parse_grant(item[len(prefix) :])
        except InvalidSetting:
            continue  # a provider's other groups and roles are not errors
        if grant not in out:
            out.append(grant)
    return tuple(out)


class JwtVerifier:
    """Verifies bearer JWTs and turns their claims into a ``Principal``."""

    def __init__(self, settings: OidcSettings, jwks: JwksCache | None = None) -> None:
        self.settings = settings
        self.jwks = jwks or JwksCache(settings)

    def verify(self, token: str, client: str | None = None) -> Principal:
        """The principal of a valid token; ``Unauthenticated`` saying why otherwise."""
        s = self.settings
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("bearer token too long")
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            raise Unauthenticated("not a JWT") from None
        alg = header.get("alg")
        if alg not in s.algorithms:
            raise Unauthenticated(f"JWT algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("JWT kid must be a string")
        candidates = [k for k in self.jwks.keys(kid) if k.algorithm_name == alg]
        if not candidates:
            raise Unauthenticated(f"no {alg} key {kid!r} in the provider's key set")
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = pyjwt.decode(
                    token,
                    key=key.key,
                    algorithms=[alg],
                    audience=s.audience,
                    issuer=s.issuer,
                    leeway=s.leeway_s,
                    options={"require": ["exp", "iss", "aud"]},
                )
                break
            except pyjwt.InvalidSignatureError:
                continue  # keys sharing an id (or having none): try the next
            except pyjwt.ExpiredSignatureError:
                raise Unauthenticated("JWT expired") from None
            except pyjwt.InvalidAudienceError:
                raise Unauthenticated("JWT audience is not this server's") from None
            except pyjwt.InvalidIssuerError:
                raise Unauthenticated("JWT issuer is not the configured provider") from None
            except pyjwt.PyJWTError as e:
                raise Unauthenticated(f"JWT refused: {e}") from None
        if claims is None:
            raise Unauthenticated("JWT signature does not verify")
        name = _claim(claims, s.name_claim)
        if not isinstance(name, str) or not name.strip():
            raise Unauthenticated(f"JWT has no {s.name_claim!r} claim naming the caller")
        grants = grants_from_claim(_claim(claims, s.roles_claim), s.role_prefix)
        return Principal(name, Kind.OIDC, grants, client, claims)
