"""The cluster profile's event intake on a real Redis stream and a PostgreSQL ledger, in one
process: appended events decided once by consumers of the group, entries idle at a stopped
consumer taken over, a poison entry dead-lettered with its error, the stream trimmed."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import psycopg
import pytest
import redis
from actionkit import Clock, FixedScores, customer, event
from typer.testing import CliRunner

from actions.backends import open_ledger, open_stream
from actions.consumer import Consumer
from actions.intake import Record
from actions.ledger import Ledger, LedgerBusyError
from actions.processor import Directory, Processor
from actions.runtime import Runtime
from actions.streams import RedisStream, enqueue
from closedloop.cli import app
from closedloop.settings import Settings

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
CELLS = [f"cell_{n:05d}" for n in range(1, 41)]
PEOPLE = [customer(n, cell=CELLS[n % len(CELLS)]) for n in range(1, 121)]


@pytest.fixture
def cluster():
    """Cluster settings on a throwaway ledger schema and stream key, removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        profile="cluster", postgres_dsn=DSN, redis_url=REDIS, ledger_schema=f"test_stream_{tag}",
        stream_key=f"test:{tag}:events", stream_claim_idle_seconds=0.3, stream_max_deliveries=3,
    )  # fmt: skip
    yield settings
    client = redis.Redis.from_url(REDIS)
    client.delete(*(settings.stream_key + suffix for suffix in ("", ":dead", ":errors")))
    client.close()
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{settings.ledger_schema}" CASCADE')


def runtime_of(settings: Settings, policy, poison: str | None = None):
    """``open_runtime`` for a consumer: a fresh ledger connection each time; a record whose
    event id is ``poison`` makes the commit fail."""

    def opened() -> Runtime:
        ledger = open_ledger(settings)
        processor = Processor(ledger, policy, Directory.of(PEOPLE), FixedScores(), Clock())
        runtime = Runtime(ledger, processor)
        if poison is not None:
            take = runtime.take

            def failing(records: list[Record], **sent):
                if any(f'"{poison}"' in str(r.raw) for r in records):
                    raise RuntimeError(f"cannot decide {poison}")
                return take(records, **sent)

            runtime.take = failing
        return runtime

    return opened


def onsets(n: int, prefix: str = "ev"):
    return [
        event(cell=CELLS[i % len(CELLS)], minutes=-i, event_id=f"{prefix}-{i}", alarm_id=f"a-{i}")
        for i in range(n)
    ]


def decided(ledger: Ledger) -> Counter[str]:
    """Times each event was decided (an audit row of kind event is written once per decision
    of an event; a duplicate writes none)."""
    rows = ledger.read().rows("SELECT event_id FROM audit WHERE kind = 'event'")
    return Counter(r["event_id"] for r in rows)


def drain(consumer: Consumer, stream: RedisStream, rounds: int = 50) -> None:
    """Step until nothing is left, as ``Consumer.run`` does (a failed step is tried again)."""
    for _ in range(rounds):
        try:
            read = consumer.step()
        except Exception:
            continue
        if not read and not stream.client.xpending(stream.name, stream.group)["pending"]:
            return
    pytest.fail("the stream was not drained")


def test_appended_events_are_decided_once_by_consumers_of_the_group(cluster, policy):
    stream = open_stream(cluster)
    opened = runtime_of(cluster, policy)
    front = opened()
    events = onsets(120)
    records = [Record(e.model_dump(mode="json"), "POST /events", n) for n, e in enumerate(events)]
    records.append(Record({"event_id": "bad", "cell_id": "c"}, "POST /events", 999))
    outcomes = enqueue(stream, front.processor, records)
    assert [o.outcome for o in outcomes] == ["queued"] * 120 + ["rejected"]
    assert "event_type: Field required" in outcomes[-1].reason
    assert [r["event_id"] for r in front.ledger.rejected_events()] == ["bad"]
    assert stream.length() == 120
    assert enqueue(stream, front.processor, records[:20])  # the same events sent again

    first = Consumer(stream, opened, "one", cluster.stream_max_deliveries, batch=25)
    second = Consumer(stream, opened, "two", cluster.stream_max_deliveries, batch=25)
    taken = stream.read("gone", 30, 0.1)  # a third consumer reads a batch and dies
    assert len(taken) == 30
    for _ in range(3):
        first.step()
        second.step()
    time.sleep(0.4)  # past the idle limit: the dead consumer's entries are taken over
    drain(first, stream)
    drain(second, stream)
    times = decided(front.ledger)
    assert set(times) == {e.event_id for e in events} and set(times.values()) == {1}
    assert stream.client.xpending(stream.name, stream.group)["pending"] == 0
    counts = first.counts + second.counts
    assert counts == {"new": 40, "grouped": 80, "duplicate": 20}  # 3 alarms per cell
    keys = front.ledger.read().value("SELECT COUNT(DISTINCT key) FROM decisions")
    assert keys == front.ledger.read().value("SELECT COUNT(*) FROM decisions") >= 40
    stream.trim()
    assert stream.length() < 140, "acknowledged entries are trimmed (approximately, by node)"
    front.close()
    first.close()
    second.close()


def test_events_from_the_stream_keep_their_sender_and_principal(cluster, policy):
    """Two sources post through the stream, one reusing the other's event id: each event is
    decided under its own sender's id scope, and its decisions name who sent it (as POST
    /events records on the embedded profile), also when one batch mixes the two."""
    stream = open_stream(cluster)
    nms = onsets(3, "nms")
    probe = [event(cell=CELLS[10], minutes=-1, event_id="nms-0", alarm_id="probe-a")]
    stream.append(nms[:2], "nms", "nms (0a1b2c3d4e5f)")
    stream.append(probe, "probe", "probe (abcdefabcdef)")
    stream.append(nms[2:], "nms", "nms (0a1b2c3d4e5f)")
    consumer = Consumer(stream, runtime_of(cluster, policy), "c", 3, batch=10)
    drain(consumer, stream)
    assert consumer.counts["duplicate"] == 0, "ids are scoped to their sender"
    ledger = open_ledger(cluster)
    events = ledger.read().rows("SELECT sender, event_id FROM events ORDER BY sender, event_id")
    assert [(e["sender"], e["event_id"]) for e in events] == [
        ("nms", "nms-0"), ("nms", "nms-1"), ("nms", "nms-2"), ("probe", "nms-0")
    ]  # fmt: skip
    by = ledger.read().rows("SELECT DISTINCT cell_id, requested_by FROM decisions")
    assert by and {(r["cell_id"] == CELLS[10], r["requested_by"]) for r in by} <= {
        (False, "nms (0a1b2c3d4e5f)"), (True, "probe (abcdefabcdef)")
    }  # fmt: skip
    audited = ledger.read().rows("SELECT event_id, payload FROM audit WHERE kind = 'event'")
    assert {json.loads(r["payload"]).get("by") for r in audited} == {
        "nms (0a1b2c3d4e5f)",
        "probe (abcdefabcdef)",
    }
    ledger.close()
    consumer.close()


def test_a_poison_entry_goes_to_the_dead_letters_with_its_error(cluster, policy):
    stream = open_stream(cluster)
    events = onsets(10, "p")
    stream.append(events)
    consumer = Consumer(stream, runtime_of(cluster, policy, poison="p-4"), "c", 3, batch=10)
    drain(consumer, stream)
    assert consumer.counts == {"new": 9, "dead_lettered": 1}
    (dead,) = stream.dead_letters(10)
    assert dead["error"] == "RuntimeError: cannot decide p-4"
    assert dead["deliveries"] == "4" and json.loads(dead["event"])["event_id"] == "p-4"
    shown = CliRunner().invoke(app, ["events", "dead", "--json"], env=cluster.environment())
    assert shown.exit_code == 0, shown.output
    assert [(r["event_id"], r["error"]) for r in json.loads(shown.output)] == [
        ("p-4", "RuntimeError: cannot decide p-4")
    ]
    ledger = open_ledger(cluster)
    assert set(decided(ledger)) == {e.event_id for e in events} - {"p-4"}
    ledger.close()


def test_a_busy_ledger_uses_up_no_delivery(cluster, policy):
    """The ledger busy more times than an entry may be delivered: the consumer keeps its batch
    and tries it again, so nothing is dead-lettered and every event is decided once."""
    stream = open_stream(cluster)
    events = onsets(12, "busy")
    stream.append(events)
    opened = runtime_of(cluster, policy)
    failures = iter(range(2 * cluster.stream_max_deliveries))

    def busy_then_free() -> Runtime:
        runtime = opened()
        take = runtime.take

        def busy(records: list[Record], **sent):
            if next(failures, None) is not None:
                raise LedgerBusyError(0.1)
            return take(records, **sent)

        runtime.take = busy
        return runtime

    consumer = Consumer(stream, busy_then_free, "c", cluster.stream_max_deliveries, batch=12)
    drain(consumer, stream)
    assert stream.dead_letters(10) == [] and consumer.counts.total() == 12
    ledger = open_ledger(cluster)
    assert decided(ledger) == Counter({e.event_id: 1 for e in events})
    ledger.close()
    consumer.close()


def test_consume_on_the_embedded_profile_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "consume"])
    assert result.exit_code == 1 and "cluster profile's event stream" in str(result.exception)
