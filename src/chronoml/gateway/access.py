"""Who is asking, and may they: the checks every request passes before a view runs.

In order: the Host header must name this server (421 otherwise, against DNS
rebinding); a change from a browser must come from this server's own origin
(403) and carry JSON (415, so a page cannot post a form or ``text/plain``);
every body is capped (413); then the caller is authenticated (a chronoml
token or an OIDC JWT; none is the anonymous principal) and the route's
action is checked against the principal's roles (401 without credentials,
403 naming the role that is missing). Every route names its action in
:data:`ACTIONS`; a route that does not is refused when the app is built.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from chronoml.auth import (
    Authenticator,
    AuthError,
    JwtVerifier,
    OidcSettings,
    Principal,
    bearer,
    client_address,
    content_type_allowed,
    default_allowed_hosts,
    hash_secret,
    host_allowed,
    origin_allowed,
    parse_trusted_proxies,
)
from chronoml.auth.access import TokenCache
from chronoml.auth.tokens import TokenRecord, looks_like_secret
from chronoml.errors import StoreError
from chronoml.gateway.access_log import access_log, write_line
from chronoml.gateway.responses import error_body, for_error
from chronoml.gateway.rules import ACTIONS, check
from chronoml.settings import Settings
from chronoml.store.database import Store

Handler = Callable[[Request], Awaitable[Response]]

#: The web UI's session: the token a login page was given, HttpOnly and SameSite=Strict.
SESSION_COOKIE = "chronoml_session"

# Bodies a change may carry: JSON, or (predict only) MLflow's CSV.
JSON_TYPES = ("application/json",)
PREDICT_TYPES = ("application/json", "text/csv")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class Access:
    """The request checks of one server, over its store's tokens."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenCache(store, ttl_s=max(settings.poll_interval_s, 0.05))
        oidc = None
        if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks:
            oidc = JwtVerifier(
                OidcSettings(
                    issuer=settings.oidc_issuer,
                    audience=settings.oidc_audience,
                    jwks=settings.oidc_jwks,
                    roles_claim=settings.oidc_roles_claim,
                )
            )
        self.authenticator = Authenticator(
            self.tokens, oidc=oidc, open_predict=settings.open_predict
        )
        self.hosts = default_allowed_hosts(settings.bind_host) | set(settings.allowed_hosts)
        self.proxies = parse_trusted_proxies(settings.trusted_proxies)
        # Answers that hold for a while, so the checks cost a dict lookup per request:
        # Host header values (fixed by configuration), and principals by credentials
        # and client. A principal is kept until its token records are ttl_s old (a
        # revocation or an expiry elsewhere takes effect within that, as with the token
        # cache itself) or the token expires, and looked up again in the background from
        # half that age on, so a request seldom waits for the store.
        self.clock: Callable[[], float] = time.monotonic
        self.tokens.clock = lambda: self.clock()
        self._host_ok: dict[bytes, bool] = {}
        self._principals: dict[tuple[bytes, str | None], _Kept] = {}
        # the lookup under way per credentials: requests that arrive while it runs wait
        # for it instead of each reading the store (16 connections, one store read)
        self._pending: dict[tuple[bytes, str | None], asyncio.Future[Principal]] = {}
        self._refreshing: set[asyncio.Task[Principal]] = set()
        self._ttl_s = self.tokens.ttl_s
        self._generation = 0  # counts forget(): an answer read before one is not kept

    # --- before any view -----------------------------------------------------

    def refuse(self, scope: Scope, predict: bool = False) -> tuple[int, bytes] | None:
        """The status and body refusing a request outright, or None to go on."""
        method = scope.get("method", "GET")
        raw = scope.get("headers", ())
        host = next((v for k, v in raw if k == b"host"), b"")
        ok = self._host_ok.get(host)
        if ok is None:
            ok = host_allowed(host.decode("latin-1") or None, self.hosts)
            if len(self._host_ok) < 1024:
                self._host_ok[host] = ok
        if ok and predict and method == "POST":
            # the hot path: a JSON body to predict, no Origin, a small declared size
            fast = _fast_predict_headers(raw, self.settings.max_body_bytes)
            if fast:
                return None
        headers = _headers(scope)
        if not ok:
            return error_body(
                421,
                "misdirected_request",
                f"Host {headers.get('host')!r} is not this server's; start it with "
                "--allowed-host to accept it",
            )
        declared = headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_body(413, "body_too_large", f"request body over {limit} bytes")
        if method in _SAFE:
            return None
        if not origin_allowed(
            headers.get("origin"),
            headers.get("host"),
            self.settings.allowed_origins,
            scheme=scope.get("scheme", "http"),
        ):
            return error_body(
                403, "foreign_origin", f"changes from origin {headers.get('origin')!r} are refused"
            )
        has_body = (declared not in (None, "0")) or "transfer-encoding" in headers
        allowed = PREDICT_TYPES if predict else JSON_TYPES
        if has_body and not content_type_allowed(headers.get("content-type"), allowed):
            return error_body(
                415,
                "unsupported_media_type",
                f"send the body as {' or '.join(allowed)} "
                f"(got {headers.get('content-type') or 'no Content-Type'})",
                "content-type",
            )
        return None

    def client(self, scope: Scope) -> str | None:
        peer = scope.get("client")
        return client_address(
            peer[0] if peer else None, _headers(scope).get("x-forwarded-for"), self.proxies
        )

    async def principal(self, scope: Scope) -> Principal:
        """The caller; raises Unauthenticated for credentials that are not valid."""
        raw = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        if not raw:
            raw = next((v for k, v in scope.get("headers", ()) if k == b"cookie"), b"")
        peer = scope.get("client")
        key = (raw, peer[0] if peer and not self.proxies else None)
        got = self._principals.get(key)
        if got is not None:
            now = self.clock()
            if now < got.until:
                if now >= got.refresh_from and key not in self._pending:
                    self._refresh(key, scope)
                return got.principal
        if key[1] is None and self.proxies:
            # behind a proxy the client is in X-Forwarded-For: the answer is this request's
            return (await self._authenticate(scope, False))[0]
        while (pending := self._pending.get(key)) is not None:
            # a lookup of these credentials is under way: its answer is this request's too
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled, not the lookup
        return await self._lookup(key, scope, self._begin(key), False)

    def _begin(self, key: tuple[bytes, str | None]) -> asyncio.Future[Principal]:
        """The lookup of ``key`` is under way from now: later requests wait for it."""
        done: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._pending[key] = done
        return done

    def _refresh(self, key: tuple[bytes, str | None], scope: Scope) -> None:
        """Look ``key`` up again in the background; the kept answer serves until then."""
        done = self._begin(key)  # at once: the next requests of this turn start no other
        task = asyncio.get_running_loop().create_task(self._lookup(key, scope, done, True))
        self._refreshing.add(task)

        def finished(t: asyncio.Task[Principal]) -> None:
            self._refreshing.discard(t)
            if t.cancelled():
                if not done.done():  # cancelled before it ran: nobody is left waiting on it
                    done.cancel()
                if self._pending.get(key) is done:
                    del self._pending[key]
            else:
                t.exception()  # retrieved: a refusal is the next request's to hear

        task.add_done_callback(finished)

    async def _lookup(
        self,
        key: tuple[bytes, str | None],
        scope: Scope,
        done: asyncio.Future[Principal],
        refresh: bool,
    ) -> Principal:
        generation = self._generation
        try:
            p, until = await self._authenticate(scope, refresh)
        except asyncio.CancelledError:
            done.cancel()  # the requests waiting for it look up again
            raise
        except BaseException as exc:
            if refresh and generation == self._generation:
                # refused now (revoked, expired) or not checkable: nothing is kept, so the
                # next request with these credentials hears it
                self._principals.pop(key, None)
            done.set_exception(exc)
            done.exception()  # marked retrieved: the waiters, if any, raise it as well
            raise
        finally:
            if self._pending.get(key) is done:
                del self._pending[key]
        done.set_result(p)
        if generation == self._generation:  # no token changed here while it ran
            if len(self._principals) > 10_000:
                self._principals.clear()
            self._principals[key] = _Kept(until, until - self._ttl_s / 2, p)
        return p

    def forget(self) -> None:
        """Drop cached tokens and principals (this server just created or revoked a token)."""
        self.tokens.forget()
        self._principals.clear()
        # a lookup under way may have read the store before the change: its answer
        # still goes to the requests that wait for it, but is not kept
        self._pending.clear()
        self._generation += 1

    async def _authenticate(self, scope: Scope, refresh: bool) -> tuple[Principal, float]:
        """The principal, and until when (on :attr:`clock`) it may be kept."""
        headers = _headers(scope)
        authorization = headers.get("authorization")
        if authorization is None and "cookie" in headers:
            # the web UI's session cookie; changes made with it pass the Origin check first
            session = _cookie(headers["cookie"], SESSION_COOKIE)
            if session:
                authorization = f"Bearer {session}"
        client = self.client(scope)
        credential = bearer(authorization)
        if credential is not None and looks_like_secret(credential):
            digest = hash_secret(credential)
            entry = self.tokens.entry(digest)
            if entry is None:
                # first use in a while: the store lookup leaves the event loop free
                await run_in_threadpool(self.tokens, digest)
            elif refresh and self.clock() - entry[0] >= self._ttl_s / 2:
                await run_in_threadpool(self.tokens.read, digest)
            entry = self.tokens.entry(digest)
            p = self.authenticator.authenticate(authorization, client)
            return p, self._kept_until(entry)
        now = self.clock()
        if credential is not None:  # a JWT: its keys may need fetching
            p = await run_in_threadpool(self.authenticator.authenticate, authorization, client)
            return p, now + self._ttl_s
        return self.authenticator.authenticate(None, client), now + self._ttl_s

    def _kept_until(self, entry: tuple[float, list[TokenRecord]] | None) -> float:
        """Until when a principal of these token records may be kept: the records' age
        reaching ttl_s, or the token expiring (or its revocation taking effect) first."""
        now = self.clock()
        if entry is None:  # forgotten meanwhile: this answer is for this request only
            return now
        until = entry[0] + self._ttl_s
        ends = [t for r in entry[1] for t in (r.expires_at, r.revoked_at) if t is not None]
        if ends:
            left_s = (min(ends) - self.authenticator.clock()) / 1e6
            until = min(until, now + left_s)
        return until

    # --- around each view ----------------------------------------------------

    def guard(self, route: Route) -> Route:
        """``route`` with its action checked first (and its request logged after)."""
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        key = (methods[0], route.path)
        if key not in ACTIONS:
            raise RuntimeError(f"route {key} names no action in gateway/access.py: refusing it")
        rule = ACTIONS[key]
        inner = route.endpoint

        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            principal = None
            try:
                principal = await self.principal(request.scope)
                request.state.principal = principal
                if rule is not None:
                    check(principal, rule, request.path_params.get("endpoint"))
                response: Response = await inner(request)
            except (AuthError, StoreError) as exc:
                response = for_error(exc)
                if exc.status == 401 and route.path.startswith("/ui/") and request.method == "GET":
                    # a page, not an API: send the browser to log in, then back here
                    target = quote(
                        request.url.path + ("?" + request.url.query if request.url.query else "")
                    )
                    response = RedirectResponse(f"/ui/login?next={target}", 303)
            self.log(request, principal, response.status_code, started)
            return response

        return Route(route.path, guarded, methods=list(route.methods or ()), name=route.name)

    def log(
        self, request: Request, principal: Principal | None, status: int, started: float
    ) -> None:
        if access_log.isEnabledFor(logging.INFO):
            route = request.scope.get("route")
            path = getattr(route, "path", request.url.path)
            self.write_line(principal, request.method, path, status, started)

    def write_line(
        self, principal: Principal | None, method: str, route: str, status: int, started: float
    ) -> None:
        """One structured line per request (see :func:`access_log.write_line`)."""
        write_line(principal, method, route, status, started)


@dataclass(frozen=True, slots=True)
class _Kept:
    """A principal kept for its credentials: until when, and when to look it up again."""

    until: float
    refresh_from: float
    principal: Principal


def principal_of(request: Request) -> Principal:
    """The principal the guard authenticated for this request."""
    got = getattr(request.state, "principal", None)
    if not isinstance(got, Principal):
        raise RuntimeError("no principal: the route was not guarded")
    return got


def actor_of(request: Request) -> str:
    """What the ledger records for this request: the principal, and where it came from."""
    p = principal_of(request)
    return f"{p.actor}@{p.client}" if p.client else p.actor


def guard_all(access: Access, routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    return [access.guard(r) if isinstance(r, Route) else r for r in routes]


def _fast_predict_headers(raw: Sequence[tuple[bytes, bytes]], limit: int) -> bool:
    """Whether a predict's headers need no closer look: JSON or CSV, no Origin, small enough."""
    ctype = length = None
    for k, v in raw:
        if k == b"origin" or k == b"transfer-encoding":
            return False
        if k == b"content-type" and ctype is None:
            ctype = v
        elif k == b"content-length" and length is None:
            length = v
    if ctype not in (b"application/json", b"text/csv"):
        return False
    return length is not None and length.isdigit() and int(length) <= limit


def _headers(scope: Scope) -> dict[str, str]:
    # the first of each name, as Starlette's Headers.get gives it
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1")
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


def _cookie(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, if it is there."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return None
