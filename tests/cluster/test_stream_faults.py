"""Faults on the cluster profile's event intake, against real servers and real ``closedloop
consume`` processes: a consumer killed (SIGKILL) mid-stream and restarted, two consumers on one
stream, and Redis itself killed and restarted mid-stream (a redis-server of the test's own, so
the shared one is untouched). Every time: no event lost, none decided twice, the ledger's
decisions exactly those one uninterrupted pass makes, each delivered once."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from actionkit import anchor
from pydantic import SecretStr

from actions.backends import open_ledger
from actions.ledger import Ledger
from actions.policy import ActionType, load_policy
from actions.processor import Directory, Processor
from actions.runtime import open_dispatcher
from actions.scoring import NoScores
from actions.streams import RedisStream
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.canonical import CELLS, CUSTOMERS
from features.ingest import ingest_world
from features.offline import OfflineStore

WORLD = WorldConfig(customers=400, days=10, seed=11, customers_per_cell=10)
AT = datetime(2026, 1, 11, 9, 0, tzinfo=UTC)
DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARED_REDIS = "redis://127.0.0.1:6379/0"
WAIT = 180.0


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream-faults")
    write_world(simulate(WORLD), folder / "world")
    ingest_world(folder / "world", folder, AT)
    return folder


@pytest.fixture(scope="module")
def events(home) -> list[NetworkEvent]:
    """One alarm per cell and ten KPI degradations per cell (each its own incident, so the
    decisions do not depend on the order consumers take them in), plus 40 re-sent."""
    cells = sorted(OfflineStore(home).read("customers").cell_id.unique())
    made = []
    for n, cell in enumerate(cells):
        made.append(
            NetworkEvent(
                event_id=f"on-{cell}", event_type=EventType.ALARM_ONSET, cell_id=cell,
                occurred_at=AT - timedelta(minutes=n), severity=Severity.CRITICAL,
                alarm_id=f"alm-{cell}",
            )
        )  # fmt: skip
        made += [
            NetworkEvent(
                event_id=f"kpi-{cell}-{k}", event_type=EventType.KPI_DEGRADATION, cell_id=cell,
                occurred_at=AT - timedelta(minutes=n, seconds=k), severity=Severity.MAJOR,
                metric="latency_ms", value=200.0 + k, threshold=90.0,
            )
            for k in range(10)
        ]  # fmt: skip
    return made + made[:40]


@pytest.fixture(scope="module")
def expected_keys(home, events, tmp_path_factory) -> set[str]:
    """The decision keys one uninterrupted in-process pass commits."""
    folder = tmp_path_factory.mktemp("reference")
    ledger = Ledger.sqlite(folder / "ledger.db", anchor(folder))
    store = OfflineStore(home)
    directory = Directory.load(store.table_path(CUSTOMERS.name), store.table_path(CELLS.name))
    processor = Processor(ledger, load_policy(None), directory, NoScores(), lambda: AT)
    processor.process_many(events)
    keys = {r["key"] for r in ledger.read().rows("SELECT key FROM decisions")}
    ledger.close()
    assert len(keys) > 100
    return keys


@pytest.fixture
def cluster(home):
    """Settings of this test's own ledger schema and stream key; both removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        home=home, profile="cluster", postgres_dsn=DSN, redis_url=SHARED_REDIS,
        ledger_schema=f"test_faults_{tag}", stream_key=f"test:{tag}:events",
        stream_claim_idle_seconds=1.0, stream_max_deliveries=5,
    )  # fmt: skip
    open_ledger(settings).close()  # the schema, before any consumer runs
    yield settings
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{settings.ledger_schema}" CASCADE')
    client = redis.Redis.from_url(SHARED_REDIS)
    client.delete(*(settings.stream_key + s for s in ("", ":dead", ":errors")))
    client.close()


def consume(settings: Settings, name: str, batch: int = 10) -> subprocess.Popen:
    command = [sys.executable, "-m", "closedloop", "consume", "--no-models", "--consumer", name]
    return subprocess.Popen(
        [*command, "--batch", str(batch)],
        env={**os.environ, **settings.environment()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> Counter[str]:
    """SIGTERM, then what the consumer says it consumed."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    found = re.search(r"stopped: (.*)", " ".join(out.split()))
    assert found, out + err
    print(name_of(process), found[0])
    return Counter(
        {
            k.replace(" ", "_"): int(n.replace(",", ""))
            for n, k in re.findall(r"([\d,]+) ([a-z ]+)", found[1])
        }
    )


def name_of(process: subprocess.Popen) -> str:
    return process.args[process.args.index("--consumer") + 1]


def decided(settings: Settings) -> Counter[str]:
    """Times each event was decided: one audit row of kind ``event`` per decision of an
    event; a duplicate writes none."""
    with psycopg.connect(DSN) as db:
        rows = db.execute(
            f"SELECT event_id FROM \"{settings.ledger_schema}\".audit WHERE kind = 'event'"
        ).fetchall()
    return Counter(event_id for (event_id,) in rows)


def decision_keys(settings: Settings) -> list[str]:
    with psycopg.connect(DSN) as db:
        rows = db.execute(f'SELECT key FROM "{settings.ledger_schema}".decisions').fetchall()
    return [key for (key,) in rows]


def wait_until(done, running: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        for process in running:
            assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def stream_of(settings: Settings) -> RedisStream:
    return RedisStream(
        settings.redis_url.get_secret_value(), settings.stream_key, settings.stream_group,
        settings.stream_claim_idle_seconds,
    )  # fmt: skip


def assert_exactly_once(settings, events, expected_keys, receiver) -> dict[str, int]:
    """Every event decided once, the decisions those of one clean pass, no dead letter, and
    each pending action delivered once; the figures of the run."""
    times = decided(settings)
    unique = {e.event_id for e in events}
    assert set(times) == unique, f"lost: {sorted(unique - set(times))[:5]}"
    assert set(times.values()) == {1}, [e for e, n in times.items() if n > 1][:5]
    keys = decision_keys(settings)
    assert len(keys) == len(set(keys)) and set(keys) == expected_keys
    stream = stream_of(settings)
    assert stream.dead_letters(10) == []
    assert stream.client.xpending(stream.name, stream.group)["pending"] == 0
    stream.close()
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    delivering = settings.model_copy(update={"action_endpoints": endpoints})
    with open_dispatcher(delivering) as dispatcher:
        sent = dispatcher.drain()
    delivered = Counter(receiver.keys())
    assert sent and set(delivered.values()) == {1}, "no action delivered twice"
    return {
        "events in": len(events), "decided": len(times), "lost": len(unique - set(times)),
        "decided twice": sum(n > 1 for n in times.values()), "actions": len(keys),
        "delivered": len(delivered),
    }  # fmt: skip


def test_a_consumer_killed_mid_stream_and_restarted_loses_and_repeats_nothing(
    cluster, events, expected_keys, receiver
):
    stream = stream_of(cluster)
    stream.append(events[:250])
    first = consume(cluster, "c1")
    wait_until(lambda: len(decided(cluster)) >= 60, [first], "the consumer never committed")
    stream.append(events[250:])
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    at_kill = len(decided(cluster))
    assert 0 < at_kill < len({e.event_id for e in events})
    restarted = consume(cluster, "c1")  # reads its own unacknowledged entries first
    unique = {e.event_id for e in events}
    wait_until(
        lambda: set(decided(cluster)) == unique
        and not stream.client.xpending(stream.name, stream.group)["pending"],
        [restarted], "the restarted consumer never finished",
    )  # fmt: skip
    counts = stop(restarted)
    assert counts.total() >= len(events) - at_kill, counts
    figures = assert_exactly_once(cluster, events, expected_keys, receiver)
    stream.trim()
    assert stream.length() < len(events), "acknowledged entries are trimmed"
    stream.close()
    print("consumer SIGKILL + restart:", figures, "decided before the kill:", at_kill)


def test_two_consumers_on_one_stream_decide_each_event_once(
    cluster, events, expected_keys, receiver
):
    stream = stream_of(cluster)
    consumers = [consume(cluster, "a"), consume(cluster, "b")]
    for start in range(0, len(events), 50):
        stream.append(events[start : start + 50])
        time.sleep(0.05)
    unique = {e.event_id for e in events}
    wait_until(
        lambda: set(decided(cluster)) == unique
        and not stream.client.xpending(stream.name, stream.group)["pending"],
        consumers, "the consumers never finished",
    )  # fmt: skip
    a, b = (stop(c) for c in consumers)
    assert a.total() and b.total(), ("both consumers worked", a, b)
    assert a.total() + b.total() == len(events)
    figures = assert_exactly_once(cluster, events, expected_keys, receiver)
    stream.close()
    print("two consumers:", figures, "by consumer:", dict(a), dict(b))


@pytest.fixture
def own_redis(tmp_path, free_port):
    """A redis-server of this test's own (append-only file, fsync on every write): ``start()``
    (again after a kill), ``kill()``."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    folder = Path(tmp_path) / "redis"
    folder.mkdir()

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        process: subprocess.Popen | None = None

        def start(self) -> None:
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            client = redis.Redis.from_url(self.url)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.1)
            client.close()

        def kill(self) -> None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    server = Server()
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


def test_redis_killed_and_restarted_mid_stream_loses_and_repeats_nothing(
    cluster, events, expected_keys, receiver, own_redis
):
    settings = cluster.model_copy(update={"redis_url": SecretStr(own_redis.url)})
    stream = stream_of(settings)
    consumer = consume(settings, "c1")
    chunks = [events[start : start + 25] for start in range(0, len(events), 25)]
    retried = 0
    for n, chunk in enumerate(chunks):
        if n == len(chunks) // 2:
            wait_until(lambda: decided(settings), [consumer], "nothing was consumed")
            own_redis.kill()
            own_redis.start()
        while True:  # a producer sends a chunk again until the stream takes it
            try:
                stream.append(chunk)
                break
            except Exception:
                retried += 1
                time.sleep(0.2)
    unique = {e.event_id for e in events}
    wait_until(
        lambda: set(decided(settings)) == unique
        and not stream.client.xpending(stream.name, stream.group)["pending"],
        [consumer], "the consumer never finished after the restart",
    )  # fmt: skip
    stop(consumer)
    figures = assert_exactly_once(settings, events, expected_keys, receiver)
    stream.close()
    print("redis SIGKILL + restart:", figures, "appends retried:", retried)
