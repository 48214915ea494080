"""Delivery to an endpoint that is dead (nothing listens on its port) or hangs (it accepts and
never answers), as a user meets it: ``replay`` then ``actions retry --all`` over every dead
letter. The endpoint's circuit breaker opens after a few failed calls and the rest are
dead-lettered at once with the reason; retry shows its progress; nothing is lost or doubled."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from datetime import UTC, datetime, time, timedelta

import pytest
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.offline import OfflineStore

WORLD = WorldConfig(customers=200, days=7, seed=4, customers_per_cell=20)
POLICY = """
version: delivery-faults
approval_ttl_minutes: 60
priorities: [{min_value_at_risk: 0, priority: 3}]
rules:
  - id: message
    events: [alarm_onset]
    target: customer
    score: churn
    threshold: {default: 0}
    action: {type: customer_message, params: {template: outage_apology}}
    runbook: customer_message
"""
FAILURES = 5  # consecutive failed calls that open the circuit
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("delivery-world")
    end = datetime.combine(WORLD.start, time(), UTC) + timedelta(days=WORLD.days)
    write_world(simulate(WORLD), folder / "world")
    ingest_world(folder / "world", folder, end)
    (folder / "policy.yaml").write_text(POLICY)
    return folder


@pytest.fixture
def hanging():
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1024)  # connections wait in the backlog, never accepted
        yield f"http://127.0.0.1:{server.getsockname()[1]}/messages"


@pytest.mark.parametrize("endpoint", ["dead", "hanging"])
def test_retry_all_against_a_dead_endpoint_opens_its_circuit_and_loses_nothing(
    world, tmp_path, free_port, hanging, endpoint
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(world / "offline", home / "offline")
    url = hanging if endpoint == "hanging" else f"http://127.0.0.1:{free_port()}/messages"
    cells = OfflineStore(home).read("customers").cell_id.unique()
    at = datetime.now(UTC) - timedelta(minutes=30)
    events = [
        NetworkEvent(
            event_id=f"onset-{cell}", event_type=EventType.ALARM_ONSET, cell_id=cell,
            severity=Severity.MAJOR, occurred_at=at, alarm_id=f"alarm-{cell}",
        )
        for cell in cells
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))
    env = {
        "CLOSEDLOOP_ACTION_POLICY": str(world / "policy.yaml"),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps({"customer_message": url}),
        "CLOSEDLOOP_ACTION_RETRIES": "3",
        "CLOSEDLOOP_ACTION_BACKOFF_SECONDS": "0.05",
        "CLOSEDLOOP_ACTION_TIMEOUT_SECONDS": "0.3",
        "CLOSEDLOOP_ACTION_CIRCUIT_FAILURES": str(FAILURES),
        "COLUMNS": "250",
    }

    def cli(*args: str):
        return runner.invoke(app, ["--home", str(home), *args], env=env)

    def messages() -> list[dict]:
        with sqlite3.connect(home / "ledger.db") as db:
            db.row_factory = sqlite3.Row
            query = (
                "SELECT * FROM decisions WHERE action = 'customer_message'"
                " AND status != 'suppressed'"  # the opted-out
            )
            return [dict(row) for row in db.execute(query)]

    replayed = cli("replay", "--no-models", str(tmp_path / "events.jsonl"))
    assert replayed.exit_code == 0, replayed.output
    sent = messages()
    assert len(sent) >= 150 and {m["status"] for m in sent} == {"dead_letter"}
    assert sum(m["attempts"] for m in sent) == FAILURES, "calls stop once the circuit opens"
    assert f"circuit open for {url} after {FAILURES} consecutive failures" in replayed.output

    retried = cli("actions", "retry", "--all", "--note", "endpoint back?")
    assert retried.exit_code == 0, retried.output
    assert f"{len(sent)} dead letter(s) back to pending" in retried.output
    for done in range(50, len(sent) + 1, 50):
        assert f"{done:,}/{len(sent):,}: " in retried.output, "a progress line every 50"
    after = messages()
    assert {m["key"] for m in after} == {m["key"] for m in sent}
    assert {m["status"] for m in after} == {"dead_letter"}
    assert sum(m["attempts"] for m in after) == 2 * FAILURES
    assert sum("circuit open" in m["last_error"] for m in after) >= len(sent) - 2
    with sqlite3.connect(home / "ledger.db") as db:
        kinds = dict(
            db.execute(
                "SELECT kind, COUNT(*) FROM audit WHERE action = 'customer_message' GROUP BY kind"
            ).fetchall()
        )
    assert kinds["retry"] == len(sent), "each dead letter retried once"
    assert kinds["dispatch"] == 2 * len(sent), "one dispatch row per delivery run, none doubled"
