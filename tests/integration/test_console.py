"""The console's pages over a real ledger, through its ASGI app: what a person sees and does."""

from __future__ import annotations

import pytest
from access_kit import bearer
from actionkit import T0, FixedScores, customer, event
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from actions.backends import open_ledger
from actions.ledger import Status
from actions.policy import load_policy
from actions.processor import Directory, Processor
from closedloop.settings import Settings
from serving.access import AccessControl
from serving.console import app as console

PEOPLE = [
    customer(1, sla_tier="gold", mrr=900, contract_type="one_year"),
    customer(2, mrr=40),
    customer(3, mrr=2_000, sla_tier="platinum", contract_type="one_year"),
]
CHURN = {"cus_0000001": 0.8, "cus_0000002": 0.3, "cus_0000003": 0.9}


@pytest.fixture
def decided(tmp_path, monkeypatch):
    """A home whose ledger holds one outage's decisions; the console's clock at the outage."""
    monkeypatch.setenv("CLOSEDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("CLOSEDLOOP_CLOCK_START", T0.isoformat())
    settings = Settings()
    ledger = open_ledger(settings)
    processor = Processor(
        ledger, load_policy(None), Directory.of(PEOPLE), FixedScores(CHURN), lambda: T0
    )
    outcome = processor.process(event())
    ledger.close()
    monkeypatch.setattr(console, "state", console.ConsoleState())
    return outcome


@pytest.fixture
def client(decided):
    """The console behind the service's door, as mounted, with an approver's key."""
    served = AccessControl(Starlette(routes=[Mount("/console", console.console_app)]))
    key = bearer(Settings(), "approver", "ana")
    with TestClient(served, base_url="http://testserver/console", headers=key) as client:
        yield client


def waiting_keys(outcome) -> list[str]:
    return [d["key"] for d in outcome.decisions if d["status"] == Status.AWAITING_APPROVAL]


def test_the_inbox_shows_each_waiting_action_with_its_full_key_and_reasons(client, decided):
    page = client.get("/inbox")
    assert page.status_code == 200
    for key in waiting_keys(decided):
        assert key in page.text
    assert f"Waiting for approval: {len(waiting_keys(decided))}" in page.text
    assert "Bill credits today" in page.text
    assert "app;dur=" in page.headers["server-timing"]


def test_the_inbox_comes_in_pages_most_urgent_first(client, decided):
    keys = waiting_keys(decided)
    assert len(keys) >= 2, "the test needs two actions waiting"
    first = client.get("/inbox", params={"size": 1}).text
    second = client.get("/inbox", params={"size": 1, "start": 1}).text
    [on_first] = [key for key in keys if key in first]
    [on_second] = [key for key in keys if key in second]
    assert on_first != on_second
    assert "1–1 shown" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert "2–2 shown" in second and 'rel="prev"' in second
    everything = client.get("/inbox").text
    assert everything.index(on_first) < everything.index(on_second)
    assert client.get("/inbox", params={"size": 0}).status_code == 422


def test_approving_needs_a_comment_and_is_recorded_with_it(client, decided):
    key = waiting_keys(decided)[0]
    bare = client.post(f"/actions/{key}/settle", data={"verdict": "approve", "comment": " "})
    assert "a comment is required" in bare.text
    assert "awaiting approval" in client.get(f"/actions/{key}").text
    done = client.post(
        f"/actions/{key}/settle", data={"verdict": "approve", "comment": "VIP, called twice"}
    )
    assert "approved: the action is now pending" in done.text
    assert "VIP, called twice" in done.text
    assert key not in client.get("/inbox").text
    again = client.post(f"/actions/{key}/settle", data={"verdict": "reject", "comment": "no"})
    assert "not waiting for approval" in again.text


def test_an_action_page_shows_its_event_incident_runbook_and_trail(client, decided):
    key = waiting_keys(decided)[0]
    page = client.get(f"/actions/{key}").text
    assert decided.event_id in page
    others = [d["key"] for d in decided.decisions if d["key"] != key]
    assert all(other in page for other in others)
    assert "Runbook" in page and "Audit trail" in page
    assert client.get("/actions/nope").status_code == 404


def test_history_feed_and_models_pages_answer(client, decided):
    cell = "cell_00001"
    history = client.get("/history", params={"cell": cell}).text
    assert "Audit chain: intact" in history
    assert "matches the head checkpoint" in client.get("/history").text
    assert all(d["key"] in history for d in decided.decisions)
    feed = client.get("/feed", params={"fragment": "true"}).text
    assert "alarm onset" in feed and cell in feed
    assert f"{len(waiting_keys(decided))} awaiting approval</span>" in feed
    assert client.get("/dead-letters").status_code == 200
    assert client.get("/static/htmx.min.js").status_code == 200


@pytest.fixture
def browser(decided):
    """The console behind the service's door, as a browser meets it: no key until signing in."""
    served = AccessControl(Starlette(routes=[Mount("/console", console.console_app)]))
    with TestClient(served, base_url="http://testserver/console", follow_redirects=False) as c:
        yield c


def test_a_browser_signs_in_with_a_key_and_its_cookie_acts_as_that_key(browser, decided):
    assert browser.get("/inbox").headers["location"] == "/console/signin"
    assert browser.post("/actions/x/settle", data={"verdict": "approve"}).status_code == 401
    wrong = browser.post("/signin", data={"key": "clk_000000000000_" + "x" * 43})
    assert wrong.status_code == 401 and "Sign in" in wrong.text
    token = bearer(Settings(), "approver", "ana")["Authorization"].removeprefix("Bearer ")
    signed = browser.post("/signin", data={"key": token})
    assert signed.status_code == 303 and signed.headers["location"].endswith("/console/inbox")
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    inbox = browser.get("/inbox")
    assert inbox.status_code == 200 and "ana" in inbox.text and "Sign out" in inbox.text
    key = waiting_keys(decided)[0]
    form = {"verdict": "approve", "comment": "checked with the NOC"}
    forged = browser.post(f"/actions/{key}/settle", data=form, headers={"Origin": "http://evil"})
    assert forged.status_code == 403 and "posted from the console" in forged.text
    ours = {"Origin": "http://testserver"}
    done = browser.post(f"/actions/{key}/settle", data=form, headers=ours)
    assert "approved: the action is now pending" in done.text and "ana" in done.text
    as_a_form = {**ours, "Content-Type": "application/x-www-form-urlencoded"}
    out = browser.post("/signout", headers=as_a_form)
    assert out.status_code == 303 and 'closedloop_key=""' in out.headers["set-cookie"]


def test_a_viewer_signed_in_may_look_but_not_approve(browser, decided):
    token = bearer(Settings(), "viewer", "vic")["Authorization"].removeprefix("Bearer ")
    browser.post("/signin", data={"key": token})
    key = waiting_keys(decided)[0]
    page = browser.post(
        f"/actions/{key}/settle", data={"verdict": "approve", "comment": "looks fine"},
        headers={"Origin": "http://testserver"},
    )  # fmt: skip
    assert "awaiting approval" in page.text and "may not" in page.text
