"""Access control, the pure part: roles and what each may do, API key tokens and their check,
the four-eyes rule and the approval limits. The key store is ``actions/keys.py``; the service's
door is ``serving/access.py``; the CLI's is the principal the entry point resolves.

A token is ``clk_<key id>_<secret>``: the key id finds the stored row, the secret (256 random
bits) is kept only as its SHA-256 and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

PREFIX = "clk"
TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
LOCAL_ADMIN = "local-admin"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    DATA_SCIENTIST = "data_scientist"
    MODEL_OWNER = "model_owner"
    EVENT_SOURCE = "event_source"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # scores, what-if, health, metrics, the OpenAPI document
    POST_EVENTS = "post_events"  # POST /events, closedloop replay
    SETTLE = "settle"  # approve, reject, retry actions up to the policy's exception limit
    SETTLE_EXCEPTION = "settle_exception"  # the same above that limit
    DISPATCH = "dispatch"  # closedloop actions dispatch
    TRAIN = "train"  # closedloop train (registers, the gate may promote)
    PROMOTE = "promote"  # make a newer version (a challenger) the champion by hand
    MONITOR = "monitor"  # closedloop monitor (and its gated retrain)
    ROLLBACK = "rollback"  # make an older version the champion again
    HOLD = "hold"  # hold a champion (the gate promotes nothing) and release it
    SET_POLICY = "set_policy"  # put a changed action policy in force
    MANAGE_KEYS = "manage_keys"  # closedloop keys create, list, revoke


_HUMAN = {Permission.READ}
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_HUMAN),
    Role.OPERATOR: frozenset(_HUMAN | {Permission.SETTLE, Permission.DISPATCH}),
    Role.APPROVER: frozenset(
        _HUMAN | {Permission.SETTLE, Permission.SETTLE_EXCEPTION, Permission.DISPATCH}
    ),
    Role.DATA_SCIENTIST: frozenset(_HUMAN | {Permission.TRAIN, Permission.PROMOTE}),
    Role.MODEL_OWNER: frozenset(
        _HUMAN | {Permission.MONITOR, Permission.ROLLBACK, Permission.HOLD}
    ),
    Role.EVENT_SOURCE: frozenset({Permission.POST_EVENTS}),
    Role.ADMIN: frozenset(Permission),
}
"""What each role may do. The admin may do everything, the four-eyes rule still applies."""


class AccessDeniedError(Exception):
    """The principal may not do this; the message says why (HTTP 403, CLI exit 2)."""


@dataclass(frozen=True)
class Principal:
    """Who acts: an API key (its id, name and role) or the local admin of an embedded home."""

    id: str
    name: str
    role: Role

    @property
    def label(self) -> str:
        """How the audit trail and the ledger name it: ``name (key id)``."""
        return self.name if self.id == LOCAL_ADMIN else f"{self.name} ({self.id})"

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    def require(self, permission: Permission) -> Principal:
        if not self.may(permission):
            raise AccessDeniedError(f"{self.label}: role {self.role} may not {permission}")
        return self


def local_admin() -> Principal:
    return Principal(LOCAL_ADMIN, LOCAL_ADMIN, Role.ADMIN)


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the token (shown once) and what is stored of it."""

    key_id: str
    token: str
    secret_hash: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> NewKey:
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secret}", digest(secret))


def parse(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    found = TOKEN.match(token.strip())
    return (found.group(1), found.group(2)) if found else None


@dataclass(frozen=True)
class StoredKey:
    """A key as the store keeps it (never the secret)."""

    key_id: str
    name: str
    role: Role
    secret_hash: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def principal(self) -> Principal:
        return Principal(self.key_id, self.name, self.role)


def check(token: str, stored: StoredKey | None, now: datetime) -> Principal:
    """The principal of a presented token, checked against its stored row; raises
    :class:`InvalidKeyError` with the reason (unknown, wrong secret, revoked, expired)."""
    parsed = parse(token)
    if parsed is None:
        raise InvalidKeyError("not a closedloop API key")
    key_id, secret = parsed
    if stored is None or stored.key_id != key_id:
        raise InvalidKeyError("unknown API key")
    if not hmac.compare_digest(digest(secret), stored.secret_hash):
        raise InvalidKeyError("unknown API key")  # the same answer as an unknown id
    if stored.revoked_at is not None:
        raise InvalidKeyError(f"API key {key_id} was revoked")
    if now >= stored.expires_at:
        raise InvalidKeyError(f"API key {key_id} expired at {stored.expires_at.isoformat()}")
    return stored.principal()


class InvalidKeyError(Exception):
    """A token that authenticates nobody (HTTP 401)."""


def expiry(text: str, now: datetime) -> datetime:
    """``90d``, ``12h`` or an ISO date or instant (UTC when it names no zone) → when a key
    expires; raises ValueError for anything else or a moment not in the future."""
    found = re.fullmatch(r"(\d+)([dh])", text.strip())
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        at = now + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    else:
        try:
            at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"--expires {text!r}: give e.g. 90d, 12h or 2027-06-30") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=now.tzinfo)
    if at <= now:
        raise ValueError(f"--expires {text!r} is not in the future")
    return at


def settle_permission(impact: float, exception_above: float | None) -> Permission:
    """What approving (or rejecting, retrying) an action of this impact takes: an operator up
    to the policy's exception limit, an approver above it."""
    if exception_above is not None and impact > exception_above:
        return Permission.SETTLE_EXCEPTION
    return Permission.SETTLE


def name_of(label: str) -> str:
    """The person a :attr:`Principal.label` names (``ana (0a1b2c3d4e5f)`` → ``ana``)."""
    return re.sub(r" \([0-9a-f]{12}\)$", "", label)


def four_eyes(principal: Principal, requested_by: str | None, changed_by: str | None) -> None:
    """Whoever requested an action or last changed it may not approve it: compared by name, so
    a second key of the same person counts as the same person."""
    for who, what in ((requested_by, "requested"), (changed_by, "last changed")):
        if who is not None and name_of(who) == principal.name:
            raise AccessDeniedError(
                f"{principal.label} {what} this action; someone else must approve it"
            )
