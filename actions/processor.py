"""Event processing: dedupe, group alarms into outages, find the affected customers, score,
decide, guard, and commit every decision to the ledger with its audit trail in one transaction.

An event carrying a cell KPI (``metric``/``value``), or an alarm changing a cell's active alarm
count, updates the cell's live features in the online store before anything is scored.

Delivery is a separate step (:mod:`actions.dispatch`): what is committed as pending is
delivered later by the dispatcher holding the ledger's lease, in this process or another.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from actions import audit, queries
from actions.adapters import ticket_resolution
from actions.audit import Entry
from actions.decide import Customer, Decision, Situation, decide
from actions.guards import CREDIT_WINDOW, GuardBook, GuardResult, Taken, first_failed
from actions.intake import Record, admit
from actions.ledger import Ledger, LedgerBusyError, Status, Tx, dumps
from actions.policy import INCIDENT_ACTIONS, ActionType, Policy
from actions.queries import (
    Alarm,
    AlarmRow,
    DecisionRow,
    EventRow,
    OutageRow,
    RejectedRow,
    UpdateRow,
)
from actions.scoring import ScoresProvider
from closedloop.events import EventType, NetworkEvent
from closedloop.scores import Score
from features.online import LIVE_FEATURES, Reading

CUSTOMER_COLUMNS = ["customer_id", "cell_id", "segment", "sla_tier", "contract_type", "mrr"]


class Telemetry(Protocol):
    def write(self, readings: list[Reading]) -> None: ...


@dataclass(frozen=True)
class Directory:
    """The inventory events are checked against: customers by cell and by id (the canonical
    customers table) and every known cell (the cells table and the customers' serving cells)."""

    by_cell: dict[str, list[Customer]]
    by_id: dict[str, Customer]
    cells: frozenset[str]

    @classmethod
    def of(cls, customers: Iterable[Customer], cells: Iterable[str] = ()) -> Directory:
        by_cell: dict[str, list[Customer]] = {}
        by_id = {}
        for customer in customers:
            by_cell.setdefault(customer.cell_id, []).append(customer)
            by_id[customer.customer_id] = customer
        return cls(by_cell, by_id, frozenset(cells) | by_cell.keys())

    @classmethod
    def load(cls, customers: Path, cells: Path) -> Directory:
        """The customers and cells of two canonical tables: every ``*.parquet`` of each folder
        (one per source); no cells table is no cells beyond the customers' own."""
        import pyarrow.parquet as pq

        files = sorted(customers.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"no customers in the offline store ({customers}); run 'closedloop ingest' or "
                "'closedloop import-csv' first"
            )
        columns = [*CUSTOMER_COLUMNS, "do_not_contact"]
        rows = pq.ParquetDataset(files).read(columns=columns).to_pydict()
        cell_files = sorted(cells.glob("*.parquet"))
        known = (
            pq.ParquetDataset(cell_files).read(columns=["cell_id"]).column(0).to_pylist()
            if cell_files
            else []
        )
        return cls.of(
            (
                Customer(*(rows[c][i] for c in CUSTOMER_COLUMNS), bool(rows["do_not_contact"][i]))
                for i in range(len(rows["customer_id"]))
            ),
            known,
        )

    @property
    def opted_out(self) -> frozenset[str]:
        return frozenset(c.customer_id for c in self.by_id.values() if c.do_not_contact)

    def unknown(self, event: NetworkEvent) -> str | None:
        """Why the inventory refuses the event (a cell or customer it does not know), or None."""
        if event.cell_id not in self.cells:
            return f"cell_id: no cell {event.cell_id!r} in the inventory"
        if event.customer_id is not None and event.customer_id not in self.by_id:
            return f"customer_id: no customer {event.customer_id!r} in the inventory"
        return None


@dataclass(frozen=True)
class Outcome:
    """What one event led to: how it was classified and each decision's status."""

    event_id: str | None
    outcome: str  # new, duplicate, repeated_alarm, conflicting_alarm, grouped, resolved,
    # unmatched_clear, rejected
    incident: str | None = None
    affected_customers: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # why a rejected record was refused

    def statuses(self) -> Counter[str]:
        return Counter(d["status"] for d in self.decisions)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


ALARMS = (EventType.ALARM_ONSET, EventType.ALARM_CLEAR)


def live_values(event: NetworkEvent) -> dict[str, float]:
    """The cell KPI an event reports, named as the live view's feature (else nothing)."""
    if event.metric in LIVE_FEATURES and event.value is not None:
        return {event.metric: event.value}
    return {}


def _score_summary(score: Score | None) -> dict[str, Any] | None:
    if score is None:
        return None
    return {
        "model": score.model,
        "model_version": score.model_version,
        "feature_service": score.feature_service,
        "probability": score.probability,
        "stale_features": score.stale_features,
        "reasons": [r.text for r in score.reasons],
        "features": score.features,
    }


@dataclass
class Pending:
    """An event processed in a transaction, waiting for its outcome: a new incident's
    decisions are guarded with those of the events around it (:meth:`Processor._settle`)."""

    event: NetworkEvent
    kind: str
    incident: str | None
    entries: list[Entry]
    decisions: list[Decision] | None = None  # a new incident's, before the guards
    now: datetime | None = None  # when they were decided, by the processing clock
    affected: int = 0  # customers of the situation


@dataclass
class Batch:
    """One transaction's view of the ledger: what it read once for all its events (known event
    ids, alarms, open outages, active alarms by cell, the guards' counts), kept up to date with
    what the events changed, and the rows it writes when it ends, each table's in one
    statement (or before a statement that reads them: an alarm's clear)."""

    known: set[str]  # ids of the sender's events, before or in this transaction
    alarms: dict[str, Alarm]
    outages: dict[str, str | None]  # each alarmed cell's open outage
    active: dict[str, int]  # each alarmed cell's active alarms (read for the live features)
    rows: dict[str, list[NamedTuple]] = field(default_factory=dict)  # by table, to insert
    waiting: list[Pending] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # for the audit trail, in order
    keys: set[str] = field(default_factory=set)  # of the decisions this transaction wrote
    book: GuardBook | None = None
    loaded: set[tuple[str, ActionType]] = field(default_factory=set)  # in the book
    days: set[datetime] = field(default_factory=set)  # whose credits are in the book
    counted: bool = False  # whether the book's open incidents were counted

    def write(self, table: str, rows: list[NamedTuple]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def flush(self, tx: Tx) -> None:
        for table, rows in self.rows.items():
            queries.insert(tx, table, rows)
        self.rows = {}

    def forget_guards(self) -> None:
        """The ledger's incidents and approvals changed: the guards read them again."""
        self.book, self.loaded, self.days, self.counted = None, set(), set(), False


class Processor:
    """Turns events into committed decisions; one instance per ledger connection."""

    def __init__(
        self,
        ledger: Ledger,
        policy: Policy,
        directory: Directory,
        scores: ScoresProvider,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.ledger, self.policy, self.directory = ledger, policy, directory
        self.scores, self.clock, self.telemetry = scores, clock, telemetry
        self._readings: list[Reading] = []  # written before the next score, or at commit
        self.opted_out = directory.opted_out
        guards = policy.guards
        hours = [f.window_hours for f in guards.frequency] + list(guards.cooldown_hours.values())
        self._params: dict[str, str] = {}  # JSON of each rule's action parameters
        self._by: str | None = None  # who sent the batch being processed
        self.lookback = max([timedelta(hours=max(hours, default=0)), CREDIT_WINDOW])

    def process(self, event: NetworkEvent, sender: str = "") -> Outcome:
        """Classify, decide and commit one event; a repeat of a known event changes nothing."""
        return self.process_many([event], sender=sender)[0]

    def process_many(
        self,
        events: list[NetworkEvent],
        rejected: list[RejectedRow] = (),
        hold: float | None = None,
        sender: str = "",
        by: str | None = None,
    ) -> list[Outcome]:
        """Events in order, committed together in one transaction (all or none) with the
        records the intake ``rejected`` (a rejected record seen before is kept as it was).
        With ``hold``, the transaction commits once it has been open ``hold`` seconds, and the
        outcomes of the events it holds (a prefix of ``events``) are returned.

        ``sender`` (the authenticated event source; "" when there is none) scopes event and
        alarm ids: its events never make another sender's a duplicate, its clears only clear
        its own alarms. ``by``: the principal who sent them, kept on each decision (the
        four-eyes rule).

        The ledger is read a few statements per transaction, not per event, and each table's
        new rows are written in one statement; an alarm's clear writes what came before it
        first, since it counts and resolves what the ledger holds."""
        self._by = by
        self._readings = []
        with self.ledger.write() as tx:
            batch = self._read(tx, events, sender)
            began = time.monotonic()
            for event in events:
                self._process(tx, batch, event, sender)
                if hold is not None and time.monotonic() - began > hold:
                    break
            self._settle(tx, batch)
            self._write_readings()
            batch.flush(tx)
            audit.append(tx, batch.entries)
            queries.insert(tx, "rejected_events", list(rejected), keep_existing=True)
        return batch.outcomes

    def take(
        self,
        records: list[Record],
        hold: float | None = None,
        patience: float = 0.0,
        sender: str = "",
        by: str | None = None,
    ) -> list[Outcome]:
        """Each record validated on its own against the clock and the inventory; the valid ones
        processed, the others recorded as rejected with their reason; one outcome per record,
        in order; ``sender`` as in :meth:`process_many`.

        Without ``hold`` everything commits in one transaction; with it, in transactions of
        about ``hold`` seconds each, so other writers get the ledger in between. A transaction
        that finds the ledger busy is tried again until ``patience`` seconds have passed, then
        :class:`LedgerBusyError` is raised (what committed before it stays committed)."""
        now = self.clock()
        admitted = [admit(record, now, self.directory) for record in records]
        events = [a for a in admitted if isinstance(a, NetworkEvent)]
        rejected = [a for a in admitted if isinstance(a, RejectedRow)]
        done: list[Outcome] = []
        deadline = time.monotonic() + patience
        while not done or len(done) < len(events):
            try:
                done += self.process_many(
                    events[len(done) :], [] if done else rejected, hold, sender, by
                )
            except LedgerBusyError:
                if time.monotonic() >= deadline:
                    raise
                continue
            if not events:
                break
        processed = iter(done)
        return [
            next(processed)
            if isinstance(a, NetworkEvent)
            else Outcome(a.event_id, "rejected", reason=a.reason)
            for a in admitted
        ]

    def _write_readings(self) -> None:
        if self.telemetry is not None and self._readings:
            self.telemetry.write(self._readings)
        self._readings = []

    def _read(self, tx: Tx, events: list[NetworkEvent], sender: str) -> Batch:
        """What the events' classification needs from the ledger, read once for all."""
        alarmed = [e for e in events if e.event_type in ALARMS]
        cells = sorted({e.cell_id for e in alarmed})
        return Batch(
            known=queries.known_events(tx, sender, [e.event_id for e in events]),
            alarms=queries.alarms(tx, [e.alarm_id or e.event_id for e in alarmed]),
            outages=queries.open_outages(tx, cells),
            active=queries.active_alarms(tx, cells) if self.telemetry is not None else {},
        )

    def _read_live(self, batch: Batch, event: NetworkEvent, kind: str) -> None:
        """Queue the cell's latest KPI and, when an alarm changed it, its active alarm count."""
        values = live_values(event)
        if event.event_type in ALARMS and kind in ("new", "grouped", "resolved"):
            values["alarm_count"] = float(batch.active[event.cell_id])
        if values:
            self._readings.append(Reading(event.cell_id, values, event.occurred_at))

    def _process(self, tx: Tx, batch: Batch, event: NetworkEvent, sender: str) -> None:
        if event.event_id in batch.known:
            batch.waiting.append(Pending(event, "duplicate", None, []))
            return
        batch.known.add(event.event_id)
        kind, incident = self._classify(tx, batch, event, sender)
        if self.telemetry is not None:
            self._read_live(batch, event, kind)
        seen = {
            "event": event.model_dump(mode="json"),
            "sender": sender,
            "outcome": kind,
            "by": self._by,
        }
        entries = [
            Entry("event", self.clock(), seen, event.event_id, event.customer_id, event.cell_id)
        ]
        if kind == "resolved":
            entries += self._resolve(tx, batch, event, incident)
        pending = Pending(event, kind, incident, entries)
        if kind == "new":
            self._decide(pending)
        batch.waiting.append(pending)
        row = EventRow(
            sender=sender,
            event_id=event.event_id,
            event_type=event.event_type,
            cell_id=event.cell_id,
            alarm_id=event.alarm_id,
            occurred_at=_iso(event.occurred_at),
            received_at=_iso(self.clock()),
            outcome=kind,
            body=event.model_dump_json(),
        )
        batch.write("events", [row])

    def _classify(
        self, tx: Tx, batch: Batch, event: NetworkEvent, sender: str
    ) -> tuple[str, str | None]:
        """new (acts), repeated_alarm, conflicting_alarm (its id is another cell's or sender's
        alarm: nothing done), grouped (joins an open outage), resolved, unmatched_clear (no
        alarm of that id raised on that cell by that sender, or cleared already)."""
        at = _iso(event.occurred_at)
        if event.event_type not in ALARMS:
            return "new", f"event:{sender}/{event.event_id}"
        alarm_id, cell = event.alarm_id or event.event_id, event.cell_id
        known = batch.alarms.get(alarm_id)
        mine = known is not None and (known.cell_id, known.sender) == (cell, sender)
        if event.event_type is EventType.ALARM_CLEAR:
            if not mine or known.cleared or event.alarm_id is None:
                return "unmatched_clear", None
            self._settle(tx, batch)
            batch.flush(tx)
            still_open = queries.clear_alarm(tx, alarm_id, known.outage_id, at)
            batch.alarms[alarm_id] = known._replace(cleared=True)
            if cell in batch.active:
                batch.active[cell] -= 1
            return ("resolved" if not still_open else "grouped"), known.outage_id
        if known is not None:
            return ("repeated_alarm", known.outage_id) if mine else ("conflicting_alarm", None)
        open_outage = batch.outages.get(cell)
        outage = open_outage or f"outage:{alarm_id}"
        batch.write("alarms", [AlarmRow(alarm_id, outage, cell, sender, at)])
        batch.alarms[alarm_id] = Alarm(outage, cell, sender, False)
        if cell in batch.active:
            batch.active[cell] += 1
        if open_outage is not None:
            return "grouped", outage
        batch.write("outages", [OutageRow(outage, cell, at)])
        batch.outages[cell] = outage
        return "new", outage

    def _resolve(self, tx: Tx, batch: Batch, event: NetworkEvent, outage: str) -> list[Entry]:
        """The outage is over: close its incidents, cancel what still waits for approval, and
        queue a "resolved" status update for each ticket it opened."""
        at = _iso(event.occurred_at)
        batch.forget_guards()
        cancelled = queries.resolve_outage(tx, outage, at, "outage cleared before approval")
        updates = self._resolved_tickets(tx, event, outage, at)
        batch.outages |= queries.open_outages(tx, [event.cell_id])
        return [
            Entry(
                "resolution", self.clock(), {"outage": outage, "cleared_by": event.event_id,
                "cancelled_approvals": cancelled, "ticket_updates": [u.key for u in updates]},
                event.event_id, None, event.cell_id,
            )
        ]  # fmt: skip

    def _resolved_tickets(
        self, tx: Tx, event: NetworkEvent, outage: str, at: str
    ) -> list[UpdateRow]:
        """One pending "resolved" update per ticket of the outage, keyed ``<ticket key>:resolved``
        so that no replay sends it twice."""
        note = (
            f"Resolved: the last alarm of outage {outage} on cell {event.cell_id} cleared at"
            f" {at} (event {event.event_id})."
        )
        rows = [
            UpdateRow(
                key=f"{t['key']}:resolved",
                decision_key=t["key"],
                action=ActionType.TROUBLE_TICKET,
                event_id=event.event_id,
                cell_id=t["cell_id"],
                customer_id=t["customer_id"],
                status=Status.PENDING,
                payload=dumps(ticket_resolution(t, at, note)),
                created_at=_iso(self.clock()),
            )
            for t in queries.tickets_of(tx, outage)
        ]
        queries.insert(tx, "updates", rows, keep_existing=True)
        return rows

    def _situation(self, event: NetworkEvent, incident: str) -> Situation:
        if event.customer_id is not None:
            known = self.directory.by_id.get(event.customer_id)
            customers = [known] if known is not None else []
        else:
            customers = self.directory.by_cell.get(event.cell_id, [])
        churn = self.scores.churn([c.customer_id for c in customers]) if customers else {}
        return Situation(event, incident, customers, churn, self.scores.fault(event.cell_id))

    def _decide(self, pending: Pending) -> None:
        """A new incident's decisions, before the guards."""
        self._write_readings()  # the scores below see the live values
        situation = self._situation(pending.event, pending.incident)
        pending.decisions = self._explained(decide(situation, self.policy))
        pending.now = self.clock()
        pending.affected = len(situation.customers)

    def _settle(self, tx: Tx, batch: Batch) -> None:
        """The waiting events' outcomes and audit entries, in order: their decisions guarded
        (the ledger asked once about them all) and queued for writing."""
        waiting, batch.waiting = batch.waiting, []
        decided = [(d, p.now) for p in waiting for d in p.decisions or ()]
        existing = batch.keys | queries.incidents_keys(tx, [d.incident for d, _ in decided])
        book = self._guard_book(tx, batch, decided)
        for pending in waiting:
            batch.entries += pending.entries
            if pending.decisions is None:
                event_id = pending.event.event_id
                batch.outcomes.append(Outcome(event_id, pending.kind, pending.incident))
                continue
            shown = self._guarded(batch, pending, book, existing)
            batch.outcomes.append(
                Outcome(pending.event.event_id, "new", pending.incident, pending.affected, shown)
            )

    def _guarded(
        self, batch: Batch, pending: Pending, book: GuardBook, existing: set[str]
    ) -> list[dict[str, Any]]:
        """Guard an event's decisions in order (each counted for the next), queue their rows and
        audit entries; what the outcome shows of each."""
        now = pending.now
        stamps = (
            _iso(pending.event.occurred_at),
            _iso(now),
            _iso(now + timedelta(minutes=self.policy.approval_ttl_minutes)),
        )
        rows, shown = [], []
        summaries: dict[int, dict[str, Any] | None] = {}  # by id of a score several decisions share
        for decision in pending.decisions:
            if decision.key in existing:
                continue
            existing.add(decision.key)
            results = book.check(decision, now)
            failed = first_failed(results)
            if failed is not None:
                status, guard, reason = Status.SUPPRESSED, failed.guard, failed.reason
            elif decision.held_out:
                share = self.policy.holdout.share if self.policy.holdout else 0
                status, guard, reason = Status.HELD_OUT, None, f"{share:.0%} control group"
            else:
                book.record(decision, now)
                status, guard, reason = (
                    (Status.AWAITING_APPROVAL, None, "impact above the rule's approval limit")
                    if decision.needs_approval
                    else (Status.PENDING, None, None)
                )
            rows.append(
                decision_row(
                    decision, self.policy.version, status, guard, reason, stamps,
                    self._params_of(decision), self._by,
                )
            )  # fmt: skip
            score_id = id(decision.score)
            if score_id not in summaries:
                summaries[score_id] = _score_summary(decision.score)
            batch.entries.append(
                decision_entry(
                    decision, self.policy.version, status, results, now, summaries[score_id]
                )
            )
            shown.append(_shown(decision, status, guard, reason))
        batch.keys |= {row.key for row in rows}
        batch.write("decisions", rows)
        return shown

    def _params_of(self, d: Decision) -> str:
        """A rule's action parameters as JSON, written once per rule."""
        params = self._params.get(d.rule_id)
        if params is None:
            params = self._params[d.rule_id] = json.dumps(d.params, sort_keys=True)
        return params

    def _explained(self, decisions: list[Decision]) -> list[Decision]:
        """The decisions with their scores' reasons (each score explained once)."""
        scores = {id(d.score): d.score for d in decisions if d.score is not None}
        if not scores:
            return decisions
        explained = dict(zip(scores, self.scores.explain(list(scores.values())), strict=True))
        return [
            d
            if d.score is None or explained[id(d.score)] is d.score
            else replace(d, score=explained[id(d.score)])
            for d in decisions
        ]

    def _guard_book(
        self, tx: Tx, batch: Batch, decided: list[tuple[Decision, datetime]]
    ) -> GuardBook:
        """What the guards need to know about the decisions' targets (each customer, each cell)
        over every cell and event, in the processing clock (an event's own time is the sender's
        word), asking the ledger only about the targets and actions it has not asked about in
        this transaction, and in one statement for them all."""
        guards = self.policy.guards
        if batch.book is None:
            batch.book = GuardBook(guards, opted_out=self.opted_out)
        book = batch.book
        pairs = {(d.target, d.action) for d, _ in decided} - batch.loaded
        if pairs:
            since = min(now for _, now in decided) - self.lookback
            rows = queries.taken_by(
                tx, sorted({t for t, _ in pairs}), sorted({a for _, a in pairs}), _iso(since)
            )
            book.add(
                Taken(r["target"], action, datetime.fromisoformat(r["created_at"]), r["amount"])
                for r in rows
                if (r["target"], action := ActionType(r["action"])) in pairs
            )
            batch.loaded |= pairs
        if guards.credit_budget is not None:
            days = {_day(now) for d, now in decided if d.action is ActionType.BILL_CREDIT}
            for day in sorted(days - batch.days):
                credits = queries.credits_between(tx, _iso(day), _iso(day + timedelta(days=1)))
                book.credits_by_day[day.date().isoformat()] = credits
                batch.days.add(day)
        cap = guards.max_open_incidents
        if (
            cap is not None
            and not batch.counted
            and any(d.action in INCIDENT_ACTIONS for d, _ in decided)
        ):
            book.open_incidents = queries.open_incidents(tx, cap)
            batch.counted = True
        return book


def _day(moment: datetime) -> datetime:
    """The UTC day of an instant, as its midnight."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def decision_row(
    d: Decision,
    policy_version: str,
    status: Status,
    guard: str | None,
    reason: str | None,
    stamps: tuple[str, str, str],
    params: str,
    requested_by: str | None,
) -> DecisionRow:
    """The ledger row of a decision; ``stamps``: decided, created and approval-expiry instants,
    ``params``: the decision's parameters as JSON."""
    decided_at, created_at, expires_at = stamps
    return DecisionRow(
        key=d.key,
        incident=d.incident,
        event_id=d.event_id,
        rule_id=d.rule_id,
        action=d.action,
        target=d.target,
        cell_id=d.cell_id,
        customer_id=d.customer_id,
        priority=d.priority,
        probability=d.probability,
        value_at_risk=d.value_at_risk,
        amount=d.amount,
        impact=d.impact,
        runbook=d.runbook,
        params=params,
        policy_version=policy_version,
        model_version=d.score.model_version if d.score else None,
        status=status,
        guard=guard,
        reason=reason,
        decided_at=decided_at,
        created_at=created_at,
        expires_at=expires_at if status is Status.AWAITING_APPROVAL else None,
        requested_by=requested_by,
        team=d.team,
        cost=d.cost,
        expected_gain=d.expected_gain,
        uplift_version=d.uplift_version,
    )


def decision_entry(
    d: Decision,
    policy_version: str,
    status: Status,
    results: list[GuardResult],
    now: datetime,
    score: dict[str, Any] | None,
) -> Entry:
    """The audit row of a decision: every field the decisions table keeps, and why."""
    payload = {
        "event_id": d.event_id,
        "incident": d.incident,
        "score": score,
        "rule": d.rule_id,
        "policy_version": policy_version,
        "decision": {
            "action": d.action.value, "target": d.target, "priority": d.priority,
            "probability": d.probability, "value_at_risk": d.value_at_risk,
            "amount": d.amount, "impact": d.impact, "params": d.params,
            "runbook": d.runbook, "team": d.team, "cost": d.cost,
            "expected_gain": d.expected_gain, "uplift_version": d.uplift_version,
        },
        "guards": results,  # (guard, passed, reason) tuples: JSON arrays
        "status": status,
    }  # fmt: skip
    return Entry(
        "decision", now, payload, d.event_id, d.customer_id, d.cell_id, d.action.value, d.key
    )


def _shown(d: Decision, status: Status, guard: str | None, reason: str | None) -> dict[str, Any]:
    return {
        "key": d.key,
        "action": d.action.value,
        "target": d.target,
        "rule": d.rule_id,
        "priority": d.priority,
        "value_at_risk": d.value_at_risk,
        "status": status,
        "guard": guard,
        "reason": reason,
        "runbook": d.runbook,
    }
