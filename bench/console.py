"""Ops console: the server time of each page on a 5,000-customer home with >= 1,000 actions
waiting for approval.

    python -m bench.console [--customers 5000] [--outage-cells 25] [--requests 20]

The home is built on the embedded profile (SQLite ledger) through the decision path a replay
runs (the processor, in batches of events) and the dispatcher: yesterday an outage on every
cell, decided, delivered (escalations to a receiver that is down, so they are dead letters) and
its approvals since expired; today critical outages on OUTAGE-CELLS cells under the default
policy changed so that every customer action needs approval. Scores come from a fixed provider
(``bench.serving`` measures scoring). The console's ASGI app is then served in this process
behind the service's door (serving/access.py) with an approver's key, and each page is
requested REQUESTS times (the inbox as it opens, 100 actions a page, and with 1,000 on one
page): the table prints the median and p95 of its ``Server-Timing`` (the
page's handler: queries and template), the median round trip (the door included) and the
median CPU time of this process per request (what the page costs when other work shares the
cores). Target: the inbox of 1,000 actions <= 300 ms server time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from bench.actions import FixedScores, customers

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
PER_CELL = 50
BATCH = 100  # events per transaction, as a replay commits them
TARGET_INBOX_MS = 300.0
APPROVED_RULES = ("outage-message", "sla-credit", "retention-offer")  # approval_above: 0


def _closed_port() -> int:
    """A local TCP port nothing listens on: the receiver that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _policy(folder: Path) -> Path:
    """The packaged default policy, with every customer action needing approval."""
    text = resources.files("actions").joinpath("policies", "default.yaml").read_text()
    policy = yaml.safe_load(text)
    for rule in policy["rules"]:
        if rule["id"] in APPROVED_RULES:
            rule["approval_above"] = 0
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _outage(cell: str, at: datetime, day: str, cleared: bool) -> list:
    """An outage on ``cell``: its alarm at ``at``, and its clear an hour later if ``cleared``."""
    from closedloop.events import EventType, NetworkEvent, Severity

    return [
        NetworkEvent(
            event_id=f"{day}-{cell}-{kind.value}", event_type=kind,
            occurred_at=at + timedelta(hours=hours), cell_id=cell, severity=Severity.CRITICAL,
            alarm_id=f"power-{day}-{cell}",
        )
        for kind, hours in ((EventType.ALARM_ONSET, 0), (EventType.ALARM_CLEAR, 1))[: 1 + cleared]
    ]  # fmt: skip


def build_home(people: int, outage_cells: int) -> dict[str, int]:
    """Decide and deliver yesterday's and today's outages into the home's ledger (the
    environment names it); returns counts of what the ledger holds."""
    from actions.approvals import expire
    from actions.backends import open_ledger
    from actions.policy import load_policy
    from actions.processor import Directory, Processor
    from actions.runtime import open_dispatcher
    from closedloop.settings import Settings

    settings = Settings()
    crowd = customers(max(1, people // PER_CELL), PER_CELL, "cus")
    cells = list(dict.fromkeys(c.cell_id for c in crowd))
    clock = [NOW]
    ledger = open_ledger(settings)
    policy = load_policy(settings.action_policy)
    processor = Processor(ledger, policy, Directory.of(crowd), FixedScores(crowd), lambda: clock[0])
    days = (  # (which day, its outages' onset, their cells, cleared by now)
        ("yesterday", NOW - timedelta(days=1), cells, True),
        ("today", NOW - timedelta(minutes=30), cells[:outage_cells], False),
    )
    try:
        for day, at, affected, cleared in days:
            clock[0] = min(NOW, at + timedelta(hours=2))
            events = [e for cell in affected for e in _outage(cell, at, day, cleared)]
            for start in range(0, len(events), BATCH):
                processor.process_many(events[start : start + BATCH])
            with open_dispatcher(settings, lambda: clock[0]) as dispatcher:
                dispatcher.drain()
        expire(ledger, NOW)
        tx = ledger.read()
        counts = {
            row["status"]: int(row["n"])
            for row in tx.rows("SELECT status, COUNT(*) AS n FROM decisions GROUP BY status")
        }
        counts["events"] = int(tx.value("SELECT COUNT(*) FROM events"))
        counts["audit rows"] = int(tx.value("SELECT COUNT(*) FROM audit"))
    finally:
        ledger.close()
    return counts


def approver_key() -> str:
    """The token of a new approver key in the home's key store."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore
    from closedloop.access import Role, local_admin
    from closedloop.settings import Settings

    ledger = open_ledger(Settings())
    try:
        now = datetime.now(UTC)
        made = KeyStore(ledger).create(
            "bench", Role.APPROVER, now + timedelta(days=1), local_admin(), now
        )
    finally:
        ledger.close()
    return made.token


def pages(first: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """Each page as a person opens it, about the inbox's first action."""
    return {
        "inbox, first page": ("/inbox", {}),
        "inbox, 1,000 on one page": ("/inbox", {"size": "1000"}),
        "one action": (f"/actions/{first['key']}", {}),
        "history of a customer": ("/history", {"customer": first["customer_id"]}),
        "history of a cell": ("/history", {"cell": first["cell_id"]}),
        "history of an incident": ("/history", {"incident": first["incident"]}),
        "feed": ("/feed", {}),
        "dead letters": ("/dead-letters", {}),
        "models": ("/models", {}),
    }


def time_pages(requests: int) -> tuple[dict[str, dict[str, float]], int, int]:
    """Median and p95 of each page's Server-Timing and round trip, in ms; the inbox's size and
    the registry's model versions (what the models page lists)."""
    import time
    import warnings

    from starlette.applications import Starlette
    from starlette.routing import Mount

    with warnings.catch_warnings(action="ignore"):  # httpx through the test client
        from starlette.testclient import TestClient

    from actions.backends import open_ledger
    from actions.policy import load_policy
    from actions.views import inbox
    from closedloop.models import SPECS
    from closedloop.quiet import quiet_libraries
    from closedloop.settings import Settings
    from serving.access import AccessControl
    from serving.console import app as console
    from training import registry

    quiet_libraries()
    settings = Settings()
    registry.connect(settings)
    ledger = open_ledger(settings)
    try:
        found = inbox(ledger, load_policy(settings.action_policy), NOW)
    finally:
        ledger.close()
    if not found.items:
        raise SystemExit("nothing waits for approval in the home built: check the policy")
    headers = {"Authorization": f"Bearer {approver_key()}"}
    served = AccessControl(Starlette(routes=[Mount("/console", console.console_app)]))
    figures = {}
    with TestClient(served, base_url="http://testserver/console", headers=headers) as client:
        for name, (path, params) in pages(found.items[0].decision).items():
            client.get(path, params=params).raise_for_status()  # warm: templates compiled
            server, trip, cpu = [], [], []
            for _ in range(requests):
                began, spent = time.perf_counter(), time.process_time()
                answer = client.get(path, params=params)
                trip.append(1000 * (time.perf_counter() - began))
                cpu.append(1000 * (time.process_time() - spent))
                answer.raise_for_status()
                server.append(float(answer.headers["server-timing"].split("dur=")[1]))
            figures[name] = {
                "server_p50": statistics.median(server), "server_p95": _p95(server),
                "trip_p50": statistics.median(trip), "cpu_p50": statistics.median(cpu),
                "bytes": len(answer.content),
            }  # fmt: skip
    return figures, found.total, len(registry.list_versions(list(SPECS)))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--outage-cells", type=int, default=25, help="cells down today")
    parser.add_argument("--requests", type=int, default=20, help="requests per page")
    args = parser.parse_args(argv)
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            CLOSEDLOOP_HOME=tmp, CLOSEDLOOP_PROFILE="embedded",
            CLOSEDLOOP_ACTION_POLICY=str(_policy(Path(tmp))),
            CLOSEDLOOP_CLOCK_START=NOW.isoformat(), CLOSEDLOOP_ACTION_RETRIES="0",
            CLOSEDLOOP_ACTION_TIMEOUT_SECONDS="0.5",
            CLOSEDLOOP_ACTION_ENDPOINTS=json.dumps(
                {"escalate_incident": f"http://127.0.0.1:{_closed_port()}/incidents"}
            ),
        )  # fmt: skip
        try:
            held = build_home(args.customers, args.outage_cells)
            figures, waiting, versions = time_pages(args.requests)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    print_figures(args, {**held, "model versions in the registry": versions}, figures, waiting)


def print_figures(args, held: dict[str, int], figures: dict, waiting: int) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]
    shown = ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in sorted(held.items()))
    table = Table(
        title=f"ops console pages, {args.requests} requests each, on {args.customers:,} "
        f"customers with {waiting:,} actions waiting (load average {load} on "
        f"{os.cpu_count()} cores)",
        caption=f"home: {shown}",
    )
    for column in ("page", "server p50", "server p95", "round trip p50", "CPU p50",
                   "page size", "target", "met"):  # fmt: skip
        table.add_column(column, justify="left" if column == "page" else "right")
    for name, f in figures.items():
        target = met = ""
        if name.startswith("inbox"):
            target = f"<= {TARGET_INBOX_MS:g} ms"
            met = "yes" if f["server_p50"] <= TARGET_INBOX_MS else "NO"
        table.add_row(
            name, f"{f['server_p50']:.1f} ms", f"{f['server_p95']:.1f} ms",
            f"{f['trip_p50']:.1f} ms", f"{f['cpu_p50']:.1f} ms", f"{f['bytes'] / 1024:,.0f} KiB",
            target, met,
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
