"""The action ledger and outbox: every decision, its guards, approval and dispatch, the status
updates sent after it (a ticket resolved), the audit trail and the dispatcher's lease, in SQLite
(WAL, embedded profile) or PostgreSQL (cluster profile) with one schema.

Writes happen in serialised transactions (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so the audit hash chain has one writer at a time even across processes. A writer
waits for the lock at most ``busy_seconds`` (SQLite's busy handler retries until then; on
PostgreSQL the ``lock_timeout``), then gets :class:`LedgerBusyError` with nothing written: the
caller retries or answers "try again" (503), it never drops what it was writing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from actions.anchor import Anchor, Head
from actions.policy import INCIDENT_ACTIONS, ActionType


class Status(StrEnum):
    """Where a decision (or a status update) stands."""

    SUPPRESSED = "suppressed"
    AWAITING_APPROVAL = "awaiting_approval"
    PENDING = "pending"
    DELIVERING = "delivering"  # claimed by the dispatcher holding the lease
    DISPATCHED = "dispatched"
    DEAD_LETTER = "dead_letter"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    HELD_OUT = "held_out"  # the policy's random control group: recorded, never sent


QUEUED = frozenset({Status.PENDING, Status.DELIVERING})  # committed, not delivered yet
LIVE = QUEUED | {Status.AWAITING_APPROVAL, Status.DISPATCHED}  # an incident still open
TAKEN = LIVE | {Status.DEAD_LETTER}  # what the guards count as already decided


def sql_list(values: Iterable[str]) -> str:
    """``'a', 'b'``: sorted literals for an ``IN (...)`` written into SQL text (indexes)."""
    return ", ".join(f"'{value}'" for value in sorted(values))


EVENTS = """
CREATE TABLE IF NOT EXISTS {table} (
    sender TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
    cell_id TEXT NOT NULL, alarm_id TEXT, occurred_at TEXT NOT NULL, received_at TEXT NOT NULL,
    outcome TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (sender, event_id))"""
"""Events keyed by their id within their sender's scope: one sender cannot shadow another's."""

SCHEMA = f"""
{EVENTS.format(table="events")};
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY, outage_id TEXT NOT NULL, cell_id TEXT NOT NULL,
    opened_at TEXT NOT NULL, cleared_at TEXT, sender TEXT);
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (cell_id) WHERE cleared_at IS NULL;
CREATE TABLE IF NOT EXISTS outages (
    outage_id TEXT PRIMARY KEY, cell_id TEXT NOT NULL, opened_at TEXT NOT NULL,
    resolved_at TEXT);
CREATE INDEX IF NOT EXISTS outages_cell ON outages (cell_id) WHERE resolved_at IS NULL;
CREATE TABLE IF NOT EXISTS decisions (
    key TEXT PRIMARY KEY, incident TEXT NOT NULL, event_id TEXT NOT NULL,
    rule_id TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, cell_id TEXT NOT NULL,
    customer_id TEXT, priority INTEGER NOT NULL, probability DOUBLE PRECISION NOT NULL,
    value_at_risk DOUBLE PRECISION NOT NULL, amount DOUBLE PRECISION,
    impact DOUBLE PRECISION NOT NULL, runbook TEXT NOT NULL, params TEXT NOT NULL,
    policy_version TEXT NOT NULL, model_version TEXT,
    status TEXT NOT NULL, guard TEXT, reason TEXT, decided_at TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT, decided_by TEXT, decision_note TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, dispatched_at TEXT,
    resolved_at TEXT, claimed_by TEXT, requested_by TEXT, team TEXT,
    cost DOUBLE PRECISION, expected_gain DOUBLE PRECISION, uplift_version TEXT);
CREATE INDEX IF NOT EXISTS decisions_target ON decisions (target, created_at);
CREATE INDEX IF NOT EXISTS decisions_waiting ON decisions (status)
    WHERE status IN ('{Status.PENDING}', '{Status.AWAITING_APPROVAL}');
CREATE INDEX IF NOT EXISTS decisions_queue ON decisions (priority, created_at, key)
    WHERE status = '{Status.PENDING}';
CREATE INDEX IF NOT EXISTS decisions_incident ON decisions (incident);
CREATE INDEX IF NOT EXISTS decisions_credit ON decisions (created_at)
    WHERE action = '{ActionType.BILL_CREDIT}';
CREATE INDEX IF NOT EXISTS decisions_open ON decisions (status) WHERE resolved_at IS NULL
    AND action IN ({sql_list(INCIDENT_ACTIONS)});
CREATE TABLE IF NOT EXISTS updates (
    key TEXT PRIMARY KEY, decision_key TEXT NOT NULL, action TEXT NOT NULL,
    event_id TEXT NOT NULL, cell_id TEXT NOT NULL, customer_id TEXT, status TEXT NOT NULL,
    payload TEXT NOT NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, dispatched_at TEXT, claimed_by TEXT);
CREATE INDEX IF NOT EXISTS updates_waiting ON updates (status)
    WHERE status = '{Status.PENDING}';
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT,
    customer_id TEXT, cell_id TEXT, action TEXT, key TEXT, payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_customer ON audit (customer_id);
CREATE INDEX IF NOT EXISTS audit_cell ON audit (cell_id);
CREATE INDEX IF NOT EXISTS audit_key ON audit (key);
CREATE TABLE IF NOT EXISTS rejected_events (
    key TEXT PRIMARY KEY, event_id TEXT, raw TEXT NOT NULL, reason TEXT NOT NULL,
    source TEXT NOT NULL, line INTEGER, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    number INTEGER PRIMARY KEY, version TEXT NOT NULL, digest TEXT NOT NULL, body TEXT NOT NULL,
    in_force_at TEXT NOT NULL, put_by TEXT);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, created_by TEXT NOT NULL, expires_at TEXT NOT NULL,
    last_used_at TEXT, revoked_at TEXT, revoked_by TEXT);
"""
ADDED_COLUMNS = [
    ("decisions", "claimed_by", "TEXT"),
    ("updates", "claimed_by", "TEXT"),
    ("alarms", "sender", "TEXT"),  # NULL: raised before alarms had a sender, read as ""
    ("decisions", "requested_by", "TEXT"),  # who sent the event (the four-eyes rule)
    ("decisions", "team", "TEXT"),  # who answers for the action
    ("decisions", "cost", "DOUBLE PRECISION"),  # what the action costs, USD
    ("decisions", "expected_gain", "DOUBLE PRECISION"),  # what it is expected to earn, net
    ("decisions", "uplift_version", "TEXT"),  # the uplift model behind that expectation
]
"""Columns newer than a ledger created by an earlier release, added when it is opened."""

WRITE_LOCK = 7_346_201  # PostgreSQL advisory lock id of the ledger's writers
BUSY_SECONDS = 10.0  # how long a writer waits for another one by default


class LedgerBusyError(Exception):
    """Another writer held the ledger longer than this one would wait; nothing was written."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the ledger is busy: another writer held it for more than {seconds:g} s")
        self.seconds = seconds


def _busy(error: Exception) -> bool:
    """A lock wait that ran out (SQLite's 'database is locked', PostgreSQL's lock_timeout)."""
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    return getattr(error, "sqlstate", None) == "55P03"  # lock_not_available


@dataclass
class Tx:
    """A transaction: ``?`` placeholders on either database; ``anchor`` MACs the audit rows it
    appends, ``head`` is the last of them, checkpointed once the transaction commits."""

    cursor: Any
    postgres: bool
    anchor: Anchor
    head: Head | None = None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def run(self, sql: str, params: Sequence[object] = ()) -> Any:
        self.cursor.execute(self._sql(sql), tuple(params))
        return self.cursor

    def many(self, sql: str, rows: list[Sequence[object]]) -> None:
        if rows:
            self.cursor.executemany(self._sql(sql), rows)

    def load(self, table: str, columns: Sequence[str], rows: list[Sequence[object]]) -> None:
        """Append rows to ``table`` in one statement: COPY on PostgreSQL (psycopg's executemany
        is one statement per row), executemany on SQLite (in process: no round trips). A row
        whose key exists already is an error."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.postgres:
            with self.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            self.cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def among(self, column: str, values: Sequence[object]) -> Iterator[tuple[str, list[object]]]:
        """``column`` among ``values`` as (SQL condition, its parameters): one array parameter
        on PostgreSQL (one statement however many values), chunks of 500 on SQLite."""
        if self.postgres:
            if values:
                yield f"{column} = ANY(?)", [list(values)]
            return
        for start in range(0, len(values), 500):
            chunk = list(values[start : start + 500])
            yield f"{column} IN ({', '.join('?' for _ in chunk)})", chunk

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        cursor = self.run(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def columns(self, table: str) -> list[str]:
        return [d[0] for d in self.run(f"SELECT * FROM {table} LIMIT 0").description]

    def value(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self.run(sql, params).fetchone()
        return None if row is None else row[0]


def _scope_events(tx: Tx) -> None:
    """Rebuild an earlier release's events table (keyed by id alone) keyed by sender and id;
    its events keep the sender "" (no authenticated sender)."""
    tx.run(EVENTS.format(table="events_scoped"))
    columns = "event_id, event_type, cell_id, alarm_id, occurred_at, received_at, outcome, body"
    tx.run(f"INSERT INTO events_scoped (sender, {columns}) SELECT '', {columns} FROM events")
    tx.run("DROP TABLE events")
    tx.run("ALTER TABLE events_scoped RENAME TO events")


class Ledger:
    """One connection to the ledger database; not shared between threads. ``anchor`` keys the
    audit trail and keeps its head checkpoint."""

    def __init__(
        self, connection: Any, postgres: bool, anchor: Anchor, busy_seconds: float
    ) -> None:
        self.connection = connection
        self.postgres = postgres
        self.anchor = anchor
        self.busy_seconds = busy_seconds
        with self.write() as tx:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    tx.run(statement)
            for table, column, kind in ADDED_COLUMNS:
                if column not in tx.columns(table):
                    tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            if "sender" not in tx.columns("events"):
                _scope_events(tx)

    @classmethod
    def sqlite(cls, path: Path, anchor: Anchor, busy_seconds: float = BUSY_SECONDS) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(  # the timeout is the busy handler of every statement
            path, isolation_level=None, check_same_thread=False, timeout=busy_seconds
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA wal_autocheckpoint=10000")  # fewer, larger checkpoints
            connection.execute("PRAGMA cache_size=-65536")  # 64 MB of pages: big outages fit
            return cls(connection, False, anchor, busy_seconds)
        except sqlite3.OperationalError as error:
            connection.close()
            if _busy(error):
                raise LedgerBusyError(busy_seconds) from None
            raise

    @classmethod
    def postgresql(
        cls, dsn: str, schema: str, anchor: Anchor, busy_seconds: float = BUSY_SECONDS
    ) -> Ledger:
        import psycopg

        connection = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.execute(f'SET search_path TO "{schema}"')
        connection.execute(f"SET lock_timeout = '{int(busy_seconds * 1000)}ms'")
        return cls(connection, True, anchor, busy_seconds)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A serialised write transaction: committed on success, rolled back on error; the
        audit rows it appended are checkpointed after the commit."""
        cursor = self.connection.cursor()
        tx = Tx(cursor, self.postgres, self.anchor)
        if self.postgres:
            with self.connection.transaction():
                try:
                    tx.run("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
                except Exception as error:
                    if _busy(error):
                        raise LedgerBusyError(self.busy_seconds) from None
                    raise
                yield tx
        else:
            try:
                cursor.execute("BEGIN IMMEDIATE")  # waits up to busy_seconds for another writer
            except sqlite3.OperationalError as error:
                if _busy(error):
                    raise LedgerBusyError(self.busy_seconds) from None
                raise
            try:
                yield tx
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        if tx.head is not None:
            self.anchor.checkpoint(tx.head)

    def read(self) -> Tx:
        return Tx(self.connection.cursor(), self.postgres, self.anchor)

    def close(self) -> None:
        self.connection.close()

    # queries shared by the processor, the approvals and the CLI

    def decision(self, key: str) -> dict[str, Any] | None:
        found = self.read().rows("SELECT * FROM decisions WHERE key = ?", (key,))
        return found[0] if found else None

    def delivery_status(self, key: str) -> str | None:
        """The status of a decision or of a status update."""
        for table in ("decisions", "updates"):
            status = self.read().value(f"SELECT status FROM {table} WHERE key = ?", (key,))
            if status is not None:
                return status
        return None

    def decisions(
        self, status: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if action:
            clauses.append("action = ?")
            params.append(action)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.read().rows(
            f"SELECT * FROM decisions {where} ORDER BY created_at, key LIMIT {int(limit)}", params
        )

    def rejected_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """Event records the intake refused, with why, oldest first."""
        return self.read().rows(
            f"SELECT * FROM rejected_events ORDER BY received_at, source, line LIMIT {int(limit)}"
        )

    def counts(self) -> dict[tuple[str, str], int]:
        """Decisions by (action, status)."""
        rows = self.read().rows(
            "SELECT action, status, COUNT(*) AS n FROM decisions GROUP BY action, status"
        )
        return {(r["action"], r["status"]): int(r["n"]) for r in rows}

    def suppressed_by_guard(self) -> dict[str, int]:
        rows = self.read().rows(
            "SELECT guard, COUNT(*) AS n FROM decisions WHERE status = ? GROUP BY guard",
            (Status.SUPPRESSED,),
        )
        return {r["guard"]: int(r["n"]) for r in rows}


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)


def dumps(value: object) -> str:
    """Compact JSON as stored (the audit hashes the stored text, so key order is free); NaN and
    infinities raise ValueError, never stored as JSON no reader accepts."""
    return _ENCODER.encode(value)
