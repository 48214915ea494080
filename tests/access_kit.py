"""API keys for tests: ``make_key(settings, role)`` makes one in the home's key store (as the
local admin would with ``closedloop keys create``); ``bearer`` is its Authorization header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closedloop.access import Principal, Role, local_admin
from closedloop.settings import Settings


def make_key(settings: Settings, role: Role | str = Role.ADMIN, name: str | None = None) -> str:
    """The token of a new key of ``role`` (valid one day)."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore

    role = Role(role)
    now = datetime.now(UTC)
    ledger = open_ledger(settings)
    try:
        made = KeyStore(ledger).create(name or f"test {role}", role, now + timedelta(days=1),
                                       local_admin(), now)  # fmt: skip
    finally:
        ledger.close()
    return made.token


def bearer(settings: Settings, role: Role | str = Role.ADMIN, name: str | None = None) -> dict:
    """Headers that authenticate as a new key of ``role``."""
    return {"Authorization": f"Bearer {make_key(settings, role, name)}"}


def principal(role: Role | str, name: str = "someone", key_id: str = "0a1b2c3d4e5f") -> Principal:
    """A principal of ``role`` without a stored key (for the pure parts)."""
    return Principal(key_id, name, Role(role))
