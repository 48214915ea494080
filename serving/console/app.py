"""The console's routes. The worker's settings, ledger connection and policy are opened on the
first request (the worker is the entry point) and shared by the requests of this worker, one
at a time on the ledger connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

if TYPE_CHECKING:
    from actions.ledger import Ledger
    from actions.policy import Policy
    from closedloop.access import Principal
    from closedloop.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
console_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
console_app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
pages = APIRouter(include_in_schema=False)  # pages for people, not operations of the API


@dataclass
class Opened:
    settings: Settings
    ledger: Ledger
    policy: Policy
    clock: Callable[[], datetime]


class ConsoleState:
    """This worker's settings, ledger connection (used under a lock) and policy."""

    def __init__(self) -> None:
        self._opened: Opened | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[Opened]:
        with self._lock:
            if self._opened is None:
                self._opened = _open()
            yield self._opened


def _open() -> Opened:
    from actions.backends import open_ledger
    from actions.policy import load_policy
    from closedloop.clock import running_clock
    from closedloop.settings import Settings

    settings = Settings()
    return Opened(
        settings, open_ledger(settings), load_policy(settings.action_policy),
        running_clock(settings.clock_start),
    )  # fmt: skip


state = ConsoleState()
SESSION_SECONDS = 8 * 3600
PAST = {"approve": "approved", "reject": "rejected"}  # a verdict as the page reports it


def page(
    request: Request, name: str, began: float, status_code: int = 200, **context
) -> HTMLResponse:
    """Render a template; the server time it took is in ``Server-Timing``."""
    from serving.access import PRINCIPAL

    who = request.scope.get("state", {}).get(PRINCIPAL)
    response = templates.TemplateResponse(
        request, name, {**context, "who": who}, status_code=status_code
    )
    elapsed = (time.perf_counter() - began) * 1000
    response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
    return response


@pages.get("/", name="home")
def home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("inbox"), status_code=303)


@pages.get("/signin", response_class=HTMLResponse, name="signin")
def signin_page(request: Request) -> HTMLResponse:
    return page(request, "signin.html", time.perf_counter(), error=None)


@pages.post("/signin", response_class=HTMLResponse)
def signin(request: Request, key: Annotated[str, Form(max_length=200)]) -> HTMLResponse:
    """Check the key as the service's door would; keep it in an HttpOnly, SameSite=Strict
    cookie of the console's path for eight hours at most."""
    from actions.keys import KeyStore
    from closedloop.access import InvalidKeyError
    from serving.access import SESSION_COOKIE

    began = time.perf_counter()
    with state.use() as opened:
        try:
            KeyStore(opened.ledger).authenticate(key.strip(), datetime.now(UTC))
        except InvalidKeyError as error:
            return page(request, "signin.html", began, status_code=401, error=str(error))
    answer = RedirectResponse(request.url_for("inbox"), status_code=303)
    answer.set_cookie(
        SESSION_COOKIE, key.strip(), max_age=SESSION_SECONDS, path=_console_path(request),
        secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )  # fmt: skip
    return answer


@pages.post("/signout", name="signout")
def signout(request: Request) -> RedirectResponse:
    from serving.access import SESSION_COOKIE

    answer = RedirectResponse(request.url_for("signin"), status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path=_console_path(request))
    return answer


def _console_path(request: Request) -> str:
    return request.url_for("home").path.rstrip("/") or "/"


INBOX_PAGE = 100  # cards per inbox page unless asked for more


@pages.get("/inbox", response_class=HTMLResponse, name="inbox")
def inbox_page(
    request: Request,
    start: Annotated[int, Query(ge=0, description="most urgent actions skipped")] = 0,
    size: Annotated[int, Query(ge=1, le=1_000, description="actions per page")] = INBOX_PAGE,
) -> HTMLResponse:
    from actions.approvals import expire
    from actions.views import inbox

    began = time.perf_counter()
    with state.use() as opened:
        now = opened.clock()
        expire(opened.ledger, now)
        found = inbox(opened.ledger, opened.policy, now, size, start)
    return page(request, "inbox.html", began, inbox=found, now=now, size=size)


@pages.get("/actions/{key}", response_class=HTMLResponse, name="action")
def action_page(request: Request, key: str) -> HTMLResponse:
    from actions.views import action_view

    began = time.perf_counter()
    with state.use() as opened:
        view = action_view(opened.ledger, key)
        now = opened.clock()
    return _action_page(request, began, key, view, now, None)


@pages.post("/actions/{key}/settle", response_class=HTMLResponse, name="settle")
def settle_action(
    request: Request,
    key: str,
    verdict: Annotated[str, Form(pattern="^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=2_000)] = "",
) -> HTMLResponse:
    from actions.approvals import ApprovalError, settle
    from actions.views import action_view

    began = time.perf_counter()
    who = principal_of(request)
    with state.use() as opened:
        now = opened.clock()
        try:
            if not comment.strip():
                raise ApprovalError("a comment is required: say why")
            status = settle(
                opened.ledger, key, verdict == "approve", who, comment.strip(), now,
                opened.policy.exception_above,
            )  # fmt: skip
            message = f"{PAST[verdict]}: the action is now {status}"
        except ApprovalError as error:
            message = str(error)
        view = action_view(opened.ledger, key)
    return _action_page(request, began, key, view, now, message)


def _action_page(request: Request, began: float, key: str, view, now, message) -> HTMLResponse:
    if view is None:
        raise HTTPException(404, f"no action {key}")
    return page(request, "action.html", began, view=view, now=now, message=message)


@pages.get("/history", response_class=HTMLResponse, name="history")
def history_page(
    request: Request,
    customer: str | None = None,
    cell: str | None = None,
    incident: str | None = None,
) -> HTMLResponse:
    from actions import audit
    from actions.views import history

    began = time.perf_counter()
    with state.use() as opened:
        rows = history(opened.ledger, customer, cell, incident)
        trail = audit.query(opened.ledger, customer, cell) if (customer or cell) else []
        verdict = audit.verify_shown(opened.ledger, trail, rows)  # not the whole chain
    return page(
        request, "history.html", began, rows=rows, trail=trail, verdict=verdict,
        customer=customer, cell=cell, incident=incident,
    )  # fmt: skip


@pages.get("/feed", response_class=HTMLResponse, name="feed")
def feed_page(request: Request, fragment: bool = False) -> HTMLResponse:
    from actions.views import budget_today, feed

    began = time.perf_counter()
    with state.use() as opened:
        entries = feed(opened.ledger)
        budget = budget_today(opened.ledger.read(), opened.policy, opened.clock())
    name = "feed_rows.html" if fragment else "feed.html"
    return page(request, name, began, entries=entries, budget=budget)


@pages.get("/dead-letters", response_class=HTMLResponse, name="dead_letters")
def dead_letters_page(request: Request, message: str | None = None) -> HTMLResponse:
    from actions.views import dead_letters

    began = time.perf_counter()
    with state.use() as opened:
        rows = dead_letters(opened.ledger)
    return page(request, "dead_letters.html", began, rows=rows, message=message)


@pages.post("/dead-letters/{key}/retry", name="retry")
def retry_letter(
    request: Request, key: str, comment: Annotated[str, Form(max_length=2_000)] = ""
) -> RedirectResponse:
    from actions.approvals import ApprovalError, retry

    with state.use() as opened:
        try:
            moved = retry(opened.ledger, key, principal_of(request), comment, opened.clock())
            message = f"{len(moved)} back to pending"
        except ApprovalError as error:
            message = str(error)
    target = request.url_for("dead_letters").include_query_params(message=message)
    return RedirectResponse(target, status_code=303)


@pages.get("/models", response_class=HTMLResponse, name="models")
def models_page(request: Request) -> HTMLResponse:
    from closedloop.models import SPECS
    from monitoring.summary import latest_runs
    from training import registry

    began = time.perf_counter()
    with state.use() as opened:
        settings = opened.settings
    tracking = registry.point_at(settings)
    versions = registry.list_versions(list(SPECS))
    latest = latest_runs(settings)
    return page(
        request, "models.html", began, versions=versions, latest=latest, tracking=tracking,
        workspace=settings.paths.evidently_workspace,
    )  # fmt: skip


@pages.get("/reports/{model}/{run}/{name}", name="report")
def report(model: str, run: str, name: str) -> FileResponse:
    """An Evidently report of a monitoring run, as the monitor wrote it."""
    from closedloop.models import SPECS
    from monitoring.summary import runs_in

    if model not in SPECS:
        raise HTTPException(404, f"no model {model}")
    with state.use() as opened:
        settings = opened.settings
    for summary in runs_in(settings.paths.monitoring(model)):
        if summary.run == run and name in summary.reports:
            return FileResponse(summary.reports[name], media_type="text/html")
    raise HTTPException(404, f"no report {name} in run {run} of {model}")


def principal_of(request: Request) -> Principal:
    """Who acts: the key the service's door let in (serving/access.py)."""
    from serving.access import principal_in

    return principal_in(request.scope)


console_app.include_router(pages)
