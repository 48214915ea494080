"""Failures a user meets become one line naming the fix; a bug keeps its traceback."""

from __future__ import annotations

import sqlite3

import httpx
import psycopg

from actions.ledger import LedgerBusyError
from closedloop.terminal import known_failure


def test_servers_down_and_busy_databases_name_the_fix():
    down = psycopg.OperationalError("connection failed: refused\nIs the server running?")
    assert known_failure(down) == (
        "cannot reach PostgreSQL: connection failed: refused; start it or fix "
        "CLOSEDLOOP_POSTGRES_DSN"
    )
    refused = httpx.ConnectError("All connection attempts failed")
    assert "closedloop serve" in known_failure(refused)
    assert "no answer in time" in known_failure(httpx.ReadTimeout("timed out"))
    assert "try again" in known_failure(LedgerBusyError(10))
    assert "try again" in known_failure(sqlite3.OperationalError("database is locked"))


def test_a_bug_is_not_dressed_up_as_a_user_error():
    assert known_failure(KeyError("x")) is None
    assert known_failure(sqlite3.OperationalError("no such table: decisions")) is None
