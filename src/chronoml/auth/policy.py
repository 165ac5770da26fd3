"""What a server lets configurations do: which code runs, which data is read, which hosts are
reached, and how their secrets are shown.

Checked when a configuration is saved (a clear 422 naming the field) and
again when it is used, since a name may resolve elsewhere by then.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chronoml.auth.egress import EgressRefused, check_url, why_not_public
from chronoml.auth.errors import InvalidSetting
from chronoml.auth.secrets import SecretResolver, redact, references, require_reference
from chronoml.domain.alerts import AlertRule
from chronoml.domain.retraining import RetrainConfig
from chronoml.settings import Settings

REMOTE_PREFIXES = ("http://", "https://", "git://", "git+", "ssh://", "git@", "s3://", "gs://")


def is_remote(target: str) -> bool:
    """Whether an MLflow project target is fetched from elsewhere (a URL or a git remote)."""
    t = target.strip().lower()
    return t.startswith(REMOTE_PREFIXES) or "://" in t


def check_retraining(
    cfg: RetrainConfig,
    *,
    allow_project_sources: Iterable[str] = (),
    data_roots: Iterable[str | Path] = (),
) -> None:
    """Refuse a retraining configuration that would run unvetted code or read outside the roots."""
    ep = cfg.entrypoint
    if ep.kind == "project" and is_remote(ep.target):
        allowed = tuple(allow_project_sources)
        if not any(ep.target.startswith(p) for p in allowed):
            raise InvalidSetting(
                f"remote project {ep.target!r} is not from an allowed source: start the server "
                "with --allow-project-source PREFIX to allow it",
                field="entrypoint",
            )
    roots = [Path(r).resolve() for r in data_roots]
    for field_name, path in (("data", cfg.data.path), ("holdout", _holdout(cfg))):
        if path is None:
            continue
        real = Path(path).resolve()
        if roots and not any(real == r or r in real.parents for r in roots):
            shown = ", ".join(str(r) for r in roots)
            raise InvalidSetting(
                f"{path!r} is outside the data roots ({shown}): start the server with "
                "--data-root to allow its folder",
                field=field_name,
            )
    if cfg.data.query_url:
        require_reference(cfg.data.query_url, "query_url")


def data_roots(settings: Settings) -> tuple[Path, ...]:
    """Where retraining data may be read: the configured roots, else the home's data folder
    and the server's working folder."""
    if settings.data_roots:
        return tuple(Path(r) for r in settings.data_roots)
    return (settings.home / "data", Path.cwd())


def _holdout(cfg: RetrainConfig) -> str | None:
    return cfg.holdout.path if cfg.holdout is not None else None


def redacted_retraining(d: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration as readers see it: credentials in the query URL masked."""
    out = dict(d)
    data = dict(out.get("data") or {})
    if data.get("query_url"):
        data["query_url"] = redact(str(data["query_url"]))
    out["data"] = data
    return out


def redacted_rule(d: Mapping[str, Any]) -> dict[str, Any]:
    """An alert rule as readers see it: credentials in webhook URLs masked."""
    out = dict(d)
    out["actions"] = [
        {**a, "url": redact(str(a["url"]))} if a.get("url") else dict(a)
        for a in d.get("actions", [])
    ]
    return out


def check_webhooks(rule: AlertRule, allow_hosts: Iterable[str] = ()) -> None:
    """Refuse webhook URLs with plain-text credentials or aimed at this network."""
    allowed = tuple(allow_hosts)
    for action in rule.actions:
        if action.type == "webhook" and action.url is not None:
            check_webhook_url(action.url, allowed)


def check_webhook_url(raw: str, allow_hosts: Iterable[str] = (), field: str = "url") -> None:
    """Refuse a webhook URL with a plain-text credential or aimed at this network.

    A URL that names a host checks only what it says (an address, localhost):
    names resolve where and when the webhook is delivered, checked again there.
    """
    allowed = tuple(allow_hosts)
    url = raw.strip()
    if references(url) and url.startswith("${") and url.endswith("}"):
        return  # the whole URL is a secret reference: checked at delivery
    require_reference(url, field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EgressRefused(f"not a URL: {url!r}", field=field) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise EgressRefused("a webhook URL must be http or https", field=field)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise EgressRefused("the webhook URL has no host", field=field)
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if _listed(host, port, allowed):
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise EgressRefused(_private(host, port, "loopback"), field=field)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return
    why = why_not_public(ip)
    if why is not None:
        raise EgressRefused(_private(host, port, why), field=field)


def deliverable_url(stored: str, allow_hosts: Iterable[str], resolver: SecretResolver) -> str:
    """The URL to send a webhook to now: references resolved, the destination checked."""
    url = resolver.resolve_url(stored)
    check_url(url, tuple(allow_hosts), resolved_secrets=True)
    return url


def _listed(host: str, port: int, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        e = entry.strip().lower().rstrip(".")
        if e == host or e == f"{host}:{port}" or e == f"[{host}]:{port}":
            return True
    return False


def _private(host: str, port: int, why: str) -> str:
    return (
        f"webhook host {host!r} is {why}; allow it with --allow-webhook-host {host}:{port} "
        "if it is meant"
    )


def training_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a training process starts from: what a program needs to run, and
    none of the server's credentials (tokens, store URLs, cloud keys)."""
    src = os.environ if base is None else base
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "VIRTUAL_ENV",
        "USER",
        "LOGNAME",
        "PYTHONPATH",
        "OMP_NUM_THREADS",
    )
    # the artifact store's own credentials: the training code logs its model there
    artifacts = ("AWS_", "MLFLOW_S3_", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_")
    out = {k: src[k] for k in keep if k in src}
    out.update({k: v for k, v in src.items() if k.startswith(artifacts)})
    return out
