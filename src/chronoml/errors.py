"""The one base of chronoml's errors, and the kinds every layer raises.

Every error a user can cause carries a ``message`` for people and, when one
input is to blame, the ``field`` that names it. Each kind also says how it
reaches a user: its HTTP ``status`` and ``code`` (mapped once, by the gateway)
and the CLI prints its message (mapped once, by the CLI). A feature that needs
its own kind subclasses the closest one and sets ``code``.
"""

from __future__ import annotations

from typing import ClassVar


class ChronomlError(Exception):
    """An error with a message for people and, when one input is to blame, its field."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class NotFound(ChronomlError, LookupError):
    """An endpoint, decision, event, version or job that does not exist."""

    status = 404
    code = "not_found"


class Refused(ChronomlError, ValueError):
    """A change or a request that is not allowed; nothing was recorded."""

    status = 422
    code = "refused"


class BadQuery(Refused):
    """A query parameter that cannot be used (a window, a limit, a time)."""

    status = 400
    code = "bad_query"


class InvalidInput(ChronomlError, ValueError):
    """A body or a value that does not fit what the operation takes."""

    status = 422
    code = "bad_input"

    def __init__(self, message: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message, field)
        if status is not None:
            self.status = status  # type: ignore[misc]


class StoreError(ChronomlError, RuntimeError):
    """The store cannot be reached or is not at the schema this code needs."""

    status = 503
    code = "store_unavailable"


__all__ = ["BadQuery", "ChronomlError", "InvalidInput", "NotFound", "Refused", "StoreError"]
