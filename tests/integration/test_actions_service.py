"""POST /events on the real BentoML service of a home without its raw world files: events in,
decisions committed in the request, delivered to a real receiver by the worker's dispatcher
off the request path; a repeated post creates nothing; bad input is a 4xx; a bad policy is a
health problem."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from access_kit import bearer, make_key
from actionkit import wait_delivered

from actions.policy import ActionType
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.offline import OfflineStore
from serving.process import PROJECT, start_service
from training.config import LightGBMParams

CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)
AUTH: dict[str, str] = {}  # an admin key's Authorization header, made with the home


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    settings = prepare_serving(tmp_path_factory.mktemp("actions-service"), CONFIG, END, FAST)
    shutil.rmtree(settings.world_dir)  # everything after ingest reads the canonical tables
    AUTH.update(bearer(settings, "admin"))
    return settings


def service_settings(home: Settings, port: int, **update) -> Settings:
    values = {**home.model_dump(), "serve_port": port, "clock_start": END, **update}
    return Settings.model_validate(values)


def post_events(url: str, events: list, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{url}/events", json={"events": events}, timeout=timeout, headers=AUTH)


def outage(cell: str) -> list[dict]:
    at = END - timedelta(hours=1)
    onset = {
        "event_id": f"svc-{cell}", "event_type": "alarm_onset", "occurred_at": at.isoformat(),
        "cell_id": cell, "severity": "critical", "alarm_id": f"alm-{cell}",
        "description": "cell down",
    }  # fmt: skip
    flap = {
        **onset,
        "event_id": f"svc-{cell}-2",
        "occurred_at": (at + timedelta(minutes=2)).isoformat(),
    }
    return [onset, flap]


def test_events_posted_to_the_service_become_actions_once(home, free_port, receiver):
    customers = OfflineStore(home.home).read("customers")
    cell = customers.cell_id.value_counts().index[0]
    on_cell = set(customers[customers.cell_id == cell].customer_id)
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    service = start_service(service_settings(home, free_port(), action_endpoints=endpoints))
    try:
        url = service.url
        answer = post_events(url, outage(cell), 60)
        assert answer.status_code == 200, answer.text
        first, flap = answer.json()["outcomes"]
        assert first["outcome"] == "new" and flap["outcome"] == "repeated_alarm"
        assert first["affected_customers"] == len(on_cell)
        decided = {d["key"]: d for d in first["decisions"]}
        assert {d["action"] for d in decided.values()} >= {"trouble_ticket", "customer_message"}
        assert {d["target"] for d in decided.values()} <= on_cell | {cell}
        pending = {k for k, d in decided.items() if d["status"] == "pending"}
        assert sum(answer.json()["queued"].values()) == len(pending)

        again = post_events(url, outage(cell), 60).json()
        assert [o["outcome"] for o in again["outcomes"]] == ["duplicate", "duplicate"]
        assert again["queued"] == {}

        bad = post_events(url, [{"event_id": "x"}], 30)
        assert 400 <= bad.status_code < 500 and "event_type" in bad.text
        empty = post_events(url, [], 30)
        assert 400 <= empty.status_code < 500
        health = httpx.get(f"{url}/status/health", timeout=30, headers=AUTH).json()
        wait_delivered(home)
    finally:
        service.stop()
    assert not [p for p in health["problems"] if p.startswith("actions")]
    with sqlite3.connect(home.home / "ledger.db") as db:
        rows = db.execute("SELECT key, status, model_version FROM decisions").fetchall()
        trail = db.execute("SELECT payload FROM audit WHERE kind = 'decision'").fetchall()
    assert {key for key, _, _ in rows} == set(decided)
    sent = {key for key, status, _ in rows if status == "dispatched"}
    assert sent and sorted(receiver.keys()) == sorted(sent)
    scored = [json.loads(p)["score"] for (p,) in trail]
    assert {s["model"] for s in scored} == {"churn", "fault"}
    assert all(s["model_version"] == "1" and s["features"] for s in scored)


def test_a_dead_endpoint_opens_its_circuit_and_health_names_it(home, free_port):
    customers = OfflineStore(home.home).read("customers")
    cell = customers.cell_id.value_counts().index[1]
    dead = f"http://127.0.0.1:{free_port()}/receiver"  # nothing listens there
    endpoints = {a.value: dead for a in ActionType}
    settings = service_settings(
        home, free_port(), action_endpoints=endpoints, action_backoff_seconds=0.05
    )
    service = start_service(settings)
    try:
        answer = post_events(service.url, outage(cell), 60)
        assert answer.status_code == 200, answer.text
        wait_delivered(home)
        health = httpx.get(f"{service.url}/status/health", timeout=30, headers=AUTH).json()
    finally:
        service.stop()
    with sqlite3.connect(home.home / "ledger.db") as db:
        rows = db.execute(
            "SELECT status, attempts, last_error FROM decisions WHERE incident = ?"
            " AND status NOT IN ('suppressed', 'awaiting_approval')",
            (answer.json()["outcomes"][0]["incident"],),
        ).fetchall()
    assert len(rows) > 1 and {status for status, _, _ in rows} == {"dead_letter"}
    assert sum(attempts for _, attempts, _ in rows) == settings.action_circuit_failures
    assert sum("circuit open" in error for _, _, error in rows) == len(rows) - 1
    assert f"delivery: circuit open for {dead} after 5 consecutive failures" in health["problems"]


def test_a_bad_policy_is_a_health_problem_and_events_answer_503(home, free_port, tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: x\nrules: []\n")
    service = start_service(service_settings(home, free_port(), action_policy=policy))
    try:
        health = httpx.get(f"{service.url}/status/health", timeout=30, headers=AUTH).json()
        answer = post_events(service.url, outage("c"), 30)
    finally:
        service.stop()
    assert any(p.startswith("actions:") and "rules" in p for p in health["problems"])
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "actions_unavailable"


def test_two_workers_each_with_a_dispatcher_deliver_each_action_once(home, free_port, receiver):
    cells = OfflineStore(home.home).read("customers").cell_id.value_counts().index[1:7]
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    settings = service_settings(home, free_port(), action_endpoints=endpoints, serve_workers=2)
    service = start_service(settings)
    try:
        pending = set()
        for cell in cells:  # the posts spread over the workers as the OS hands them out
            answer = post_events(service.url, outage(cell), 60)
            assert answer.status_code == 200, answer.text
            first = answer.json()["outcomes"][0]
            pending |= {d["key"] for d in first["decisions"] if d["status"] == "pending"}
        wait_delivered(home)
        with sqlite3.connect(home.home / "ledger.db") as db:
            holders = db.execute("SELECT holder FROM leases").fetchall()
    finally:
        service.stop()
    assert pending and len(holders) == 1  # one worker holds the lease
    delivered = Counter(receiver.keys())
    assert set(delivered) == pending and set(delivered.values()) == {1}


def test_a_mixed_batch_is_answered_per_event_and_bad_ones_never_fail_it(home, free_port):
    cell = OfflineStore(home.home).read("customers").cell_id.value_counts().index[8]
    good, flap = outage(cell)
    bad = [
        good | {"event_id": "bad-year", "occurred_at": "0001-01-01T00:00:00Z"},
        good | {"event_id": "bad-offset", "occurred_at": "9999-12-31T23:00:00-12:00"},
        good | {"event_id": "bad-nan", "metric": "rsrp", "value": float("nan")},
        good | {"event_id": "bad-type", "event_type": "meteor_strike"},
        "not an event",
    ]
    batch = json.dumps({"events": [good, *bad, flap]})  # NaN as JSON's NaN literal
    service = start_service(service_settings(home, free_port()))
    try:
        json_type = {"content-type": "application/json", **AUTH}
        post = {"content": batch, "headers": json_type, "timeout": 60}
        answer = httpx.post(f"{service.url}/events", **post)
        again = httpx.post(f"{service.url}/events", **post)
        broken = httpx.post(
            f"{service.url}/events", content="{not json", timeout=30, headers=json_type
        )
        all_bad = post_events(service.url, bad[:1], 30)
    finally:
        service.stop()
    assert answer.status_code == 207, answer.text
    outcomes = answer.json()["outcomes"]
    assert [o["status"] for o in outcomes] == ["accepted", *["rejected"] * 5, "accepted"]
    assert [o["event_id"] for o in outcomes[1:6]] == [e.get("event_id") for e in bad[:4]] + [None]
    reasons = [o["reason"] for o in outcomes[1:6]]
    assert "must lie between" in reasons[0] and "UTC" in reasons[1]
    assert "finite" in reasons[2] and "event_type" in reasons[3]
    assert outcomes[0]["outcome"] == "new" and outcomes[6]["outcome"] == "repeated_alarm"
    assert again.status_code == 207
    assert [o["status"] for o in again.json()["outcomes"]][::6] == ["duplicate", "duplicate"]
    assert 400 <= broken.status_code < 500
    assert all_bad.status_code == 422 and "must lie between" in all_bad.text
    with sqlite3.connect(home.home / "ledger.db") as db:
        events = db.execute("SELECT COUNT(*) FROM events WHERE event_id LIKE 'bad-%'").fetchone()
        rejected = db.execute(
            "SELECT line, event_id FROM rejected_events WHERE source = 'POST /events'"
            " AND (event_id LIKE 'bad-%' OR event_id IS NULL) ORDER BY line, event_id"
        ).fetchall()
    assert events == (0,)
    assert rejected == [
        (1, "bad-year"),
        (2, "bad-year"),
        (3, "bad-offset"),
        (4, "bad-nan"),
        (5, "bad-type"),
        (6, None),
    ]  # once each, the repost added none; fmt: skip


def counts(home: Settings) -> tuple[int, int]:
    with sqlite3.connect(home.home / "ledger.db") as db:
        (events,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
        (decisions,) = db.execute("SELECT COUNT(*) FROM decisions").fetchone()
    return events, decisions


def test_the_door_refuses_anonymous_wrong_role_non_json_large_and_too_fast(home, free_port):
    """Each attack of issue 14 on the door, on the real service: it answers and creates
    nothing."""
    cell = OfflineStore(home.home).read("customers").cell_id.value_counts().index[9]
    settings = service_settings(
        home, free_port(), max_body_bytes=65_536, events_per_second=1, events_burst=2
    )
    source, viewer = bearer(home, "event_source", "nms-east"), bearer(home, "viewer")
    revoked = make_key(home, "event_source", "old nms")
    revoke(home, revoked)
    url = f"http://{settings.serve_host}:{settings.serve_port}"
    service = start_service(settings)
    before = counts(home)
    try:
        forged = {"events": outage(cell)}
        anonymous = httpx.post(f"{url}/events", json=forged, timeout=30)
        plain = httpx.post(
            f"{url}/events", content=json.dumps(forged), timeout=30,
            headers={**source, "Content-Type": "text/plain", "Origin": "https://evil.example"},
        )  # fmt: skip
        as_viewer = httpx.post(f"{url}/events", json=forged, timeout=30, headers=viewer)
        gone = httpx.post(
            f"{url}/events", json=forged, timeout=30, headers={"Authorization": f"Bearer {revoked}"}
        )
        huge = httpx.post(
            f"{url}/churn/what-if", json={"rows": [{"x": "y" * 100_000}]}, timeout=30,
            headers=viewer,
        )  # fmt: skip
        scores = httpx.post(f"{url}/churn/score", json={"customer_ids": ["c"]}, headers=source)
        closed = {p: httpx.get(f"{url}{p}").status_code for p in ("/metrics", "/docs.json",
                                                                    "/status/health")}  # fmt: skip
        live = httpx.get(f"{url}/livez").status_code
        assert counts(home) == before  # nothing above created anything
        first = httpx.post(f"{url}/events", json=forged, timeout=60, headers=source)
        fast = httpx.post(f"{url}/events", json=forged, timeout=60, headers=source)
    finally:
        service.stop()
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    assert plain.status_code == 415 and "access-control-allow-origin" not in plain.headers
    assert as_viewer.status_code == 403 and gone.status_code == 401 and "revoked" in gone.text
    assert huge.status_code == 413 and scores.status_code == 403
    assert closed == {"/metrics": 401, "/docs.json": 401, "/status/health": 401} and live == 200
    assert first.status_code == 200, first.text
    assert fast.status_code == 429 and int(fast.headers["Retry-After"]) >= 1
    assert fast.json()["error"]["code"] == "too_many_events"
    with sqlite3.connect(home.home / "ledger.db") as db:
        senders = db.execute(
            "SELECT DISTINCT requested_by FROM decisions WHERE cell_id = ?", (cell,)
        ).fetchall()
    assert [s for (s,) in senders] == [f"nms-east ({source['Authorization'].split('_')[1]})"]


def revoke(home: Settings, token: str) -> None:
    from actions.backends import open_ledger
    from actions.keys import KeyStore
    from closedloop.access import local_admin, parse

    ledger = open_ledger(home)
    try:
        KeyStore(ledger).revoke(parse(token)[0], local_admin(), datetime.now(UTC))
    finally:
        ledger.close()


FUZZ_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,ignored_auth"
)


FUZZ_FIGURES = PROJECT / "test-artifacts" / "schemathesis.txt"


def test_schemathesis_finds_no_server_error_no_schema_break_and_no_open_route(
    home, free_port, tmp_path
):
    """schemathesis 4 on the running service's published OpenAPI with an admin key, bounded:
    the examples, coverage and fuzzing phases, a few examples per operation, 150 s at most. A
    route that answers without its key fails ``ignored_auth``. Its figures are printed."""
    settings = service_settings(home, free_port(), events_per_second=1e6, events_burst=10**6)
    report = tmp_path / "schemathesis.json"
    service = start_service(settings)
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run",
             f"{service.url}/docs.json", "--header", f"Authorization: {AUTH['Authorization']}",
             "--checks", FUZZ_CHECKS, "--phases", "examples,coverage,fuzzing",
             "--max-examples", "25", "--max-time", "150", "--seed", "14", "--workers", "1",
             "--generation-database", "none", "--suppress-health-check", "all",
             "--request-timeout", "30", "--no-color",
             "--report", "json", "--report-json-path", str(report)],
            capture_output=True, text=True, timeout=400, cwd=tmp_path,  # its cache goes there
        )  # fmt: skip
    finally:
        service.stop()
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(report.read_text())
    cases, operations = figures["test_cases"], figures["operations"]
    line = (
        f"schemathesis {figures['schemathesis_version']}: {operations['tested']} operations, "
        f"{cases['generated']} cases, {cases['with_failures']} with failures, "
        f"{len(figures['failures'])} kinds of failure, {len(figures['errors'])} errors, "
        f"{figures['running_time']}"
    )
    print(line)  # shown with -s; kept in test-artifacts/ for the run's record
    FUZZ_FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FUZZ_FIGURES.write_text(line + "\n")
    assert operations["tested"] >= 8 and cases["generated"] >= 100
    assert figures["failures"] == [] and figures["errors"] == [], done.stdout[-6000:]
    assert done.returncode == 0, done.stdout[-6000:]
