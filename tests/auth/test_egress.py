"""Outbound URLs: loopback, link-local, private and their disguises refused; public accepted."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from chronoml.auth import EgressRefused, check_url
from chronoml.auth.egress import Resolver


def fixed(*addresses: str) -> Resolver:
    """A resolver answering the same addresses for every name (as a DNS record would)."""

    def resolve(host: str, port: int) -> Sequence[str]:
        return addresses

    return resolve


def public(host: str, port: int) -> Sequence[str]:
    return ["93.184.215.14"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/hook",
        "http://localhost:8080/",
        "http://LOCALHOST./",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fe80::1]/",
        "http://10.0.0.7/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://0.0.0.0:9000/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
        "http://[::ffff:169.254.169.254]/",
        "http://[::127.0.0.1]/",  # IPv4-compatible
        "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f000001/",
        "http://127.1/",
        "http://017700000001/",  # octal
        "http://240.0.0.1/",  # reserved
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused) as e:
        check_url(url, field="url")
    assert e.value.field == "url" and e.value.status == 422


def test_a_name_resolving_to_an_internal_address_is_refused() -> None:
    with pytest.raises(EgressRefused, match="private"):
        check_url("https://hooks.example.test/x", resolve=fixed("10.1.2.3"))
    # one internal record among public ones is enough (rebinding between records)
    with pytest.raises(EgressRefused, match="loopback"):
        check_url("https://hooks.example.test/x", resolve=fixed("93.184.215.14", "127.0.0.1"))


def test_public_addresses_are_accepted() -> None:
    t = check_url("https://hooks.example.test/services/a?x=1", resolve=public)
    assert (t.scheme, t.host, t.port, t.addresses) == (
        "https",
        "hooks.example.test",
        443,
        ("93.184.215.14",),
    )
    assert not t.allowed_by_list
    assert check_url("http://8.8.8.8:8080/").port == 8080
    assert check_url("http://[2606:4700:4700::1111]/").addresses == ("2606:4700:4700::1111",)
    assert check_url("http://[::ffff:8.8.8.8]/").host == "::ffff:8.8.8.8"


def test_the_allow_list_opens_a_host_or_one_port_of_it() -> None:
    t = check_url("http://localhost:9000/hook", ["localhost:9000"])
    assert t.allowed_by_list and t.addresses
    with pytest.raises(EgressRefused):
        check_url("http://localhost:9001/hook", ["localhost:9000"])
    assert check_url("http://127.0.0.1:1234/", ["127.0.0.1"]).allowed_by_list
    assert check_url("http://[::1]:80/", ["[::1]:80"]).allowed_by_list
    assert check_url(
        "http://Alerts.Internal.test/", ["alerts.internal.test"], resolve=fixed("10.0.0.2")
    ).allowed_by_list
    with pytest.raises(EgressRefused):  # no suffix matching: a lookalike name is not allowed
        check_url(
            "http://alerts.internal.test.evil.test/",
            ["alerts.internal.test"],
            resolve=fixed("10.0.0.2"),
        )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "ftp://ftp.example.test/",
        "//example.test/",
        "http:///nohost",
        "http://exa mple.test/",
        "http://example.test\\@127.0.0.1/",
        "http://example.test/\n",
        "http://[::1/",
        "http://example.test:99999/",
    ],
)
def test_other_schemes_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        check_url(url, resolve=public)


def test_credentials_must_be_given_by_reference() -> None:
    with pytest.raises(EgressRefused, match="plain text"):
        check_url("https://bot:hunter2@hooks.example.test/", resolve=public)
    with pytest.raises(EgressRefused, match="token"):
        check_url("https://hooks.example.test/x?token=abc123", resolve=public)
    assert check_url("https://bot:${HOOK_PASSWORD}@hooks.example.test/", resolve=public)
    assert check_url("https://hooks.example.test/x?token=${HOOK_TOKEN}", resolve=public)
    # right before sending, the resolved URL carries the secret itself
    t = check_url("https://bot:hunter2@hooks.example.test/", resolve=public, resolved_secrets=True)
    assert t.host == "hooks.example.test"


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def nowhere(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror("no such name")

    with pytest.raises(EgressRefused, match="does not resolve"):
        check_url("https://nowhere.invalid/", resolve=nowhere)
    with pytest.raises(EgressRefused, match="does not resolve"):
        check_url("https://empty.invalid/", resolve=fixed())
