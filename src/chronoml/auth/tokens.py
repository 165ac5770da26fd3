"""API tokens: random secrets shown once, stored only as a hash, checked in constant time.

A token is ``cml_`` followed by 43 URL-safe base64 characters (256 random
bits from the OS). The store keeps a ``TokenRecord`` per token: its name,
one role on an endpoint glob, the SHA-256 of the secret, who made it and
when, and when it expires or was revoked. ``check`` turns a presented secret
and the candidate records into the ``Principal`` the request acts as.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from chronoml.auth.errors import InvalidSetting, Unauthenticated
from chronoml.auth.roles import Grant, Kind, Principal, Role, parse_role
from chronoml.timeutil import iso

PREFIX = "cml_"
SECRET_BYTES = 32  # 256 bits
_SECRET = re.compile(r"^cml_[A-Za-z0-9_-]{43}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdwy])\s*$", re.IGNORECASE)
_UNIT_US = {
    "s": 1_000_000,
    "m": 60 * 1_000_000,
    "h": 3600 * 1_000_000,
    "d": 86_400 * 1_000_000,
    "w": 7 * 86_400 * 1_000_000,
    "y": 365 * 86_400 * 1_000_000,
}
MAX_EXPIRES_US = 10 * _UNIT_US["y"]


def new_secret() -> str:
    """A fresh token secret: ``cml_`` and 256 random bits, URL-safe base64."""
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a secret: what the store keeps instead of it.

    A plain fast hash is right here, unlike for passwords: the secret is 256
    random bits, so there is nothing to guess and a slow, salted hash
    (bcrypt, scrypt) would add only latency to every request. It also makes
    the hash a stable lookup key, so the store can find a token by its hash.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Compare two hashes in constant time (no early exit that a clock could measure)."""
    return hmac.compare_digest(a.encode(), b.encode())


def looks_like_secret(text: str) -> bool:
    """Whether ``text`` has the form of a chronoml token (not a JWT, not garbage)."""
    return bool(_SECRET.match(text))


def parse_expires(text: str, field: str = "expires") -> int:
    """``90s``, ``15m``, ``12h``, ``30d``, ``8w``, ``1y`` to microseconds (at most 10 years)."""
    m = _DURATION.match(text)
    if not m:
        raise InvalidSetting(
            f"not a duration: {text!r} (a whole number and a unit, e.g. 12h, 30d, 1y)",
            field=field,
        )
    us = int(m.group(1)) * _UNIT_US[m.group(2).lower()]
    if us <= 0:
        raise InvalidSetting(f"duration must be positive: {text!r}", field=field)
    if us > MAX_EXPIRES_US:
        raise InvalidSetting(f"duration beyond 10 years: {text!r}", field=field)
    return us


def validate_name(name: str, field: str = "name") -> str:
    """A token name: letters, digits and ``_.@-``, at most 64 characters."""
    if not _NAME.match(name):
        raise InvalidSetting(
            f"not a token name: {name!r} (letters, digits and _.@-, at most 64)", field=field
        )
    return name


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored: never the secret itself."""

    name: str
    role: Role
    endpoints: str  # glob of endpoint names the role applies to
    secret_sha256: str
    created_at: int  # microseconds since the epoch
    created_by: str  # the actor who created it
    expires_at: int | None = None
    revoked_at: int | None = None

    @property
    def grant(self) -> Grant:
        """The one grant this token carries."""
        return Grant(self.role, self.endpoints)

    def refusal(self, now_us: int) -> str | None:
        """Why the token cannot be used at ``now_us``, or None when it can."""
        if self.revoked_at is not None and self.revoked_at <= now_us:
            return f"token {self.name!r} was revoked at {iso(self.revoked_at)}"
        if self.expires_at is not None and self.expires_at <= now_us:
            return f"token {self.name!r} expired at {iso(self.expires_at)}"
        return None

    def revoked(self, now_us: int) -> TokenRecord:
        """This record revoked at ``now_us`` (an earlier revocation stands)."""
        return self if self.revoked_at is not None else replace(self, revoked_at=now_us)

    def to_dict(self) -> dict[str, object]:
        """The record for listings: everything but the hash."""
        return {
            "name": self.name,
            "role": self.role.value,
            "endpoint": self.endpoints,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": None if self.expires_at is None else iso(self.expires_at),
            "revoked_at": None if self.revoked_at is None else iso(self.revoked_at),
        }


def new_token(
    name: str,
    role: str | Role,
    *,
    created_by: str,
    now_us: int,
    endpoints: str = "*",
    expires: str | None = None,
) -> tuple[str, TokenRecord]:
    """A new secret and the record to store for it; the secret is shown once, then gone."""
    validate_name(name)
    grant = Grant(role if isinstance(role, Role) else parse_role(role), endpoints)
    expires_at = None if expires is None else now_us + parse_expires(expires)
    secret = new_secret()
    record = TokenRecord(
        name=name,
        role=grant.role,
        endpoints=grant.endpoints,
        secret_sha256=hash_secret(secret),
        created_at=now_us,
        created_by=created_by,
        expires_at=expires_at,
    )
    return secret, record


def check(
    secret: str, records: Iterable[TokenRecord], now_us: int, client: str | None = None
) -> Principal:
    """The principal of a presented secret; ``Unauthenticated`` if unknown, expired or revoked.

    ``records`` are the candidates (the store looks them up by
    ``hash_secret(secret)``; a lookup by hash reveals nothing about the
    secret, since the hash cannot be inverted). Every candidate is still
    compared in constant time, so passing all records is also correct.
    """
    if not looks_like_secret(secret):
        raise Unauthenticated("not a chronoml token (expected cml_ and 43 characters)")
    digest = hash_secret(secret)
    match: TokenRecord | None = None
    for record in records:
        if same_hash(record.secret_sha256, digest):
            match = record
    if match is None:
        raise Unauthenticated("unknown token")
    why = match.refusal(now_us)
    if why is not None:
        raise Unauthenticated(why)
    return Principal(match.name, Kind.TOKEN, (match.grant,), client)
