"""Secret references resolved only at use, redacted wherever shown, plain text refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chronoml.auth import InvalidSetting, SecretResolver, has_inline_secret, redact
from chronoml.auth.secrets import inline_secret, references, require_reference


def test_references_resolve_from_the_environment_at_use_time() -> None:
    env = {"DB_PASSWORD": "p@ss/word:1", "HOOK": "https://hooks.example.test/T1/B2/xyz"}
    r = SecretResolver(environ=env)
    stored = "postgresql+psycopg://ml:${DB_PASSWORD}@db.internal:5432/features"
    assert references(stored) == ["DB_PASSWORD"]
    # inside a URL the value is percent-encoded: it cannot move the host
    assert (
        r.resolve_url(stored)
        == "postgresql+psycopg://ml:p%40ss%2Fword%3A1@db.internal:5432/features"
    )
    assert r.resolve_url("${HOOK}") == env["HOOK"]  # the whole URL by reference
    assert r.resolve("Bearer ${DB_PASSWORD}") == "Bearer p@ss/word:1"
    env["DB_PASSWORD"] = "rotated"
    assert "rotated" in r.resolve_url(stored)


def test_a_missing_reference_names_it() -> None:
    with pytest.raises(InvalidSetting) as e:
        SecretResolver(environ={}).resolve_url("https://x:${NOPE}@h/", field="query_url")
    assert e.value.field == "query_url" and "${NOPE}" in e.value.message


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_secrets_file_is_read_when_only_its_owner_can(tmp_path: Path) -> None:
    f = write(tmp_path / "secrets", "# chronoml\nDB_PASSWORD = s3cret\nEMPTY=\n", 0o600)
    r = SecretResolver(f, environ={"DB_PASSWORD": "from-env", "OTHER": "o"})
    assert r.resolve("${DB_PASSWORD}/${OTHER}/${EMPTY}") == "s3cret/o/"
    f.chmod(0o644)
    with pytest.raises(InvalidSetting, match="0600") as e:
        r.resolve("${DB_PASSWORD}")
    assert e.value.field == "secrets_file"


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_symlinked_or_malformed_secrets_file_is_refused(tmp_path: Path) -> None:
    real = write(tmp_path / "real", "A=1\n", 0o600)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(InvalidSetting):
        SecretResolver(link, environ={}).resolve("${A}")
    bad = write(tmp_path / "bad", "just a line\n", 0o600)
    with pytest.raises(InvalidSetting, match="line 1"):
        SecretResolver(bad, environ={}).resolve("${A}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ml:hunter2@db:5432/x", "postgresql://ml:***@db:5432/x"),
        (
            "https://hooks.example.test/h?token=abc&x=1",
            "https://hooks.example.test/h?token=***&x=1",
        ),
        (
            "https://h.test/?api_key=k1&Signature=s&sig=z&password=p&q=ok",
            "https://h.test/?api_key=***&Signature=***&sig=***&password=***&q=ok",
        ),
        ("https://ml:${DB_PASSWORD}@db/x", "https://ml:${DB_PASSWORD}@db/x"),
        ("https://h.test/?token=${T}", "https://h.test/?token=${T}"),
        ("https://h.test/plain?a=1", "https://h.test/plain?a=1"),
        ("https://ghp_0123456789abcdefghijklmnopqrstuvwxyz@h.test/", "https://***@h.test/"),
        ("host=db user=ml password=hunter2 dbname=x", "host=db user=ml password=*** dbname=x"),
        ("sqlite:////var/lib/chronoml/x.db", "sqlite:////var/lib/chronoml/x.db"),
    ],
)
def test_redact_hides_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "hunter2" not in redact(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ml:hunter2@db/x",
        "https://hooks.example.test/?token=abc",
        "https://hooks.example.test/?X-Amz-Signature=abc",
        "host=db password=hunter2",
        "https://ghp_0123456789abcdefghijklmnopqrstuvwxyz@h.test/",
    ],
)
def test_plain_text_credentials_are_detected_and_refused(url: str) -> None:
    assert has_inline_secret(url)
    with pytest.raises(InvalidSetting, match=r"\$\{ENV_NAME\}") as e:
        require_reference(url, "query_url")
    assert e.value.field == "query_url" and e.value.status == 422


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ml:${DB_PASSWORD}@db/x",
        "postgresql://ml@db/x",
        "https://hooks.example.test/?token=${HOOK_TOKEN}",
        "${WEBHOOK_URL}",
        "https://hooks.example.test/a?b=c",
        "host=db password=${PGPASSWORD}",
        "sqlite:///data.db",
    ],
)
def test_references_and_credential_free_urls_are_accepted(url: str) -> None:
    assert inline_secret(url) is None
    require_reference(url, "query_url")
