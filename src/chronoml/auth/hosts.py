"""What a browser can be made to send: Host and Origin checks, body types, client addresses.

A page on another site can make a browser send requests to a server on
loopback (a form posting ``text/plain``) or, by rebinding its own name to
127.0.0.1, read the answers. So the server answers only Host headers it
knows (421 otherwise), refuses a foreign ``Origin`` on every request that
carries one, and takes mutating bodies only as ``application/json`` (a
type a cross-site form cannot send without a CORS preflight).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from chronoml.auth.errors import InvalidSetting

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_host(value: str) -> tuple[str, str] | None:
    """``host[:port]`` or ``[v6][:port]`` to (host, port text), lower-cased; None if malformed."""
    v = value.strip().lower()
    if not v or any(c in v for c in "/@\\ \t?#"):
        return None
    if v.startswith("["):
        host, close, rest = v[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return None
        host, port = f"[{host}]", rest[1:]
    elif v.count(":") > 1:
        return None  # a bare IPv6 address is not a valid Host header
    else:
        host, _, port = v.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    return host.rstrip("."), port


def _bracketed(host: str) -> str:
    h = host.strip().lower()
    if ":" in h and not h.startswith("["):
        return f"[{h}]"
    return h


def default_allowed_hosts(bind: str) -> frozenset[str]:
    """The Host names allowed when none are configured: the bind address and loopback names."""
    names = {"localhost", "127.0.0.1", "[::1]"}
    if bind.strip() and bind.strip() not in ("0.0.0.0", "::"):
        names.add(_bracketed(bind))
    return frozenset(names)


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's Host header names this server.

    An entry ``name`` allows any port, ``name:port`` that port only,
    ``*.example.com`` any subdomain, and ``*`` anything (checking off).
    """
    if host_header is None:
        return False
    parsed = _split_host(host_header)
    if parsed is None:
        return False
    host, port = parsed
    for entry in allowed:
        e = entry.strip().lower()
        if e == "*":
            return True
        want = _split_host(e.removeprefix("*.")) if e.startswith("*.") else _split_host(e)
        if want is None:
            continue
        whost, wport = want
        if wport and wport != port:
            continue
        if e.startswith("*."):
            if host.endswith("." + whost):
                return True
        elif host == whost:
            return True
    return False


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int] | None:
    s = scheme.lower()
    if s not in _DEFAULT_PORTS:
        return None
    return s, host.lower().rstrip("."), port or _DEFAULT_PORTS[s]


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.path not in ("", "/") or parts.query or parts.username or not parts.hostname:
        return None
    return _origin_key(parts.scheme, _bracketed(parts.hostname), port)


def origin_allowed(
    origin: str | None,
    host_header: str | None,
    allowed_origins: Iterable[str] = (),
    *,
    scheme: str = "http",
) -> bool:
    """Whether a request's Origin may act on this server.

    No Origin (curl, the CLI, server-to-server) is allowed; ``null``
    (sandboxed frames, local files) is not. Otherwise the Origin must be
    this server itself (same scheme, host and port as the Host header, the
    request arriving over ``scheme``) or one of ``allowed_origins``.
    """
    if origin is None:
        return True
    theirs = _parse_origin(origin)
    if theirs is None:
        return False
    if host_header is not None:
        parsed = _split_host(host_header)
        if parsed is not None:
            host, port = parsed
            if theirs == _origin_key(scheme, host, int(port) if port else None):
                return True
    return any(theirs == _parse_origin(o) for o in allowed_origins)


def content_type_allowed(
    content_type: str | None, allowed: Sequence[str] = ("application/json",)
) -> bool:
    """Whether a body's media type (parameters such as charset ignored) is one of ``allowed``."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media in {a.lower() for a in allowed}


def parse_trusted_proxies(
    values: Iterable[str], field: str = "trusted_proxy"
) -> tuple[Network, ...]:
    """``--trusted-proxy`` values (addresses or CIDR networks) to networks."""
    out: list[Network] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise InvalidSetting(f"not an address or network: {v!r}", field=field) from None
    return tuple(out)


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().removeprefix("[").split("]")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]
) -> str | None:
    """The caller's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies ``X-Forwarded-For`` is read from the right (each
    proxy appends the address it saw), skipping trusted hops; the first one
    that is not trusted is the client. Anything left of it was written by
    the client and is ignored.
    """
    if peer is None or not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    if not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed list: trust nothing in it
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0]
