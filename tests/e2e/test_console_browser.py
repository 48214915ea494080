"""The ops console in a real browser (Debian's Chromium, driven by Playwright) against the real
service: sign in with a key, open the inbox, open an action, approve it with a comment and see
it delivered in the history and the audit; reject another; an expired one is refused; usable
on a phone.

Screenshots are kept in ``test-artifacts/console/``.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from access_kit import bearer

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.offline import OfflineStore
from serving.process import PROJECT, start_service
from training.config import LightGBMParams

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = PROJECT / "test-artifacts" / "console"
CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)

sync_api = pytest.importorskip("playwright.sync_api")


def waiting_policy(folder: Path) -> Path:
    """The shipped policy, with every outage message held for a person."""
    policy = yaml.safe_load((PROJECT / "actions" / "policies" / "default.yaml").read_text())
    for rule in policy["rules"]:
        if rule["id"] == "outage-message":
            rule["approval_above"] = 0
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory, prepare_serving, free_port):
    folder = tmp_path_factory.mktemp("console-browser")
    home = prepare_serving(folder, CONFIG, END, FAST)
    values = {
        **home.model_dump(), "serve_port": free_port(), "clock_start": END,
        "action_policy": waiting_policy(folder),
    }  # fmt: skip
    running = start_service(Settings.model_validate(values))
    customers = OfflineStore(home.home).read("customers")
    cell = customers.cell_id.value_counts().index[0]
    onset = {
        "event_id": "browser-outage", "event_type": "alarm_onset", "cell_id": cell,
        "occurred_at": (END - timedelta(minutes=30)).isoformat(), "severity": "critical",
        "alarm_id": f"alm-{cell}", "description": "cell down",
    }  # fmt: skip
    answer = httpx.post(
        f"{running.url}/events", json={"events": [onset]}, timeout=60, headers=bearer(home)
    )
    assert answer.status_code == 200, answer.text
    yield running, home
    running.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (Debian's chromium package)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def signed_in(browser, url: str, home: Settings, role: str, name: str, **options):
    """A new page signed in through the console's form with a new key of ``role``."""
    token = bearer(home, role, name)["Authorization"].removeprefix("Bearer ")
    page = browser.new_page(**options)
    page.goto(f"{url}/console/")
    page.wait_for_url("**/console/signin")
    page.fill("#key", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/inbox")
    return page


def open_waiting(page, url: str, nth: int) -> str:
    """Open the ``nth`` action of the inbox; returns its key."""
    page.goto(f"{url}/console/inbox")
    card = page.locator("article.card").nth(nth)
    key = card.get_attribute("data-key")
    card.locator("h3 a").click()
    page.wait_for_url(f"**/console/actions/{key}")
    return key


def test_approve_reject_and_expiry_in_the_browser(service, browser):
    running, home = service
    page = signed_in(
        browser, running.url, home, "approver", "ana", viewport={"width": 1280, "height": 900}
    )
    assert "ana" in page.locator("header").inner_text()
    assert page.locator("h1").first.inner_text().startswith("Waiting for approval:")
    assert page.locator("article.card").count() >= 3
    shot(page, "inbox")

    key = open_waiting(page, running.url, 0)
    shot(page, "action")
    page.fill("#comment", "customer is on a retention call")
    page.click("button[value=approve]")
    assert "approved: the action is now pending" in page.locator(".flash").inner_text()
    deadline = time.monotonic() + 30
    while "dispatched" not in page.locator("h1 .badge").inner_text():
        assert time.monotonic() < deadline, "the approved action was not delivered"
        time.sleep(0.5)
        page.reload()
    trail = page.locator("text=Audit trail").locator("xpath=following::table[1]").inner_text()
    assert "approval" in trail and "dispatch" in trail
    customer = page.locator("dd a").nth(1).inner_text()
    page.goto(f"{running.url}/console/history?customer={customer}")
    assert "Audit chain: intact" in page.locator("#chain").inner_text()
    assert key in page.content()
    shot(page, "history")

    rejected = open_waiting(page, running.url, 0)
    page.fill("#comment", "duplicate of a call already made")
    page.click("button[value=reject]")
    assert "rejected: the action is now rejected" in page.locator(".flash").inner_text()

    expiring = open_waiting(page, running.url, 0)
    with sqlite3.connect(home.home / "ledger.db") as db:  # its time to live runs out
        db.execute("UPDATE decisions SET expires_at = ? WHERE key = ?", (END.isoformat(), expiring))
    page.fill("#comment", "too late")
    page.click("button[value=approve]")
    assert "expired" in page.locator(".flash").inner_text()
    assert "expired" in page.locator("h1 .badge").inner_text()
    shot(page, "expired")
    with sqlite3.connect(home.home / "ledger.db") as db:
        statuses = dict(
            db.execute(
                "SELECT key, status FROM decisions WHERE key IN (?, ?, ?)",
                (key, rejected, expiring),
            ).fetchall()
        )
    assert statuses == {key: "dispatched", rejected: "rejected", expiring: "expired"}


def test_the_inbox_fits_a_phone(service, browser):
    running, home = service
    page = signed_in(
        browser, running.url, home, "viewer", "vic",
        viewport={"width": 390, "height": 844}, is_mobile=True,
    )  # fmt: skip
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "inbox-phone")
