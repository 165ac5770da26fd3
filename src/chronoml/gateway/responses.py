"""JSON responses and the one error shape, ``{"error": {"code", "message", "field"?}}``.

:func:`for_error` is where a :class:`~chronoml.errors.ChronomlError` becomes an
HTTP response: its ``status``, ``code``, ``message`` and ``field``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from chronoml.errors import ChronomlError

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_JSON_OPTIONS)


def error_body(status: int, code: str, message: str, field: str | None = None) -> tuple[int, bytes]:
    """An error's status and JSON body: ``{"error": {"code", "message", "field"}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return status, orjson.dumps({"error": body}, option=_JSON_OPTIONS)


def error(status: int, code: str, message: str, field: str | None = None) -> JSON:
    """An error response in the one shape."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSON({"error": body}, status_code=status)


def for_error(exc: ChronomlError) -> JSON:
    """The response for an error a user caused: its own status and code."""
    return error(exc.status, exc.code, exc.message, exc.field)
