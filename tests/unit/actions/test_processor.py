"""Event processing on a real SQLite ledger: dedupe, outage grouping, clear, guards recorded,
idempotent replay, approvals with a time-to-live, and the hash-chained audit trail."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from access_kit import principal
from actionkit import FixedScores, customer, event

from actions import audit
from actions.approvals import ApprovalError, expire, settle
from actions.ledger import Status
from actions.policy import ActionType
from closedloop.events import EventType, Severity
from closedloop.scores import Direction, Reason

PEOPLE = [
    customer(1, sla_tier="gold", mrr=900, contract_type="one_year", do_not_contact=False),
    customer(2, mrr=40),
    customer(3, mrr=60, do_not_contact=True),
    customer(4, cell="cell_00002"),
]
CHURN = {"cus_0000001": 0.8, "cus_0000002": 0.3, "cus_0000003": 0.6}


def statuses(ledger) -> dict[tuple[str, str], int]:
    return ledger.counts()


def test_outage_decisions_are_committed_with_guards_and_approvals(make_processor):
    processor, dispatcher, _ = make_processor(PEOPLE, FixedScores(CHURN))
    outcome = processor.process(event())
    assert outcome.outcome == "new" and outcome.affected_customers == 3
    by_key = {d["key"]: d for d in outcome.decisions}
    rows = {r["key"]: r for r in processor.ledger.decisions(limit=1000)}
    assert by_key.keys() == rows.keys()
    suppressed = [r for r in rows.values() if r["status"] == Status.SUPPRESSED]
    assert sorted((r["action"], r["target"], r["guard"]) for r in suppressed) == [
        ("customer_message", "cus_0000003", "do_not_contact"),
        ("retention_offer", "cus_0000003", "do_not_contact"),
    ]
    waiting = [r for r in rows.values() if r["status"] == Status.AWAITING_APPROVAL]
    # value at risk 0.8 × 12 × 900 = 8,640 > 5,000; the 90 USD credit is under its 100 limit
    assert [(r["action"], r["target"]) for r in waiting] == [("retention_offer", "cus_0000001")]
    assert rows[waiting[0]["key"]]["expires_at"] > rows[waiting[0]["key"]]["created_at"]
    assert dispatcher.drain()[Status.DISPATCHED] == len(rows) - len(suppressed) - len(waiting)


def test_repeated_events_and_flapping_alarms_create_nothing(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    onset = event(alarm_id="alm-a")
    first = processor.process(onset)
    before = processor.ledger.counts()
    assert processor.process(onset).outcome == "duplicate"
    assert processor.process(event(alarm_id="alm-a", minutes=3)).outcome == "repeated_alarm"
    grouped = processor.process(event(alarm_id="alm-b", minutes=4))
    assert (grouped.outcome, grouped.incident) == ("grouped", first.incident)
    assert processor.ledger.counts() == before


def test_clear_resolves_the_outage_and_cancels_waiting_approvals(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    opened = processor.process(event(alarm_id="alm-a"))
    processor.process(event(alarm_id="alm-b", minutes=2))
    half = processor.process(event(EventType.ALARM_CLEAR, alarm_id="alm-a", minutes=30))
    assert half.outcome == "grouped"  # alm-b still raised
    done = processor.process(event(EventType.ALARM_CLEAR, alarm_id="alm-b", minutes=40))
    assert (done.outcome, done.incident) == ("resolved", opened.incident)
    rows = processor.ledger.decisions(limit=1000)
    assert not [r for r in rows if r["status"] == Status.AWAITING_APPROVAL]
    assert [r["reason"] for r in rows if r["status"] == Status.CANCELLED] == [
        "outage cleared before approval"
    ]
    incidents = [r for r in rows if r["action"] == ActionType.TROUBLE_TICKET]
    assert incidents and all(r["resolved_at"] for r in incidents)
    assert processor.process(event(EventType.ALARM_CLEAR, alarm_id="zz")).outcome == (
        "unmatched_clear"
    )
    # a new outage on the cell after the clear acts again
    assert processor.process(event(alarm_id="alm-c", minutes=90)).decisions


def test_guards_see_earlier_incidents_in_the_ledger(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event(alarm_id="alm-a"))
    processor.process(event(EventType.ALARM_CLEAR, alarm_id="alm-a", minutes=20))
    again = processor.process(event(alarm_id="alm-b", minutes=30))
    stopped = {(d["action"], d["target"]): d["guard"] for d in again.decisions if d["guard"]}
    assert stopped[("customer_message", "cus_0000002")] == "cooldown"  # within 1 h
    assert stopped[("bill_credit", "cus_0000001")] == "cooldown"  # 168 h


def test_a_second_process_on_the_same_ledger_adds_nothing_and_delivers_once(
    make_processor, tmp_path
):
    processor, dispatcher, _ = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event(alarm_id="alm-a", event_id="first"))
    dispatcher.drain()
    keys = {r["key"] for r in processor.ledger.decisions(limit=1000)}
    processor2, dispatcher2, _ = make_processor(PEOPLE, FixedScores(CHURN))
    # the same outage's first event arrives again (lost acknowledgement): nothing new
    assert processor2.process(event(alarm_id="alm-a", event_id="first")).outcome == "duplicate"
    assert dispatcher2.drain() == {}
    assert {r["key"] for r in processor2.ledger.decisions(limit=1000)} == keys
    lines = [
        json.loads(line)["idempotency_key"]
        for path in (tmp_path / "outbox").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(lines) == sorted(set(lines)) and len(lines) > 0


def test_customer_event_acts_on_that_customer_only(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    outcome = processor.process(
        event(EventType.REPEATED_FAILURE, severity=Severity.MAJOR, customer_id="cus_0000002")
    )
    assert {d["target"] for d in outcome.decisions} == {"cus_0000002"}
    assert outcome.incident.startswith("event:")


def test_approval_then_dispatch_and_reject_and_expiry(make_processor):
    rich = [customer(n, mrr=2_000, contract_type="one_year") for n in range(1, 4)]
    processor, dispatcher, clock = make_processor(rich, FixedScores(dict.fromkeys(
        (c.customer_id for c in rich), 0.9)))  # fmt: skip
    processor.process(event())
    waiting = processor.ledger.decisions(status=Status.AWAITING_APPROVAL)
    assert len(waiting) == 3 and all(w["action"] == "retention_offer" for w in waiting)
    ledger = processor.ledger
    ana, bob = principal("approver", "ana"), principal("approver", "bob", "0b0b0b0b0b0b")
    assert settle(ledger, waiting[0]["key"], True, ana, "good customer", clock()) == "pending"
    assert settle(ledger, waiting[1]["key"], False, ana, "too generous", clock()) == "rejected"
    with pytest.raises(ApprovalError, match="not waiting"):
        settle(ledger, waiting[1]["key"], True, bob, "", clock())
    clock.now += timedelta(minutes=241)
    with pytest.raises(ApprovalError, match="expired"):
        settle(ledger, waiting[2]["key"], True, bob, "late", clock())
    assert expire(ledger, clock()) == 0  # already marked by the refused approval
    dispatcher.drain()
    final = {r["key"]: r for r in ledger.decisions(action="retention_offer")}
    assert final[waiting[0]["key"]]["status"] == Status.DISPATCHED
    assert final[waiting[0]["key"]]["decided_by"] == "ana (0a1b2c3d4e5f)"
    assert final[waiting[1]["key"]]["status"] == Status.REJECTED
    assert final[waiting[2]["key"]]["status"] == Status.EXPIRED
    trail = audit.query(ledger, action=waiting[0]["key"])
    assert [row["kind"] for row in trail] == ["decision", "approval", "dispatch"]


def test_audit_links_event_to_dispatch_and_detects_tampering(make_processor):
    processor, dispatcher, _ = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event())
    dispatcher.drain()
    ledger = processor.ledger
    trail = audit.query(ledger, customer="cus_0000002")
    kinds = [row["kind"] for row in trail]
    assert kinds.count("decision") == kinds.count("dispatch") == 1
    decision = json.loads(next(r for r in trail if r["kind"] == "decision")["payload"])
    assert decision["score"]["model_version"] == "3"
    assert decision["score"]["features"] == {"outage_minutes_7d": 42.0}
    assert decision["rule"] == "outage-message" and decision["guards"]
    assert audit.query(ledger, cell="cell_00001")[0]["kind"] == "event"
    verdict = audit.verify(ledger)
    assert verdict.intact and verdict.rows == len(audit.query(ledger, cell="cell_00001"))
    victim = trail[0]["seq"]
    with ledger.write() as tx:
        tx.run("UPDATE audit SET payload = ? WHERE seq = ?", ('{"status":"fine"}', victim))
    assert audit.verify(ledger).broken_at == victim
    with ledger.write() as tx:
        tx.run("UPDATE audit SET payload = ? WHERE seq = ?", (trail[0]["payload"], victim))
        tx.run("DELETE FROM audit WHERE seq = ?", (victim + 1,))
    assert audit.verify(ledger).broken_at == victim + 1


def test_cap_on_open_incidents_holds_within_a_batch_and_frees_on_clear(make_processor, policy):
    capped = policy.model_copy(
        update={"guards": policy.guards.model_copy(update={"max_open_incidents": 2})}
    )
    people = [customer(1, cell="cell_a"), customer(2, cell="cell_b"), customer(3, cell="cell_c")]
    processor, _, _ = make_processor(people, FixedScores(), rules=capped)
    first, second = processor.process_many(
        [event(cell="cell_a", alarm_id="a"), event(cell="cell_b", alarm_id="b")]
    )

    def incidents(outcome) -> dict[str, str | None]:
        return {
            d["action"]: d["guard"]
            for d in outcome.decisions
            if d["action"] in ("trouble_ticket", "field_dispatch")
        }

    assert incidents(first) == {"trouble_ticket": None, "field_dispatch": None}
    assert incidents(second) == {
        "trouble_ticket": "max_open_incidents",
        "field_dispatch": "max_open_incidents",
    }
    processor.process(event(EventType.ALARM_CLEAR, cell="cell_a", alarm_id="a", minutes=5))
    third = processor.process(event(cell="cell_c", alarm_id="c", minutes=6))
    assert incidents(third) == {"trouble_ticket": None, "field_dispatch": None}


class Readings:
    """Telemetry that keeps what it is asked to write, one list per write."""

    def __init__(self) -> None:
        self.writes: list[list] = []

    def write(self, readings: list) -> None:
        self.writes.append([(r.entity_id, r.values, r.at) for r in readings])


def test_live_telemetry_is_written_in_one_go_before_scoring_or_at_commit(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    processor.telemetry = telemetry = Readings()
    kpi = event(
        EventType.KPI_DEGRADATION, severity=Severity.MAJOR, metric="latency_ms", value=250.0
    )
    failures = event(
        EventType.REPEATED_FAILURE, metric="failed_sessions", value=9.0
    )  # no such feature
    second = event(alarm_id="alm-2", minutes=1)
    processor.process_many(
        [event(), event(), failures, second, event(EventType.ALARM_CLEAR, alarm_id="nobody")]
    )
    onset_at, second_at = event().occurred_at, second.occurred_at
    assert telemetry.writes == [
        [("cell_00001", {"alarm_count": 1.0}, onset_at)],  # before the outage is scored
        [("cell_00001", {"alarm_count": 2.0}, second_at)],  # grouped, not scored: at commit
    ]
    processor.process(kpi)
    assert telemetry.writes[-1] == [("cell_00001", {"latency_ms": 250.0}, kpi.occurred_at)]
    processor.process(kpi)  # a duplicate writes nothing
    assert len(telemetry.writes) == 3


def test_an_earlier_releases_ledger_keeps_its_events_as_duplicates(tmp_path, policy):
    """Events keyed by id alone (before senders) are rebuilt under the sender "", alarms get a
    sender column: a re-sent old event is still a duplicate, an old alarm still clears."""
    import sqlite3

    from actionkit import Clock, anchor

    from actions.ledger import Ledger
    from actions.processor import Directory, Processor

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, cell_id"
            " TEXT NOT NULL, alarm_id TEXT, occurred_at TEXT NOT NULL, received_at TEXT NOT NULL,"
            " outcome TEXT NOT NULL, body TEXT NOT NULL)"
        )
        old.execute(
            "CREATE TABLE alarms (alarm_id TEXT PRIMARY KEY, outage_id TEXT NOT NULL, cell_id"
            " TEXT NOT NULL, opened_at TEXT NOT NULL, cleared_at TEXT)"
        )
        old.execute("INSERT INTO events VALUES ('old-1', 'alarm_onset', 'cell_00001', 'a', 't',"
                    " 't', 'new', '{}')")  # fmt: skip
        old.execute("INSERT INTO alarms VALUES ('a', 'outage:a', 'cell_00001', 't', NULL)")
        old.execute("CREATE TABLE outages (outage_id TEXT PRIMARY KEY, cell_id TEXT NOT NULL,"
                    " opened_at TEXT NOT NULL, resolved_at TEXT)")  # fmt: skip
        old.execute("INSERT INTO outages VALUES ('outage:a', 'cell_00001', 't', NULL)")
    ledger = Ledger.sqlite(path, anchor(tmp_path))
    try:
        processor = Processor(ledger, policy, Directory.of(PEOPLE), FixedScores(), Clock())
        assert processor.process(event(alarm_id="a", event_id="old-1")).outcome == "duplicate"
        cleared = processor.process(event(EventType.ALARM_CLEAR, alarm_id="a", minutes=3))
        assert (cleared.outcome, cleared.incident) == ("resolved", "outage:a")
        assert (
            Ledger.sqlite(path, anchor(tmp_path)).read().value("SELECT COUNT(*) FROM events") == 2
        )  # again: as is
    finally:
        ledger.close()


class ExplainingScores(FixedScores):
    """Fixed scores without reasons until explained; records what it was asked to explain."""

    def __init__(self, churn: dict[str, float]) -> None:
        super().__init__(churn)
        self.asked: list[tuple[str, str]] = []

    def explain(self, scores):
        self.asked += [(s.model, s.entity_id) for s in scores]
        return [s.model_copy(update={"reasons": [why(s.entity_id)]}) for s in scores]


def why(entity: str) -> Reason:
    return Reason(feature="outage_minutes_7d", value=42.0, contribution=0.5,
                  direction=Direction.RAISES, text=f"why {entity}")  # fmt: skip


def test_only_the_scores_a_decision_carries_are_explained_each_once(make_processor):
    people = [*PEOPLE, customer(5, mrr=20)]  # below every threshold of a KPI degradation
    scores = ExplainingScores(CHURN | {"cus_0000005": 0.01})
    processor, _, _ = make_processor(people, scores)
    kpi = event(EventType.KPI_DEGRADATION, severity=Severity.MAJOR, metric="latency_ms",
                value=180.0, threshold=100.0)  # fmt: skip
    outcome = processor.process(kpi)
    targets = {d["target"] for d in outcome.decisions}
    assert outcome.affected_customers == 4 and "cus_0000005" not in targets
    assert sorted(scores.asked) == sorted({("churn", t) for t in targets})
    rows = processor.ledger.read().rows("SELECT payload FROM audit WHERE kind = 'decision'")
    trail = [json.loads(r["payload"]) for r in rows]
    assert trail and all(p["score"]["reasons"] == [f"why {p['decision']['target']}"]
                         for p in trail)  # fmt: skip


def test_a_batch_decides_as_one_transaction_per_event_would_in_a_few_reads(tmp_path, policy):
    """Events in one transaction (the ledger read once for them all, each table written in one
    statement, what precedes a clear written before it) give the outcomes, decisions and audit
    trail that one transaction per event gives; 40 events read the ledger as often as 8."""
    from actionkit import Clock, anchor

    from actions.ledger import Ledger
    from actions.processor import Directory, Processor

    people = [customer(n, cell=f"cell_{n % 4}", mrr=40.0 + 90 * n) for n in range(1, 13)]
    churn = {c.customer_id: 0.2 + 0.06 * n for n, c in enumerate(people)}
    events = [
        event(cell="cell_0", alarm_id="a"),
        event(cell="cell_1", alarm_id="c", minutes=1),
        event(cell="cell_0", alarm_id="b", minutes=2),  # grouped
        event(cell="cell_0", alarm_id="a", minutes=3),  # repeated
        event(EventType.ALARM_CLEAR, cell="cell_0", alarm_id="a", minutes=4),  # b still raised
        event(EventType.ALARM_CLEAR, cell="cell_0", alarm_id="b", minutes=5),  # resolved
        event(cell="cell_0", alarm_id="d", minutes=6),  # a new outage on the cell, guards again
        event(cell="cell_1", alarm_id="e", minutes=7),  # grouped with c
        event(EventType.KPI_DEGRADATION, cell="cell_2", severity=Severity.MAJOR,
              metric="latency_ms", value=250.0, minutes=8),
        event(EventType.ALARM_CLEAR, cell="cell_3", alarm_id="nobody", minutes=9),
    ]  # fmt: skip
    events.insert(3, events[0])  # a duplicate within the batch

    def run(folder, batches):
        folder.mkdir()
        ledger = Ledger.sqlite(folder / "ledger.db", anchor(folder))
        processor = Processor(ledger, policy, Directory.of(people), FixedScores(churn), Clock())
        outcomes = [o for batch in batches for o in processor.process_many(batch)]
        seen = (
            [(o.outcome, o.incident, o.affected_customers, o.decisions) for o in outcomes],
            ledger.read().rows("SELECT * FROM decisions ORDER BY key"),
            ledger.read().rows("SELECT * FROM audit ORDER BY seq"),
            ledger.read().rows("SELECT * FROM alarms ORDER BY alarm_id"),
            ledger.read().rows("SELECT * FROM outages ORDER BY outage_id"),
            ledger.read().rows("SELECT * FROM events ORDER BY event_id"),
        )
        ledger.close()
        return seen

    one_by_one = run(tmp_path / "one", [[e] for e in events])
    together = run(tmp_path / "all", [events])
    assert together == one_by_one
    kinds = [o[0] for o in together[0]]
    assert kinds.count("duplicate") == 1 and "resolved" in kinds and "grouped" in kinds
    assert {d["status"] for d in together[1]} >= {"pending", "cancelled", "suppressed"}

    def reads(n: int) -> int:
        folder = tmp_path / f"reads{n}"
        folder.mkdir()
        ledger = Ledger.sqlite(folder / "ledger.db", anchor(folder))
        processor = Processor(ledger, policy, Directory.of(people), FixedScores(churn), Clock())
        statements: list[str] = []
        ledger.connection.set_trace_callback(statements.append)
        processor.process_many(
            [event(cell=f"cell_{i % 4}", alarm_id=f"r{n}-{i}", minutes=i) for i in range(n)]
        )
        ledger.close()
        return sum(s.lstrip().upper().startswith("SELECT") for s in statements)

    assert reads(40) == reads(8) <= 12
