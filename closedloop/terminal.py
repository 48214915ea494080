"""What every command shares: the consoles, user errors and reading the settings off the context."""

from __future__ import annotations

import logging

import typer
from pydantic import ValidationError
from rich.console import Console

from closedloop.settings import Settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class UserError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the entry point loaded (sub-commands reach them through the root context)."""
    return ctx.find_root().obj


def describe_validation(error: ValidationError) -> str:
    """Each problem as 'where: message', without pydantic's boilerplate."""
    problems = []
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in e["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def quiet_logging() -> None:
    """Keep MLflow's and its migrations' info messages off the console."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
