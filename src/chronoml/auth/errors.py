"""The errors of authentication and authorization, each with the HTTP status it maps to."""

from __future__ import annotations

from chronoml.errors import ChronomlError


class AuthError(ChronomlError, ValueError):
    """A request refused for who it comes from or what it carries; ``field`` names the input."""

    def to_dict(self) -> dict[str, str]:
        """The ``{"code", "message", "field"?}`` part of an error response."""
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class Unauthenticated(AuthError):
    """No credentials, or credentials that are not valid (401)."""

    status = 401
    code = "unauthenticated"

    def __init__(self, message: str, field: str | None = "authorization") -> None:
        super().__init__(message, field)


class Forbidden(AuthError):
    """Valid credentials without the role the action needs (403); ``role`` names that role."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str, role: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.role = role


class InvalidSetting(AuthError):
    """A value (a role, a glob, a duration, a URL, a secret reference) that cannot be used (422)."""

    status = 422
    code = "invalid"
