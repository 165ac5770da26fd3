"""Secrets given by reference, resolved only when used, and redacted wherever shown.

Credentials in a configuration (a data source's ``query_url``, a webhook URL)
are written as references, ``${ENV_NAME}``, and stored that way. They are
resolved at use time, from a secrets file (``NAME=value`` lines, readable by
its owner only) or else from the environment. What readers see is always the
stored form passed through ``redact``, which also hides any credential that
was typed in plain text; ``inline_secret`` finds such a credential so the API
can refuse it and ask for a reference instead.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from chronoml.auth.errors import InvalidSetting

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]{0,127})\}")
# query parameters whose values are credentials, by name
SECRET_PARAM = re.compile(
    r"(token|key|secret|passw|pwd|sig|auth|credential|session|jwt|bearer)", re.IGNORECASE
)
# libpq keyword form: "host=db password=hunter2"
_KEYWORD_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\S+)")
MASK = "***"


def references(value: str) -> list[str]:
    """The names referenced in ``value``, in order."""
    return REFERENCE.findall(value)


def _is_reference(value: str) -> bool:
    return bool(REFERENCE.fullmatch(value))


def read_secrets_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments); refused unless only its owner can read it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise InvalidSetting(
            f"cannot read the secrets file: {e.strerror}", field="secrets_file"
        ) from None
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if os.name == "posix":
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidSetting(
                    f"the secrets file is mode {stat.S_IMODE(st.st_mode):04o}: "
                    "make it 0600 (chmod 600) so only its owner can read it",
                    field="secrets_file",
                )
            if st.st_uid != os.getuid():
                raise InvalidSetting(
                    "the secrets file belongs to another user", field="secrets_file"
                )
        text = f.read()
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
            raise InvalidSetting(f"secrets file line {n} is not NAME=value", field="secrets_file")
        out[name] = value.strip()
    return out


@dataclass(frozen=True)
class SecretResolver:
    """Where references are looked up: a secrets file first, then the environment."""

    secrets_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def lookup(self, name: str, field: str = "secret") -> str:
        """The value of one reference; ``InvalidSetting`` naming it when it is not set."""
        if self.secrets_file is not None:
            found = read_secrets_file(self.secrets_file).get(name)
            if found is not None:
                return found
        value = self.environ.get(name)
        if value is None:
            where = (
                "the secrets file or the environment" if self.secrets_file else "the environment"
            )
            raise InvalidSetting(f"secret ${{{name}}} is not set in {where}", field=field)
        return value

    def resolve(self, value: str, field: str = "secret") -> str:
        """``value`` with each ``${NAME}`` replaced by its secret, verbatim."""
        return REFERENCE.sub(lambda m: self.lookup(m.group(1), field), value)

    def resolve_url(self, url: str, field: str = "url") -> str:
        """A URL with its references resolved; a reference that is the whole URL is verbatim.

        Inside a URL a value is percent-encoded, so a password holding ``@``
        or ``/`` cannot change where the URL points.
        """
        stripped = url.strip()
        if _is_reference(stripped):
            return self.lookup(stripped[2:-1], field)
        return REFERENCE.sub(lambda m: quote(self.lookup(m.group(1), field), safe=""), url)


def _redact_netloc(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, password = userinfo.partition(":")
    if colon and password and not _is_reference(password):
        return f"{user}:{MASK}@{hostport}"
    if not colon and SECRET_PARAM.search(user) is None and len(user) < 32:
        return netloc  # a user name alone
    if not colon:
        return f"{MASK}@{hostport}"  # a long user name alone is usually a token
    return netloc


def redact(value: str) -> str:
    """``value`` fit to show: URL passwords and credential-named query values masked.

    References (``${NAME}``) stay visible: they name a secret, not reveal it.
    A value that is not a URL has libpq-style ``password=...`` masked.
    """
    try:
        parts = urlsplit(value)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + m.group(2) + MASK, value)
    netloc = _redact_netloc(parts.netloc)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAM.search(k) and v and not _is_reference(v) for k, v in pairs):
            query = urlencode(
                [
                    (k, MASK if SECRET_PARAM.search(k) and v and not _is_reference(v) else v)
                    for k, v in pairs
                ],
                safe="${}*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def inline_secret(value: str) -> str | None:
    """What part of ``value`` is a credential typed in plain text, or None if there is none."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        m = _KEYWORD_PASSWORD.search(value)
        if m and not _is_reference(m.group(3)):
            return f"the {m.group(1)} keyword"
        return None
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        _, colon, password = userinfo.partition(":")
        if colon and password and not _is_reference(password):
            return "the password in the URL"
        if not colon and _redact_netloc(parts.netloc) != parts.netloc:
            return "the user name in the URL (it looks like a token)"
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_PARAM.search(k) and v and not _is_reference(v):
            return f"the query parameter {k!r}"
    return None


def has_inline_secret(value: str) -> bool:
    """Whether ``value`` carries a credential in plain text rather than by reference."""
    return inline_secret(value) is not None


def require_reference(value: str, field: str) -> None:
    """Refuse (422, naming ``field``) a value with a plain-text credential."""
    part = inline_secret(value)
    if part is not None:
        raise InvalidSetting(
            f"{field} holds a credential in plain text ({part}): write it as a reference, "
            "${ENV_NAME}, and set ENV_NAME in the server's environment or secrets file",
            field=field,
        )
