"""From an ``Authorization`` header to the principal a request acts as."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chronoml.auth.errors import Unauthenticated
from chronoml.auth.jwt import JwtVerifier
from chronoml.auth.roles import Principal
from chronoml.auth.tokens import TokenRecord, check, hash_secret, looks_like_secret
from chronoml.timeutil import now_us

TokenLookup = Callable[[str], Iterable[TokenRecord]]


def bearer(authorization: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``; None when there is no header.

    A header in another scheme (Basic, say) or an empty one is refused, not
    ignored: the caller meant to authenticate and should hear why it failed.
    """
    if authorization is None:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise Unauthenticated("use 'Authorization: Bearer <token>'")
    return credential


@dataclass(frozen=True)
class Authenticator:
    """Checks credentials: chronoml tokens through ``tokens``, JWTs through ``oidc``.

    ``tokens`` is given the SHA-256 of a presented secret and returns the
    stored records with that hash (the store's indexed lookup). Reading the
    store on every request is what makes a revocation take effect at once
    on every server of that store.
    """

    tokens: TokenLookup
    oidc: JwtVerifier | None = None
    open_predict: bool = False
    clock: Callable[[], int] = now_us

    def authenticate(self, authorization: str | None, client: str | None = None) -> Principal:
        """The principal: anonymous without a header, else the token's or the JWT's."""
        credential = bearer(authorization)
        if credential is None:
            return Principal.anonymous(client, open_predict=self.open_predict)
        if looks_like_secret(credential):
            return check(credential, self.tokens(hash_secret(credential)), self.clock(), client)
        if self.oidc is not None and credential.count(".") == 2:
            return self.oidc.verify(credential, client)
        raise Unauthenticated("not a chronoml token" + (" or JWT" if self.oidc else ""))
