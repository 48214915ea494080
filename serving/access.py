"""The service's door, an ASGI middleware in front of every route: an API key (``Authorization:
Bearer <key>``) whose role may use the route (401, 403), JSON bodies only on POST (415), a
bounded body (413, refused before it is read into memory), and the published OpenAPI document
completed with the security scheme and the error bodies (:mod:`serving.openapi`).

A POST to a route whose bounded intake is full is refused first (503, :mod:`serving.shedding`).
Only liveness and readiness (``/livez``, ``/readyz``) answer without a key. Keys are checked
against the ledger's key store on a connection of this worker's own, in one thread, so a check
never waits on the event loop; a revoked key is refused from its next request on.
"""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from closedloop.access import InvalidKeyError, Permission, Principal
from serving.shedding import KINDS, intakes

if TYPE_CHECKING:
    from actions.keys import KeyStore
    from closedloop.settings import Settings

OPEN_PATHS = frozenset({"/livez", "/readyz"})
FORMS = "/console/"  # the console's pages post HTML forms
CONSOLE_OPEN = ("/console/signin", "/console/static/")  # before signing in
SESSION_COOKIE = "closedloop_key"  # the console's sign-in: the key, HttpOnly, SameSite=Strict
POST_EVENTS = "/events"
PRINCIPAL = "closedloop.principal"  # where the principal is put in the request's scope


def permission_for(method: str, path: str) -> Permission:
    """What a route takes: posting events, or reading (scores, health, metrics, the docs)."""
    return Permission.POST_EVENTS if (method, path) == ("POST", POST_EVENTS) else Permission.READ


def error_body(code: str, message: str, detail: object = None) -> bytes:
    """The service's one error body (``ErrorBody`` in the OpenAPI document)."""
    body = {"error": {"code": code, "message": message, "detail": detail}}
    return json.dumps(body).encode()


async def _answer(send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TokenBucket:
    """Events per second per key: ``rate`` sustained, ``burst`` at once (pure, clock given)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.levels: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def take(self, key: str, n: int, now: float) -> float:
        """0 when ``n`` events may pass now (and takes them), else seconds until they may. A
        full bucket lets any one batch pass, a larger one than the burst leaving a debt."""
        tokens, at = self.levels.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if n <= tokens or tokens >= self.burst:
            self.levels[key] = (tokens - n, now)
            return 0.0
        self.levels[key] = (tokens, now)
        return (min(n, self.burst) - tokens) / self.rate


class AccessControl:
    """ASGI middleware: see the module. Settings are read when the worker's first request
    arrives (the worker is the entry point); the key store opens then."""

    def __init__(self, app) -> None:
        self.app = app
        self.settings: Settings | None = None
        self.store: KeyStore | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="closedloop-keys")

    def _settings(self) -> Settings:
        if self.settings is None:
            from closedloop.settings import Settings

            self.settings = Settings()
        return self.settings

    def _open(self) -> KeyStore:
        from actions.backends import open_ledger
        from actions.keys import KeyStore

        return KeyStore(open_ledger(self._settings()))

    def _authenticate(self, token: str) -> Principal:
        if self.store is None:
            self.store = self._open()
        return self.store.authenticate(token, datetime.now(UTC))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        settings = self._settings()
        if method == "OPTIONS" and settings.cors_origins:
            await self.app(scope, receive, send)  # a CORS preflight carries no key
            return
        if method == "POST" and (kind := KINDS.get(path)) is not None:
            intake = intakes(settings.serve_max_pending)[kind]
            if intake.full:  # refused before any work, the key's check included
                await intake.busy()(scope, receive, send)
                return
        console = path.startswith(FORMS)
        if console and path.startswith(CONSOLE_OPEN):
            await self.app(scope, receive, send)
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            token = session_token(headers) if console else ""
            if console and not token and method == "GET":
                await _redirect(send, "/console/signin")
                return
            if not token:
                message = "send 'Authorization: Bearer <key>'"
                await self._refuse(send, 401, "unauthenticated", message)
                return
            if method == "POST" and not same_origin(headers):
                message = "a form signed in by cookie must be posted from the console itself"
                await _answer(send, 403, error_body("cross_site", message))
                return
        loop = asyncio.get_running_loop()
        try:
            principal = await loop.run_in_executor(self.thread, self._authenticate, token.strip())
        except InvalidKeyError as error:
            await self._refuse(send, 401, "unauthenticated", str(error))
            return
        if not principal.may(permission := permission_for(method, path)):
            message = f"{principal.label}: role {principal.role} may not {permission}"
            await _answer(send, 403, error_body("forbidden", message))
            return
        scope = {**scope, "state": {**scope.get("state", {}), PRINCIPAL: principal}}
        if method == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            form = path.startswith(FORMS) and kind == "application/x-www-form-urlencoded"
            if kind != "application/json" and not form:
                message = f"send the body as application/json, not {kind or 'nothing'}"
                await _answer(send, 415, error_body("unsupported_media_type", message))
                return
            body = await self._body(headers, receive, settings.max_body_bytes)
            if body is None:
                limit = settings.max_body_bytes
                message = f"the body is larger than {limit:,} bytes"
                await _answer(send, 413, error_body("body_too_large", message))
                return
            receive = _replay(body)
        if method == "GET" and path == "/docs.json":
            await self.app(scope, receive, _published(send))
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send, status: int, code: str, message: str) -> None:
        body = error_body(code, message)
        await _answer(send, status, body, {"WWW-Authenticate": 'Bearer realm="closedloop"'})

    async def _body(self, headers: dict[str, str], receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it is larger than ``limit`` (a declared length
        over it is refused before reading anything)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def session_token(headers: dict[str, str]) -> str:
    """The key the console's sign-in left in its cookie, or ''."""
    from http.cookies import CookieError, SimpleCookie

    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return ""
    found = jar.get(SESSION_COOKIE)
    return found.value.strip() if found else ""


def same_origin(headers: dict[str, str]) -> bool:
    """Whether a form post came from a page of this host (``Origin``, else ``Referer``)."""
    from urllib.parse import urlsplit

    source = headers.get("origin") or headers.get("referer") or ""
    return bool(source) and urlsplit(source).netloc == headers.get("host", "")


async def _redirect(send, location: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _replay(body: bytes):
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _published(send):
    """``send`` for the OpenAPI document: completed by :func:`serving.openapi.publish`."""
    from serving.openapi import publish

    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def patched(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(publish(json.loads(body))).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return patched


def principal_in(scope: dict[str, Any]) -> Principal:
    """The principal this middleware let in (the service's handlers run behind it)."""
    return scope["state"][PRINCIPAL]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
