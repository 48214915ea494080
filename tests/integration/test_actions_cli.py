"""The action commands as a user runs them: replay, actions list / show / approve / reject /
retry / dispatch, audit queries and verify, on a small world's home whose raw world files are
gone (customers come from the offline store), with a policy whose credits need approval."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import pytest
from cli_run import run_cli
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.terminal import UserError
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.offline import OfflineStore

WORLD = WorldConfig(customers=200, days=7, seed=4, customers_per_cell=20)
DAYS = timedelta(days=WORLD.days)
POLICY = """
version: cli-test
approval_ttl_minutes: 60
exception_above: 15
priorities: [{min_value_at_risk: 0, priority: 3}]
guards: {amount: {bill_credit: {min: 1, max: 100}}}
rules:
  - id: ticket
    events: [alarm_onset]
    target: cell
    score: fault
    threshold: {default: 0}
    action: {type: trouble_ticket, params: {ticketType: networkOutage}}
    runbook: trouble_ticket
  - id: credit
    events: [alarm_onset]
    target: customer
    score: churn
    threshold: {default: 0}
    action: {type: bill_credit, params: {amount: 20}}
    approval_above: 10
    runbook: bill_credit
"""
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("actions-cli")
    write_world(simulate(WORLD), folder / "world")
    ingest_world(folder / "world", folder, datetime.combine(WORLD.start, time(), UTC) + DAYS)
    shutil.rmtree(folder / "world")  # everything after ingest reads the canonical tables
    (folder / "policy.yaml").write_text(POLICY)
    return folder


def customers_of(home) -> pd.DataFrame:
    return OfflineStore(home).read("customers")


def run(home, *args: str, key: str | None = None):
    """The command as the holder of ``key`` runs it (None: the local admin)."""
    env = {
        "CLOSEDLOOP_ACTION_POLICY": str(home / "policy.yaml"),
        "COLUMNS": "250",
        "CLOSEDLOOP_API_KEY": key,
    }
    return runner.invoke(app, ["--home", str(home), *args], env=env)


def new_key(home, name: str, role: str) -> str:
    """A key made with ``closedloop keys create`` by the local admin: its printed token."""
    made = run(home, "keys", "create", "--name", name, "--role", role)
    assert made.exit_code == 0, made.output
    return made.output.strip().splitlines()[-1]


def waiting_keys(home) -> list[str]:
    with sqlite3.connect(home / "ledger.db") as db:
        rows = db.execute("SELECT key FROM decisions WHERE status = 'awaiting_approval'")
        return sorted(key for (key,) in rows)


def test_replay_approve_reject_and_audit(home):
    customers = customers_of(home)
    cell = customers.cell_id.iloc[0]
    here = customers[customers.cell_id == cell]
    on_cell = here[~here.do_not_contact].customer_id.tolist()  # the opted-out are suppressed
    onset = NetworkEvent(
        event_id="cli-1", event_type=EventType.ALARM_ONSET, cell_id=cell,
        occurred_at=datetime.now(UTC) - timedelta(minutes=5), severity=Severity.MAJOR,
        alarm_id="cli-alarm",
    )  # fmt: skip
    events = home / "events.jsonl"
    events.write_text(onset.model_dump_json() + "\n")
    replayed = run(home, "replay", "--no-models", str(events))
    assert replayed.exit_code == 0, replayed.output
    assert f"waiting for approval: {len(on_cell)}" in replayed.output
    assert f"{len(here) - len(on_cell)} suppressed" in replayed.output
    keys = waiting_keys(home)
    assert len(keys) == len(on_cell)

    listed = run(home, "actions", "list", "--status", "awaiting_approval")
    assert all(key in listed.output for key in keys)
    shown = run(home, "actions", "show", keys[0])
    assert "bill_credit" in shown.output and "Escalation path" in shown.output

    ana, bob = new_key(home, "ana", "approver"), new_key(home, "bob", "approver")
    olga, vic = new_key(home, "olga", "operator"), new_key(home, "vic", "viewer")

    def refused(key: str | None, words: str) -> None:
        answer = run(home, "actions", "approve", keys[0], key=key)
        assert isinstance(answer.exception, UserError) and words in str(answer.exception)

    refused(None, "local-admin requested this action")  # four eyes: it replayed the event
    refused(vic, "role viewer may not settle")
    refused(olga, "above the policy's exception limit 15.00")  # a 20.00 credit
    laxer = home / "laxer.yaml"  # the operator's own settings name a higher limit: not in force
    laxer.write_text(POLICY.replace("exception_above: 15", "exception_above: 1000"))
    env = {"CLOSEDLOOP_ACTION_POLICY": str(laxer), "CLOSEDLOOP_API_KEY": olga}
    lax = runner.invoke(app, ["--home", str(home), "actions", "approve", keys[0]], env=env)
    assert "above the policy's exception limit 15.00" in str(lax.exception)
    refused("clk_000000000000_" + "x" * 43, "CLOSEDLOOP_API_KEY: unknown API key")
    approved = run(home, "actions", "approve", keys[0], "--note", "agreed", key=ana)
    assert approved.exit_code == 0 and f"{keys[0]}: dispatched" in approved.output
    rejected = run(home, "actions", "reject", keys[1], "--note", "no", key=bob)
    assert rejected.exit_code == 0 and "rejected by bob (" in rejected.output
    again = run(home, "actions", "approve", keys[1], key=ana)
    assert isinstance(again.exception, UserError) and "is rejected" in str(again.exception)
    assert waiting_keys(home) == keys[2:]

    trail = run(home, "audit", "--action", keys[0])
    for word in ("decision", "approved by ana (", "): agreed", "dispatch"):
        assert word in trail.output
    with sqlite3.connect(home / "ledger.db") as db:
        (rejected_customer,) = db.execute(
            "SELECT customer_id FROM decisions WHERE key = ?", (keys[1],)
        ).fetchone()
    by_customer = run(home, "audit", "--customer", rejected_customer)
    assert "rejected by bob (" in by_customer.output
    assert run(home, "audit", "--cell", cell).output.count("alarm_onset") == 1

    verified = run(home, "audit", "verify")
    assert verified.exit_code == 0 and "intact" in verified.output
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("UPDATE audit SET customer_id = 'cus_9999999' WHERE seq = 4")
    broken = run(home, "audit", "verify")
    assert broken.exit_code == 1 and "broken at row 4" in broken.output


def test_replay_refuses_a_file_with_bad_lines_and_records_nothing(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "x"}\nnot json\n')
    result = run(home, "replay", "--no-models", str(bad))
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    assert "2 bad event line(s), nothing replayed" in message and "line 1:" in message
    with sqlite3.connect(home / "ledger.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE event_id = 'x'").fetchone() == (0,)


def test_dead_letters_are_retried_with_who_and_why(home, tmp_path, receiver):
    shutil.copytree(home / "offline", tmp_path / "offline")  # a ledger of its own
    cell = customers_of(home).cell_id.iloc[1]
    at = datetime.now(UTC) - timedelta(minutes=30)
    events = [
        NetworkEvent(
            event_id=f"retry-{kind}", event_type=kind, cell_id=cell, severity=Severity.MAJOR,
            occurred_at=at + timedelta(minutes=minutes), alarm_id="retry-alarm",
        )
        for kind, minutes in ((EventType.ALARM_ONSET, 0), (EventType.ALARM_CLEAR, 20))
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))
    env = {
        "CLOSEDLOOP_ACTION_POLICY": str(home / "policy.yaml"),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps({"trouble_ticket": f"{receiver.url}/tickets"}),
        "CLOSEDLOOP_ACTION_RETRIES": "0",
        "COLUMNS": "250",
    }

    def cli(*args: str):
        return runner.invoke(app, ["--home", str(tmp_path), *args], env=env)

    receiver.failures["/tickets"] = -1
    assert cli("replay", "--no-models", str(tmp_path / "events.jsonl")).exit_code == 0
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        ((ticket, status),) = db.execute(
            "SELECT key, status FROM decisions WHERE action = 'trouble_ticket'"
        ).fetchall()
    assert status == "dead_letter" and receiver.keys() == []

    receiver.failures["/tickets"] = 0
    neither = cli("actions", "retry")
    assert isinstance(neither.exception, UserError) and "KEY or --all" in str(neither.exception)
    retried = cli("actions", "retry", ticket, "--note", "ticketing back")
    assert retried.exit_code == 0, retried.output
    assert f"{ticket}: dispatched" in retried.output
    assert receiver.keys("/tickets") == [ticket, f"{ticket}:resolved"]  # then its update
    trail = cli("audit", "--action", ticket).output
    assert "retried by local-admin: ticketing back (after HTTP 503" in trail
    assert trail.index("retried by local-admin") < trail.rindex("dispatched after 1 attempt")
    again = cli("actions", "retry", ticket)
    assert isinstance(again.exception, UserError) and "is not a dead letter" in str(again.exception)

    receiver.failures["/tickets"] = -1
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        db.execute("UPDATE decisions SET status = 'dead_letter' WHERE key = ?", (ticket,))
    every = cli("actions", "retry", "--all", "--note", "all of them")
    assert "1 dead letter(s) back to pending by local-admin" in every.output
    assert f"{ticket}: dead_letter" in every.output  # tried again, failed again
    assert receiver.attempts["/tickets"] == 4


def test_replay_commits_and_leaves_delivery_to_the_lease_holder(home, tmp_path):
    shutil.copytree(home / "offline", tmp_path / "offline")  # a ledger of its own
    cell = customers_of(home).cell_id.iloc[2]
    onset = NetworkEvent(
        event_id="lease-1", event_type=EventType.ALARM_ONSET, cell_id=cell,
        occurred_at=datetime.now(UTC) - timedelta(minutes=5), severity=Severity.MAJOR,
        alarm_id="lease-alarm",
    )  # fmt: skip
    (tmp_path / "events.jsonl").write_text(onset.model_dump_json() + "\n")
    env = {"CLOSEDLOOP_ACTION_POLICY": str(home / "policy.yaml"), "COLUMNS": "250"}

    def cli(*args: str):
        return runner.invoke(app, ["--home", str(tmp_path), *args], env=env)

    with sqlite3.connect(tmp_path / "ledger.db") as db:  # a live dispatcher elsewhere
        db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT, expires_at TEXT)")
        until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        db.execute("INSERT INTO leases VALUES ('dispatcher', 'other-host:42', ?)", (until,))
    replayed = cli("replay", "--no-models", str(tmp_path / "events.jsonl"))
    assert replayed.exit_code == 0, replayed.output
    assert "another dispatcher holds the lease (other-host:42" in replayed.output
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (ticket,) = db.execute("SELECT status FROM decisions WHERE action = 'trouble_ticket'")
    assert ticket == ("pending",) and not (tmp_path / "actions" / "outbox").exists()
    assert "holds the lease" in cli("actions", "dispatch").output

    with sqlite3.connect(tmp_path / "ledger.db") as db:  # that dispatcher stopped
        db.execute("DELETE FROM leases")
    dispatched = cli("actions", "dispatch")
    assert dispatched.exit_code == 0 and "delivered: 1 dispatched" in dispatched.output
    lines = (tmp_path / "actions" / "outbox" / "trouble_ticket.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert "nothing to deliver" in cli("actions", "dispatch").output


def test_replay_quarantines_bad_lines_and_commits_the_others_once(home, tmp_path):
    shutil.copytree(home / "offline", tmp_path / "offline")  # a ledger of its own
    cells = customers_of(home).cell_id.unique()[3:6]
    now = datetime.now(UTC)
    good = [
        NetworkEvent(
            event_id=f"good-{n}", event_type=EventType.ALARM_ONSET, cell_id=cell,
            occurred_at=now - timedelta(minutes=10 - n), severity=Severity.MAJOR,
            alarm_id=f"good-alarm-{n}",
        ).model_dump_json()
        for n, cell in enumerate(cells)
    ]  # fmt: skip
    onset = json.loads(good[0]) | {"alarm_id": "bad"}
    bad = {
        "year-1": json.dumps(onset | {"event_id": "bad-1", "occurred_at": "0001-01-01T00:00:00Z"}),
        "overflow": json.dumps(
            onset | {"event_id": "bad-2", "occurred_at": "9999-12-31T23:00:00-12:00"}
        ),
        "nan": json.dumps(onset | {"event_id": "bad-3", "metric": "rsrp", "value": float("nan")}),
        "type": json.dumps(onset | {"event_id": "bad-4", "event_type": "meteor_strike"}),
        "future": json.dumps(
            onset | {"event_id": "bad-5", "occurred_at": (now + timedelta(days=1)).isoformat()}
        ),
        "json": "not json {",
    }
    lines = [good[0], *bad.values(), *good[1:]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {"CLOSEDLOOP_ACTION_POLICY": str(home / "policy.yaml"), "COLUMNS": "250"}

    def cli(*args: str):
        return runner.invoke(app, ["--home", str(tmp_path), *args], env=env)

    def ledger() -> tuple[list, list, int]:
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            events = db.execute("SELECT event_id FROM events ORDER BY event_id").fetchall()
            rejected = db.execute(
                "SELECT line, event_id, reason, source FROM rejected_events ORDER BY line"
            ).fetchall()
            (decisions,) = db.execute("SELECT COUNT(*) FROM decisions").fetchone()
        return events, rejected, decisions

    first = cli("replay", "--no-models", str(path))
    assert first.exit_code == 0, first.output
    assert "3 events:" in first.output and "6 line(s) rejected" in first.output
    events, rejected, decisions = ledger()
    assert [e for (e,) in events] == ["good-0", "good-1", "good-2"] and decisions > 0
    assert [line for line, *_ in rejected] == [2, 3, 4, 5, 6, 7]
    assert {source for *_, source in rejected} == {str(path.resolve())}
    reasons = {line: (event_id, reason) for line, event_id, reason, _ in rejected}
    assert reasons[2] == ("bad-1", reasons[2][1]) and "1970-01-01" in reasons[2][1]
    assert "occurred_at" in reasons[3][1] and "UTC" in reasons[3][1]
    assert "value: Input should be a finite number" in reasons[4][1]
    assert "event_type" in reasons[5][1]
    assert "after the processing clock" in reasons[6][1]
    assert reasons[7][0] is None and "Invalid JSON" in reasons[7][1]

    again = cli("replay", "--no-models", str(path))
    assert again.exit_code == 0, again.output
    assert "3 duplicate; 0 new decisions" in again.output
    assert ledger() == (events, rejected, decisions)

    shown = cli("events", "rejected", "--json")
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert [(r["line"], r["reason"]) for r in listed] == [(line, r) for line, _, r, _ in rejected]
    assert json.loads(listed[0]["raw"])["occurred_at"] == "0001-01-01T00:00:00Z"
    table = cli("events", "rejected")
    assert "rejected events: 6" in table.output and "meteor_strike" in table.output


def test_each_state_changing_command_refuses_a_role_that_may_not(home, tmp_path):
    shutil.copytree(home / "offline", tmp_path / "offline")  # a ledger of its own
    (tmp_path / "policy.yaml").write_text(POLICY)
    events = tmp_path / "none.jsonl"
    events.write_text("{}\n")
    viewer, source = new_key(tmp_path, "vic", "viewer"), new_key(tmp_path, "nms", "event_source")
    refusals = {
        ("train", "churn"): (viewer, "may not train"),
        ("monitor", "churn"): (viewer, "may not monitor"),
        ("replay", "--no-models", str(events)): (viewer, "may not post_events"),
        ("actions", "dispatch"): (source, "may not dispatch"),
        ("actions", "retry", "--all"): (source, "may not settle"),
        ("keys", "create", "--name", "x", "--role", "admin"): (viewer, "may not manage_keys"),
        ("keys", "list"): (source, "may not manage_keys"),
    }
    for args, (key, words) in refusals.items():
        answer = run(tmp_path, *args, key=key)
        assert isinstance(answer.exception, UserError), (args, answer.output)
        assert words in str(answer.exception), args
    allowed = run(tmp_path, "replay", "--no-models", str(events), key=source)
    assert "may not" not in str(allowed.exception)  # refused for its content, not its role


def test_a_changed_policy_is_put_in_force_by_an_admin_only_and_audited(home, tmp_path):
    """The first policy a ledger sees is recorded; a changed one is refused to an event source
    and put in force by the admin's replay, numbered and audited with the principal; its
    decisions name its version; a version label cannot be reused for another content."""
    shutil.copytree(home / "offline", tmp_path / "offline")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    cell = customers_of(home).cell_id.iloc[1]
    onset = NetworkEvent(
        event_id="pol-1", event_type=EventType.ALARM_ONSET, cell_id=cell,
        occurred_at=datetime.now(UTC) - timedelta(minutes=5), severity=Severity.MAJOR,
        alarm_id="pol-alarm",
    )  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_text(onset.model_dump_json() + "\n")
    nms = new_key(tmp_path, "nms", "event_source")
    empty = tmp_path / "none.jsonl"
    empty.write_text("{}\n")
    assert "may not" not in str(
        run(tmp_path, "replay", "--no-models", str(empty), key=nms).exception
    )

    shorter = POLICY.replace("approval_ttl_minutes: 60", "approval_ttl_minutes: 30")
    policy.write_text(shorter)
    reused = run(tmp_path, "replay", "--no-models", str(events))
    assert "'cli-test' was policy #1 with another content" in str(reused.exception)
    policy.write_text(shorter.replace("version: cli-test", "version: cli-test-2"))
    refused = run(tmp_path, "replay", "--no-models", str(events), key=nms)
    assert isinstance(refused.exception, UserError), refused.output
    assert "may not set_policy" in str(refused.exception)
    replayed = run(tmp_path, "replay", "--no-models", str(events))  # the local admin
    assert replayed.exit_code == 0, replayed.output

    shown = run(tmp_path, "policy", "history", "--json")
    rows = [(r["number"], r["version"], r["put_by"]) for r in json.loads(shown.output)]
    assert rows == [(1, "cli-test", None), (2, "cli-test-2", "local-admin")]
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        versions = {v for (v,) in db.execute("SELECT policy_version FROM decisions")}
        trail = [json.loads(p) for (p,) in db.execute(
            "SELECT payload FROM audit WHERE kind = 'policy' ORDER BY seq")]  # fmt: skip
    assert versions == {"cli-test-2"}
    assert [(t["version"], t["by"]) for t in trail] == [
        ("cli-test", None), ("cli-test-2", "local-admin")
    ]  # fmt: skip
    assert run(tmp_path, "audit", "verify").exit_code == 0


def test_keys_are_listed_without_secrets_and_revoked_keys_act_no_more(home, tmp_path):
    shutil.copytree(home / "offline", tmp_path / "offline")
    (tmp_path / "policy.yaml").write_text(POLICY)
    token = new_key(tmp_path, "olga", "operator")
    key_id = token.split("_")[1]
    listed = json.loads(run(tmp_path, "keys", "list", "--json").output)
    assert [(k["key_id"], k["name"], k["role"], k["state"]) for k in listed] == [
        (key_id, "olga", "operator", "active")
    ]
    assert token.split("_", 2)[2] not in json.dumps(listed)
    assert run(tmp_path, "actions", "retry", "--all", key=token).exit_code == 0
    revoked = run(tmp_path, "keys", "revoke", key_id)
    assert revoked.exit_code == 0 and f"API key {key_id} (olga) revoked by local-admin" in (
        revoked.output
    )
    after = run(tmp_path, "actions", "retry", "--all", key=token)
    assert isinstance(after.exception, UserError) and "was revoked" in str(after.exception)
    trail = run(tmp_path, "audit", "--action", f"key:{key_id}").output
    assert "created by local-admin" in trail and "revoked by local-admin" in trail
    bad = run(tmp_path, "keys", "create", "--name", "x", "--role", "viewer", "--expires", "soon")
    assert isinstance(bad.exception, UserError) and "--expires" in str(bad.exception)


def test_scripts_read_json_and_narrow_tables_keep_whole_keys(home, tmp_path):
    shutil.copytree(home / "offline", tmp_path / "offline")  # a ledger of its own
    (tmp_path / "policy.yaml").write_text(POLICY)
    cell = customers_of(home).cell_id.unique()[6]
    onset = NetworkEvent(
        event_id="json-1", event_type=EventType.ALARM_ONSET, cell_id=cell,
        occurred_at=datetime.now(UTC) - timedelta(minutes=5), severity=Severity.MAJOR,
        alarm_id="json-alarm",
    )  # fmt: skip
    (tmp_path / "events.jsonl").write_text(onset.model_dump_json() + "\n")
    assert run(tmp_path, "replay", "--no-models", str(tmp_path / "events.jsonl")).exit_code == 0
    keys = waiting_keys(tmp_path)
    assert len(keys) >= 2, "the test needs actions waiting, and others in the same incident"

    listed = run(tmp_path, "actions", "list", "--status", "awaiting_approval", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(row["key"] for row in json.loads(listed.stdout)) == keys

    shown = json.loads(run(tmp_path, "actions", "show", keys[0], "--json").stdout)
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (in_incident,) = db.execute(
            "SELECT COUNT(*) FROM decisions WHERE event_id = 'json-1'"
        ).fetchone()
    assert shown["decision"]["key"] == keys[0]
    assert shown["decision"]["status"] == "awaiting_approval"
    assert shown["event"]["event_id"] == "json-1"
    assert len(shown["incident"]) == in_incident - 1
    assert keys[1] in {row["key"] for row in shown["incident"]}
    assert [row["kind"] for row in shown["trail"]] == ["decision"]
    assert shown["guards"] and all(len(guard) == 3 for guard in shown["guards"])
    assert "Escalation path" in shown["runbook"]

    trail = json.loads(run(tmp_path, "audit", "--action", keys[0], "--json").stdout)
    assert [(row["kind"], row["key"]) for row in trail] == [("decision", keys[0])]
    assert trail[0]["payload"]["status"] == "awaiting_approval"
    missing = run(tmp_path, "actions", "show", "no-such-key")
    assert isinstance(missing.exception, UserError) and "no action 'no-such-key'" in str(
        missing.exception
    )

    narrow = {"CLOSEDLOOP_ACTION_POLICY": str(tmp_path / "policy.yaml"), "COLUMNS": "80"}
    table = run_cli("actions", "list", "--status", "awaiting_approval", home=tmp_path, env=narrow)
    assert table.returncode == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    lines = table.stdout.splitlines()
    assert all(any(key in line for line in lines) for key in keys), table.stdout
    page = run_cli("actions", "show", keys[0], home=tmp_path, env=narrow)
    assert page.returncode == 0, page.stderr
    assert all(any(key in line for line in page.stdout.splitlines()) for key in keys)
    assert "Escalation path" in page.stdout and "guards" in page.stdout
