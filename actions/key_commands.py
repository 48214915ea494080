"""CLI edge of the API keys: ``closedloop keys create | list | revoke`` (admin only)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from closedloop.access import Permission, Principal, Role, expiry
from closedloop.settings import Settings
from closedloop.terminal import (
    AsJson,
    UserError,
    console,
    emit_json,
    make_table,
    principal_of,
    settings_of,
)

keys_app = typer.Typer(
    help="API keys of the service and the CLI: create (shown once), list, revoke.",
    no_args_is_help=True,
)


def _now() -> datetime:
    return datetime.now(UTC)  # keys live in wall-clock time, whatever the world's clock


def make_key(
    settings: Settings, name: str, role: Role, expires: str, by: Principal
) -> tuple[str, str, datetime]:
    """(key id, token, expiry) of a new key, made by ``by``."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore, KeyStoreError

    now = _now()
    try:
        expires_at = expiry(expires, now)
    except ValueError as error:
        raise UserError(str(error)) from None
    ledger = open_ledger(settings)
    try:
        key = KeyStore(ledger).create(name, role, expires_at, by, now)
    except KeyStoreError as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    return key.key_id, key.token, expires_at


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="who or what uses the key (a person, an NMS)")],
    role: Annotated[Role, typer.Option(help="what the key may do (docs/security.md)")],
    expires: Annotated[
        str, typer.Option(help="lifetime (90d, 12h) or the date it expires (2027-06-30)")
    ] = "90d",
) -> None:
    """Make a key and print its token once: only its SHA-256 is stored."""
    by = principal_of(ctx, Permission.MANAGE_KEYS)
    key_id, token, expires_at = make_key(settings_of(ctx), name, role, expires, by)
    console.print(
        f"API key {key_id} for {name} (role {role.value}, expires {expires_at:%Y-%m-%d %H:%M} "
        "UTC); shown this once, keep it secret:"
    )
    print(token)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: AsJson = False,
) -> None:
    """Every key: who, role, state, expiry, last use (never a secret)."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore

    principal_of(ctx, Permission.MANAGE_KEYS)
    ledger = open_ledger(settings_of(ctx))
    try:
        rows = KeyStore(ledger).list()
    finally:
        ledger.close()
    now = _now()
    if as_json:
        emit_json([asdict(r) | {"state": r.state(now)} for r in rows])
        return
    shown = make_table(
        f"API keys: {len(rows)}",
        "id", "name", "role", "state", "expires", "last used", "created by", keys=("id",),
    )  # fmt: skip
    for r in rows:
        shown.add_row(
            r.key_id, r.name, r.role, r.state(now), r.expires_at[:16],
            (r.last_used_at or "never")[:16], r.created_by,
        )  # fmt: skip
    console.print(shown)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="key id")]) -> None:
    """Revoke a key: refused from its next request on."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore, KeyStoreError

    by = principal_of(ctx, Permission.MANAGE_KEYS)
    ledger = open_ledger(settings_of(ctx))
    try:
        row = KeyStore(ledger).revoke(key_id, by, _now())
    except KeyStoreError as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    console.print(f"API key {row.key_id} ({row.name}) revoked by {by.label}")
