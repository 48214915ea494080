"""The API key store, in the ledger's database (``api_keys``, SQLite or PostgreSQL): the
ledger is already the one store every process of a deployment shares, and each key change
goes into its hash-chained audit trail in the same transaction.

Only the SHA-256 of a key's secret is stored; the token is shown once, by ``create``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from actions import audit
from actions.audit import Entry
from actions.backends import open_ledger
from actions.ledger import Ledger
from closedloop.access import (
    InvalidKeyError,
    NewKey,
    Principal,
    Role,
    StoredKey,
    check,
    local_admin,
    new_key,
    parse,
)
from closedloop.settings import Profile, Settings

TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
BUSY_MS = 50  # how long noting a use may wait for SQLite's writer


class KeyStoreError(Exception):
    """No such key, or not in a state that allows the change."""


@dataclass(frozen=True)
class KeyRow:
    """What ``keys list`` shows of a key."""

    key_id: str
    name: str
    role: str
    created_at: str
    created_by: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None
    revoked_by: str | None

    def state(self, now: datetime) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if datetime.fromisoformat(self.expires_at) <= now else "active"


def _stored(row: dict[str, Any]) -> StoredKey:
    revoked = row["revoked_at"]
    return StoredKey(
        row["key_id"], row["name"], Role(row["role"]), row["secret_hash"],
        datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["expires_at"]),
        datetime.fromisoformat(revoked) if revoked else None,
    )  # fmt: skip


class KeyStore:
    """Keys over one ledger connection (not shared between threads)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._touched: dict[str, datetime] = {}

    def create(
        self, name: str, role: Role, expires_at: datetime, by: Principal, now: datetime
    ) -> NewKey:
        """A new key for ``name``; its token is in the answer and nowhere else."""
        if not name.strip() or len(name) > 100:
            raise KeyStoreError("give the key a name (who or what uses it), up to 100 characters")
        key = new_key()
        with self.ledger.write() as tx:
            tx.run(
                "INSERT INTO api_keys (key_id, name, role, secret_hash, created_at, created_by,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.key_id, name, role.value, key.secret_hash, now.isoformat(), by.label,
                 expires_at.isoformat()),
            )  # fmt: skip
            audit.append(tx, [_entry("created", key.key_id, name, role, expires_at, by, now)])
        return key

    def revoke(self, key_id: str, by: Principal, now: datetime) -> KeyRow:
        with self.ledger.write() as tx:
            found = tx.rows("SELECT * FROM api_keys WHERE key_id = ?", (key_id,))
            if not found:
                raise KeyStoreError(f"no API key {key_id!r}")
            row = found[0]
            if row["revoked_at"]:
                raise KeyStoreError(f"API key {key_id} was revoked at {row['revoked_at']}")
            tx.run(
                "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE key_id = ?",
                (now.isoformat(), by.label, key_id),
            )
            stored = _stored(row)
            audit.append(
                tx,
                [_entry("revoked", key_id, row["name"], stored.role, stored.expires_at, by, now)],
            )
        return self.get(key_id)

    def get(self, key_id: str) -> KeyRow:
        rows = self.ledger.read().rows("SELECT * FROM api_keys WHERE key_id = ?", (key_id,))
        if not rows:
            raise KeyStoreError(f"no API key {key_id!r}")
        return _row(rows[0])

    def list(self) -> list[KeyRow]:
        rows = self.ledger.read().rows("SELECT * FROM api_keys ORDER BY created_at, key_id")
        return [_row(row) for row in rows]

    def authenticate(self, token: str, now: datetime) -> Principal:
        """The principal of a token; raises :class:`~closedloop.access.InvalidKeyError`. Notes when
        it was used (at most once a minute per key, never waiting for the ledger's writers)."""
        parsed = parse(token)
        stored = None
        if parsed is not None:
            rows = self.ledger.read().rows("SELECT * FROM api_keys WHERE key_id = ?", (parsed[0],))
            stored = _stored(rows[0]) if rows else None
        principal = check(token, stored, now)
        self._touch(principal.id, now)
        return principal

    def _touch(self, key_id: str, now: datetime) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < TOUCH_EVERY:
            return
        tx = self.ledger.read()
        if not self.ledger.postgres:
            tx.run(f"PRAGMA busy_timeout={BUSY_MS}")
        try:  # one autocommitted row update, outside the audit's serialised writes
            tx.run(
                "UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (now.isoformat(), key_id)
            )
        except sqlite3.OperationalError:  # a writer holds the database: noted at a later use
            return
        finally:
            if not self.ledger.postgres:
                tx.run(f"PRAGMA busy_timeout={int(self.ledger.busy_seconds * 1000)}")
        self._touched[key_id] = now


def _row(row: dict[str, Any]) -> KeyRow:
    return KeyRow(**{name: row[name] for name in KeyRow.__dataclass_fields__})


def _entry(
    verb: str, key_id: str, name: str, role: Role, expires_at: datetime, by: Principal,
    now: datetime,
) -> Entry:  # fmt: skip
    payload = {
        "verb": verb, "key_id": key_id, "name": name, "role": role.value,
        "expires_at": expires_at.isoformat(), "by": by.label,
    }  # fmt: skip
    return Entry("key", now, payload, key=f"key:{key_id}")


def cli_principal(settings: Settings, now: datetime) -> Principal:
    """Who the CLI acts as: the key in ``CLOSEDLOOP_API_KEY`` (checked against the store), or
    the local admin of an embedded home; raises ValueError saying why neither holds."""
    if settings.api_key is None:
        if settings.profile is Profile.EMBEDDED:
            return local_admin()
        ledger = open_ledger(settings)
        try:
            admins = [k for k in KeyStore(ledger).list() if k.role == Role.ADMIN]
        finally:
            ledger.close()
        if any(k.state(now) == "active" for k in admins):
            raise ValueError(
                "the cluster profile acts with a key: set CLOSEDLOOP_API_KEY "
                "(an admin makes one with 'closedloop keys create')"
            )
        return local_admin()  # bootstrap: no admin key exists yet to make the first one
    ledger = open_ledger(settings)
    try:
        return KeyStore(ledger).authenticate(settings.api_key.get_secret_value(), now)
    except InvalidKeyError as error:
        raise ValueError(f"CLOSEDLOOP_API_KEY: {error}") from None
    finally:
        ledger.close()
