"""Host and Origin checks against DNS rebinding and cross-site requests; client addresses."""

from __future__ import annotations

import pytest

from chronoml.auth import (
    InvalidSetting,
    client_address,
    content_type_allowed,
    default_allowed_hosts,
    host_allowed,
    origin_allowed,
    parse_trusted_proxies,
)

DEFAULT = default_allowed_hosts("127.0.0.1")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8000",
        "127.0.0.1",
        "localhost:8000",
        "LOCALHOST",
        "localhost.:8000",
        "[::1]:8000",
        "[::1]",
    ],
)
def test_loopback_names_are_allowed_by_default(host: str) -> None:
    assert host_allowed(host, DEFAULT)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "attacker.example:8000",
        "127.0.0.1.nip.io:8000",
        "localhost.attacker.example",
        "127.0.0.2",
        "::1",
        "[::1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "127.0.0.1:8000/x",
        "user@127.0.0.1",
        "0.0.0.0:8000",
    ],
)
def test_rebound_or_malformed_hosts_are_refused(host: str | None) -> None:
    assert not host_allowed(host, DEFAULT)


def test_bind_address_and_configured_names() -> None:
    assert host_allowed("10.0.0.5:8000", default_allowed_hosts("10.0.0.5"))
    assert host_allowed("[2001:db8::5]:8000", default_allowed_hosts("2001:db8::5"))
    assert not host_allowed("10.0.0.5:8000", default_allowed_hosts("0.0.0.0"))
    allowed = ["ml.example.com", "api.example.com:443", "*.models.example.com"]
    assert host_allowed("ml.example.com:8443", allowed)
    assert host_allowed("api.example.com:443", allowed)
    assert not host_allowed("api.example.com:8443", allowed)
    assert host_allowed("eu.models.example.com", allowed)
    assert not host_allowed("models.example.com", allowed)
    assert not host_allowed("evilmodels.example.com", allowed)
    assert host_allowed("anything:1", ["*"])


def test_same_origin_and_no_origin_are_allowed() -> None:
    assert origin_allowed(None, "127.0.0.1:8000")
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_allowed("http://localhost", "localhost:80")
    assert origin_allowed("https://ml.example.com", "ml.example.com", scheme="https")
    assert origin_allowed("http://[::1]:8000", "[::1]:8000")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://attacker.example", "127.0.0.1:8000"),
        ("http://127.0.0.1:8001", "127.0.0.1:8000"),  # another port is another site
        ("https://127.0.0.1:8000", "127.0.0.1:8000"),  # another scheme too
        ("null", "127.0.0.1:8000"),
        ("file://", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000/path", "127.0.0.1:8000"),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000"),
        ("garbage", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000", None),
    ],
)
def test_foreign_origins_are_refused(origin: str, host: str | None) -> None:
    assert not origin_allowed(origin, host)


def test_configured_origins_are_allowed() -> None:
    allowed = ["https://dash.example.com", "http://localhost:3000"]
    assert origin_allowed("https://dash.example.com:443", "ml:8000", allowed)
    assert origin_allowed("http://LOCALHOST:3000", "ml:8000", allowed)
    assert not origin_allowed("https://dash.example.com:8443", "ml:8000", allowed)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/plain", False),  # what a cross-site form can send without a preflight
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/json-patch+json", False),
        ("", False),
        (None, False),
    ],
)
def test_mutating_bodies_must_be_json(value: str | None, ok: bool) -> None:
    assert content_type_allowed(value) is ok


def test_predict_may_also_take_csv() -> None:
    assert content_type_allowed("text/csv", ("application/json", "text/csv"))


PROXIES = parse_trusted_proxies(["10.0.0.1", "192.168.0.0/16"])


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_address("203.0.113.9", "10.20.30.40", ()) == "203.0.113.9"
    assert client_address("203.0.113.9", "10.20.30.40", PROXIES) == "203.0.113.9"
    assert client_address(None, "10.20.30.40", PROXIES) is None


def test_behind_trusted_proxies_the_first_untrusted_hop_is_the_client() -> None:
    assert client_address("10.0.0.1", "198.51.100.7", PROXIES) == "198.51.100.7"
    # the client wrote the leftmost entry itself: it is not believed
    assert client_address("10.0.0.1", "1.1.1.1, 198.51.100.7, 192.168.3.3", PROXIES) == (
        "198.51.100.7"
    )
    assert client_address("10.0.0.1", None, PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", "not-an-ip", PROXIES) == "10.0.0.1"
    assert client_address("::ffff:10.0.0.1", "198.51.100.7", PROXIES) == "198.51.100.7"


def test_bad_trusted_proxies_are_refused() -> None:
    with pytest.raises(InvalidSetting) as e:
        parse_trusted_proxies(["10.0.0.0/33"])
    assert e.value.field == "trusted_proxy"
