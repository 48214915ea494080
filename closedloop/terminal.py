"""What every command shares: the consoles, user errors and reading the settings off the context."""

from __future__ import annotations

import typer
from rich.console import Console

from closedloop.settings import Settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class UserError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the entry point loaded (sub-commands reach them through the root context)."""
    return ctx.find_root().obj
