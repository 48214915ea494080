"""The pure access-control core: what each role may do, the token format and its check, key
lifetimes, the approval limits and the four-eyes rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closedloop.access import (
    PERMISSIONS,
    AccessDeniedError,
    InvalidKeyError,
    Permission,
    Principal,
    Role,
    StoredKey,
    check,
    digest,
    expiry,
    four_eyes,
    local_admin,
    name_of,
    new_key,
    parse,
    settle_permission,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def stored(key, role=Role.OPERATOR, **changes) -> StoredKey:
    values = {
        "key_id": key.key_id, "name": "ana", "role": role, "secret_hash": key.secret_hash,
        "created_at": NOW - timedelta(days=1), "expires_at": NOW + timedelta(days=1),
    } | changes  # fmt: skip
    return StoredKey(**values)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {Permission.READ}),
        (Role.OPERATOR, {Permission.READ, Permission.SETTLE, Permission.DISPATCH}),
        (
            Role.APPROVER,
            {Permission.READ, Permission.SETTLE, Permission.SETTLE_EXCEPTION, Permission.DISPATCH},
        ),
        (Role.DATA_SCIENTIST, {Permission.READ, Permission.TRAIN, Permission.PROMOTE}),
        (
            Role.MODEL_OWNER,
            {Permission.READ, Permission.MONITOR, Permission.ROLLBACK, Permission.HOLD},
        ),
        (Role.EVENT_SOURCE, {Permission.POST_EVENTS}),
        (Role.ADMIN, set(Permission)),
    ],
)
def test_each_role_may_do_exactly_its_part(role, allowed):
    someone = Principal("0a1b2c3d4e5f", "someone", role)
    assert {p for p in Permission if someone.may(p)} == allowed == PERMISSIONS[role]
    for refused in set(Permission) - allowed:
        with pytest.raises(AccessDeniedError, match=f"role {role} may not {refused}"):
            someone.require(refused)


def test_only_a_fresh_well_formed_token_with_its_secret_authenticates():
    key = new_key()
    assert parse(key.token) == (key.key_id, key.token.split("_", 2)[2])
    assert key.secret_hash == digest(parse(key.token)[1]) and key.secret_hash not in key.token
    assert check(key.token, stored(key), NOW) == Principal(key.key_id, "ana", Role.OPERATOR)
    other = new_key()
    forged = f"clk_{key.key_id}_{other.token.split('_', 2)[2]}"  # right id, wrong secret
    cases = {
        "not a closedloop API key": ("Bearer nonsense", stored(key)),
        "unknown API key": (forged, stored(key)),
        "was revoked": (key.token, stored(key, revoked_at=NOW - timedelta(hours=1))),
        "expired at": (key.token, stored(key, expires_at=NOW)),
    }
    for reason, (token, row) in cases.items():
        with pytest.raises(InvalidKeyError, match=reason):
            check(token, row, NOW)
    with pytest.raises(InvalidKeyError, match="unknown API key"):
        check(key.token, None, NOW)
    assert new_key().token != new_key().token


def test_key_lifetimes_are_durations_or_dates_in_the_future():
    assert expiry("90d", NOW) == NOW + timedelta(days=90)
    assert expiry("12h", NOW) == NOW + timedelta(hours=12)
    assert expiry("2027-06-30", NOW) == datetime(2027, 6, 30, tzinfo=UTC)
    for bad in ("soon", "2026-01-01", "0d"):
        with pytest.raises(ValueError, match="--expires"):
            expiry(bad, NOW)


def test_above_the_exception_limit_only_an_approver_settles():
    assert settle_permission(999.0, 1000.0) is Permission.SETTLE
    assert settle_permission(1000.5, 1000.0) is Permission.SETTLE_EXCEPTION
    assert settle_permission(1e9, None) is Permission.SETTLE


def test_four_eyes_refuses_whoever_requested_or_last_changed_by_name():
    ana = Principal("0a1b2c3d4e5f", "ana", Role.APPROVER)
    four_eyes(ana, "nms-east (1a2b3c4d5e6f)", None)  # someone else sent the event
    with pytest.raises(AccessDeniedError, match="requested this action"):
        four_eyes(ana, "ana (0a1b2c3d4e5f)", None)
    with pytest.raises(AccessDeniedError, match="requested"):
        four_eyes(ana, "ana (999999999999)", None)  # her second key
    with pytest.raises(AccessDeniedError, match="last changed"):
        four_eyes(ana, None, "ana (0a1b2c3d4e5f)")
    with pytest.raises(AccessDeniedError, match="local-admin requested"):
        four_eyes(local_admin(), local_admin().label, None)
    assert name_of("ana (0a1b2c3d4e5f)") == "ana" and name_of("local-admin") == "local-admin"


def test_the_role_table_of_the_docs_is_the_codes():
    """docs/security.md's permissions column says what PERMISSIONS grants, role by role."""
    text = (Path(__file__).parents[3] / "docs" / "security.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([a-z_, ]+) \|", text, flags=re.M)
    documented = {
        Role(role): set(Permission) if cell == "all" else {Permission(p) for p in cell.split(", ")}
        for role, cell in rows
    }
    assert documented == {role: set(granted) for role, granted in PERMISSIONS.items()}
