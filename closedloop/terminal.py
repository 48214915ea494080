"""What every command shares: the consoles, user errors and reading the settings off the context."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Collection
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from closedloop.access import AccessDeniedError, Permission, Principal
from closedloop.settings import Settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


AsJson = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts (nothing else on stdout)")
]


def emit_json(data: Any) -> None:
    """``data`` as JSON on stdout and nothing else: what every ``--json`` prints. Dataclasses,
    pydantic models, datetimes, enums and paths become plain JSON values; a number that is not
    finite (NaN, infinity), which strict JSON cannot hold, becomes null."""
    plain = _finite(json.loads(json.dumps(data, default=_plain)))
    sys.stdout.write(json.dumps(plain, indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def make_table(
    title: str | None, *columns: str, keys: Collection[str] = (), right: Collection[str] = ()
) -> Table:
    """A table whose ``keys`` columns (what a person copies: action keys, ids) are printed
    whole on one line, the other columns giving way; other cells wrap rather than end in '…'."""
    out = Table(title=title)
    for name in columns:
        out.add_column(
            name, no_wrap=name in keys, overflow="fold",
            justify="right" if name in right else "left",
        )  # fmt: skip
    return out


class UserError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


_SERVERS_DOWN = {  # an exception class (by module and name) → what the user should do
    "psycopg.OperationalError": "cannot reach PostgreSQL: {first}; start it or fix "
    "CLOSEDLOOP_POSTGRES_DSN",
    "sqlalchemy.exc.OperationalError": "cannot reach the database: {first}; start it or fix "
    "CLOSEDLOOP_POSTGRES_DSN",
    "redis.exceptions.ConnectionError": "cannot reach Redis: {first}; start it or fix "
    "CLOSEDLOOP_REDIS_URL",
    "redis.exceptions.TimeoutError": "Redis did not answer in time: {first}; check "
    "CLOSEDLOOP_REDIS_URL",
    "httpx.ConnectError": "cannot reach {first}; is the service running ('closedloop serve')?",
    "httpx.TimeoutException": "no answer in time: {first}; is the service overloaded or down?",
    "actions.ledger.LedgerBusyError": "{first}; another closedloop process is writing to it: "
    "try again when it is done (repeats change nothing)",
}


def known_failure(error: BaseException) -> str | None:
    """One line naming the fix for a failure a user meets (a server down, a database busy), or
    None for a bug, whose traceback must stay. Matched by class name: nothing is imported."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    for kind in type(error).__mro__:
        template = _SERVERS_DOWN.get(f"{kind.__module__}.{kind.__qualname__}")
        if template is not None:
            return template.format(first=first)
    if type(error).__name__ == "OperationalError" and "locked" in first:  # sqlite3, directly
        return f"{first}: another closedloop process holds it; try again when it is done"
    return None


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the entry point loaded (sub-commands reach them through the root context)."""
    return ctx.find_root().obj


PRINCIPAL = "closedloop.principal"  # the entry point's resolver, in the root context's meta


def principal_of(ctx: typer.Context, permission: Permission) -> Principal:
    """Who runs this command (``CLOSEDLOOP_API_KEY``'s key, or the local admin of an embedded
    home), refused as a user error unless its role may ``permission``."""
    try:
        return ctx.find_root().meta[PRINCIPAL]().require(permission)
    except AccessDeniedError as error:
        raise UserError(str(error)) from None


def describe_validation(error: ValidationError) -> str:
    """Each problem as 'where: message', without pydantic's boilerplate."""
    problems = []
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in e["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
