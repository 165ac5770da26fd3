"""Who may do what: principals, roles, tokens, OIDC bearers, and the checks around requests.

Everything here is pure logic over plain data (no SQL, no HTTP framework):
the store keeps token records, the gateway calls these functions.
"""

from chronoml.auth.bearer import Authenticator, bearer
from chronoml.auth.egress import EgressRefused, Target, check_url
from chronoml.auth.errors import AuthError, Forbidden, InvalidSetting, Unauthenticated
from chronoml.auth.hosts import (
    client_address,
    content_type_allowed,
    default_allowed_hosts,
    host_allowed,
    origin_allowed,
    parse_trusted_proxies,
)
from chronoml.auth.jwt import JwksCache, JwksUnavailable, JwtVerifier, OidcSettings
from chronoml.auth.roles import (
    PERMISSIONS,
    Action,
    Grant,
    Kind,
    Principal,
    Role,
    parse_grant,
    parse_role,
    roles_for,
)
from chronoml.auth.secrets import SecretResolver, has_inline_secret, redact, require_reference
from chronoml.auth.tokens import TokenRecord, check, hash_secret, new_secret, new_token

__all__ = [
    "PERMISSIONS",
    "Action",
    "AuthError",
    "Authenticator",
    "EgressRefused",
    "Forbidden",
    "Grant",
    "InvalidSetting",
    "JwksCache",
    "JwksUnavailable",
    "JwtVerifier",
    "Kind",
    "OidcSettings",
    "Principal",
    "Role",
    "SecretResolver",
    "Target",
    "TokenRecord",
    "Unauthenticated",
    "bearer",
    "check",
    "check_url",
    "client_address",
    "content_type_allowed",
    "default_allowed_hosts",
    "has_inline_secret",
    "hash_secret",
    "host_allowed",
    "new_secret",
    "new_token",
    "origin_allowed",
    "parse_grant",
    "parse_role",
    "parse_trusted_proxies",
    "redact",
    "require_reference",
    "roles_for",
]
