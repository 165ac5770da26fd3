"""The ``chronoml`` command line. Thin: it parses, calls the service, prints.

Heavy modules (MLflow, pandas, the server) are imported inside commands so
``chronoml --help`` starts fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from chronoml.errors import BadQuery
from chronoml.window import Window

if TYPE_CHECKING:
    from chronoml.domain.ledger import LedgerEvent
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """A clean error: message on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _settings(ctx: click.Context) -> Settings:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.settings import Settings

    obj = ctx.find_root().obj or {}
    return Settings.from_env(
        home=obj.get("home"), store_url=obj.get("store"), signing_key=obj.get("signing_key")
    )


def _where(s: Settings) -> str:
    """Where the store is, for messages: the database host, or the home folder."""
    return s.store_url.split("@")[-1] if s.store_url else str(s.home)


@contextmanager
def _chronoml(ctx: click.Context, *, create: bool = True) -> Iterator[Chronoml]:
    """Open chronoml, translating its errors into clean CLI failures.

    ``create=False`` for commands that only read: they never make a new
    store, and a missing one is an error naming where it was looked for.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.snapshot import SnapshotError
    from chronoml.errors import StoreError
    from chronoml.registry import RegistryError
    from chronoml.service import Chronoml, NotFound, Refused

    s = _settings(ctx)
    try:
        cm = Chronoml.open(s, create_embedded=create)
    except StoreError as exc:
        raise Fail(str(exc)) from None
    try:
        yield cm
    except (NotFound, RegistryError) as exc:
        # the usual cause is a different store than meant (another folder's ./.chronoml)
        raise Fail(f"{exc} (store: {_where(s)})") from None
    except Refused as exc:
        raise Fail(exc.message) from None
    except (StoreError, SnapshotError, ValueError) as exc:
        raise Fail(str(exc)) from None
    finally:
        cm.close()


def _print_event(ev: LedgerEvent) -> None:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.ledger import event_summary
    from chronoml.timeutil import iso

    click.echo(
        f"ledger #{ev.seq}  {iso(ev.effective_at)}  {ev.actor}  {ev.endpoint}: {event_summary(ev)}"
        f"  [{ev.hash[:12]}]"
    )
    card = (ev.payload or {}).get("model_card") if ev.kind == "deploy" else None
    if card and card.get("error"):
        click.echo(f"warning: the model card was not stored: {card['error']}", err=True)


def _num(x: Any, fmt: str = ".4g") -> str:
    """A number for people, or n/a."""
    return "n/a" if x is None else format(x, fmt)


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def window_options(*, variant: bool = False) -> Callable[[F], F]:
    """``--window/--from/--to`` (and ``--variant``) for commands that read a time range.

    The command receives ``window``, ``start`` and ``end`` (and ``variant``);
    :func:`window_bounds` turns the first three into microseconds.
    """
    opts = [
        click.option(
            "--window",
            default="1h",
            show_default=True,
            help="Look back this long from --to: 30s, 15m, 1h, 7d.",
        ),
        click.option("--from", "start", help="Range start (ISO 8601); overrides --window."),
        click.option("--to", "end", help="Range end (ISO 8601) [default: now]."),
    ]
    if variant:
        opts.append(click.option("--variant", help="Only this variant's decisions."))

    def wrap(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return wrap


def window_heading(rep: dict[str, Any], groups: list[Any]) -> list[str]:
    """The first lines of a report over a window: its size and span, and a note if empty."""
    w = rep["window"]
    lines = [f"{rep['endpoint']}: {w['rows']} decisions from {w['from']} to {w['to']}"]
    if not groups:
        lines.append("  no decisions in this window")
    return lines


def window_bounds(window: str, start: str | None, end: str | None) -> tuple[int, int]:
    """``[begin, stop)`` in microseconds: ``--to`` (default now) back ``--window``, or ``--from``."""
    try:
        w = Window.parse(window, start, end)
    except BadQuery as exc:
        raise Fail(f"--{exc.field}: {exc.message}" if exc.field else exc.message) from None
    return w.start, w.end


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="CHRONOML_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the embedded store, MLflow store and archives [env CHRONOML_HOME; default ./.chronoml].",
)
@click.option(
    "--store",
    envvar="CHRONOML_STORE",
    help="Database URL for chronoml's tables, e.g. postgresql+psycopg://host/db [env CHRONOML_STORE].",
)
@click.option(
    "--url",
    envvar="CHRONOML_URL",
    help="A chronoml server: deploy, weights, rollback, retire, feedback, approve, retrain, "
    "token create and revoke then go through its API as the principal of CHRONOML_TOKEN "
    "[env CHRONOML_URL].",
)
@click.option(
    "--signing-key",
    envvar="CHRONOML_SIGNING_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The evidence log's Ed25519 signing key, created 0600 if absent "
    "[env CHRONOML_SIGNING_KEY; default $CHRONOML_HOME/signing.key].",
)
@click.version_option(package_name="chronoml")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    store: str | None,
    url: str | None,
    signing_key: Path | None,
) -> None:
    """chronoml: which model was live, trained on what, decided what, and why.

    Deploys MLflow models behind a logging gateway and keeps an append-only,
    hash-chained ledger of every change, so any past moment can be answered.
    Times are ISO 8601; without an offset they are UTC.
    """
    ctx.obj = {"home": home, "store": store, "url": url, "signing_key": signing_key}


class Remote:
    """A chronoml server's API, called as the principal of a token (``--url`` mode)."""

    def __init__(self, url: str, token: str) -> None:
        # lazy: the HTTP client loads only for --url
        import httpx

        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        # lazy: the HTTP client loads only for --url
        import httpx

        try:
            r = self._client.request(
                method,
                path,
                json=body,
                params={k: v for k, v in params.items() if v is not None},
            )
        except httpx.HTTPError as exc:
            raise Fail(f"cannot reach {self.url}: {exc}") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            raise Fail(f"{self.url}: {err.get('message') or r.text} (HTTP {r.status_code})")
        return data

    def close(self) -> None:
        self._client.close()


@contextmanager
def remote(ctx: click.Context) -> Iterator[Remote | None]:
    """The server to change things through, when ``--url`` is given; None otherwise."""
    url = (ctx.find_root().obj or {}).get("url")
    if not url:
        yield None
        return
    token = os.environ.get("CHRONOML_TOKEN")
    if not token:
        raise Fail(
            "--url needs a token: set CHRONOML_TOKEN (chronoml token create NAME --role ...)"
        )
    r = Remote(url, token)
    try:
        yield r
    finally:
        r.close()


def print_remote_event(endpoint: str, answer: dict[str, Any]) -> None:
    """The event a server recorded, as :func:`_print_event` prints a local one."""
    ev = answer["event"]
    click.echo(
        f"ledger #{ev['seq']}  {ev['effective_at']}  {ev['actor']}  {endpoint}: {ev['summary']}"
    )
    for w in answer.get("warnings", []):
        click.echo(f"warning: {w}", err=True)


def main() -> None:

    # MLflow's telemetry is off for this process and everything it starts
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    cli(prog_name="chronoml")
