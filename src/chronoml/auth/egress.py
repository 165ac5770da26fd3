"""Where the server may send requests: public addresses only, unless allowed by name.

A webhook or any other outbound URL is checked when it is configured and
again right before each request (a name can resolve elsewhere later):
``check_url`` resolves its host and refuses it when any address is
loopback, link-local (the cloud metadata service at 169.254.169.254),
private, unique-local, unspecified, multicast, reserved, or one of those
wrapped in an IPv6 form (IPv4-mapped, IPv4-compatible, 6to4, NAT64),
unless the host or ``host:port`` is in the allow list. The caller should
connect to one of the returned addresses, so the name is not resolved a
second time to something else.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from chronoml.auth.errors import InvalidSetting
from chronoml.auth.secrets import inline_secret

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not the internet


class EgressRefused(InvalidSetting):
    """An outbound URL the server will not contact (422, naming the field)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the system's resolver."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def why_not_public(ip: Address) -> str | None:
    """Why the address is not a public unicast one (``None`` when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) address"
        inner = _embedded_v4(ip)
        if inner is not None:
            why = why_not_public(inner)
            return None if why is None else f"{why} inside an IPv6 address"
    checks = (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    )
    for attr, label in checks:
        if getattr(ip, attr):
            return f"{label} address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if not ip.is_global:
        return "not a global address"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and the addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowed_by_list: bool


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _allowed(host: str, port: int, allow_hosts: Iterable[str]) -> bool:
    for entry in allow_hosts:
        e = entry.strip().lower()
        if e.startswith("["):  # [::1] or [::1]:8080
            h, _, rest = e[1:].partition("]")
            p = rest.removeprefix(":")
        elif e.count(":") == 1:
            h, _, p = e.partition(":")
        else:
            h, p = e, ""
        if _normal_host(h) == host and (not p or p == str(port)):
            return True
    return False


def check_url(
    url: str,
    allow_hosts: Iterable[str] = (),
    *,
    field: str = "url",
    resolve: Resolver = system_resolver,
    schemes: tuple[str, ...] = ("http", "https"),
    resolved_secrets: bool = False,
) -> Target:
    """The ``Target`` of a URL the server may contact; ``EgressRefused`` saying why not.

    When a configuration is saved, pass its stored form: a credential typed
    in plain text is refused, one written as ``${NAME}`` is accepted (a URL
    that is one reference as a whole can only be checked once resolved).
    Right before sending, pass the resolved URL with ``resolved_secrets=True``.
    """
    if any(c.isspace() or ord(c) < 0x20 or c in "\\" for c in url) or len(url) > 2048:
        raise EgressRefused("URL has spaces, control characters or backslashes", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
        ours = httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise EgressRefused(f"not a URL: {url!r}", field=field) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise EgressRefused(f"URL scheme must be {' or '.join(schemes)}", field=field)
    host = _normal_host(parts.hostname or "")
    if not host:
        raise EgressRefused("URL has no host", field=field)
    # two parsers must agree on the host, or the check and the request could
    # be about different machines
    if _normal_host(ours.host) != host:
        raise EgressRefused("URL host is ambiguous", field=field)
    secret = None if resolved_secrets else inline_secret(url)
    if secret is not None:
        raise EgressRefused(
            f"URL holds a credential in plain text ({secret}): write it as ${{ENV_NAME}}",
            field=field,
        )
    port = port or (443 if scheme == "https" else 80)
    listed = _allowed(host, port, allow_hosts)
    try:
        addresses = tuple(dict.fromkeys(resolve(host, port)))
    except (OSError, UnicodeError):
        raise EgressRefused(f"host {host!r} does not resolve", field=field) from None
    if not addresses:
        raise EgressRefused(f"host {host!r} does not resolve", field=field)
    if not listed:
        for text in addresses:
            ip = ipaddress.ip_address(text)
            why = why_not_public(ip)
            if why is not None:
                shown = f"[{host}]" if ":" in host else host
                raise EgressRefused(
                    f"host {host!r} is {why} ({ip}); allow it with --allow-webhook-host "
                    f"{shown}:{port} if it is meant",
                    field=field,
                )
    return Target(url, scheme, host, port, addresses, listed)
