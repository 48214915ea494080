"""Load on the action path over HTTP: network events posted to ``closedloop serve`` with real
models and online features, decided and committed to the ledger in the request.

    python -m bench.load [--customers 5000] [--seconds 10] [--soak-seconds 0] [--soak-rate 2]
                         [--home DIR]

1. KPI degradations of one cell each (about 200 customers scored, decided and guarded per
   event), one event per request, open loop at rising rates for SECONDS each: events committed
   per second, p50 / p99 latency from the scheduled send, requests refused (503), and the time
   ``/livez`` took meanwhile;
2. one-customer events (``repeated_failure`` of a customer), in requests of BATCH events, open
   loop at rising rates;
3. one-customer events alone in their request, open loop at rising rates: the latency of one
   event over HTTP;
4. beyond capacity: KPI events at four times the best rate of 1; the share of the refused
   requests (429/503) answered within 100 ms, and that no accepted event was lost;
5. with ``--soak-seconds``: the soak test's mix (alarms, flaps, clears, KPI, one-customer,
   invalid and re-sent events) at ``--soak-rate`` requests per second, every event accounted
   for against the ledger, the service's RSS at start and end (``tests/integration/test_load.py``
   runs it for 20 s at 2 requests per second).

Targets (the embedded profile under overload): ≥ 50 KPI events/s of 200 customers at
p99 ≤ 1 s, ≥ 1,000 one-customer events/s, p99 ≤ 10 ms for a one-customer event alone in its
request, 100 % of the excess answered 429/503 within 100 ms.
The bench's gate admits weaker models than the default one: it measures speed, not quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import numpy as np
from rich.console import Console
from rich.table import Table

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig

console = Console()
KPI_RATES = (10, 25, 50, 75, 100)
ONE_RATES = (250, 500, 1_000, 1_500, 2_000)  # events per second
BATCH = 50  # one-customer events per request
SINGLE_RATES = (20, 50, 100)  # one-customer events per second, one per request
SINGLE_P99_MS = 10.0
FAST_ANSWER_MS = 100.0
REFUSED = (429, 503)


@dataclass
class Sent:
    """One request: its events' ids, status, latency from the scheduled send (ms), latency
    from the actual send (ms) and whether it carried ``Retry-After``."""

    ids: list[str]
    status: int
    late_ms: float
    took_ms: float
    retry_after: bool


@dataclass
class Events:
    """Event bodies for a home's cells and customers, each id new (``prefix`` and a count)."""

    cells: list[str]
    customers: list[tuple[str, str]]  # (customer, its cell)
    at: datetime
    prefix: str = "ev"
    made: int = 0
    invalid: list[str] = field(default_factory=list)

    def _id(self, kind: str) -> str:
        self.made += 1
        return f"{self.prefix}-{kind}-{self.made}"

    def _base(self, kind: str, event_type: str, cell: str, severity: str = "major") -> dict:
        return {
            "event_id": self._id(kind), "event_type": event_type, "cell_id": cell,
            "occurred_at": self.at.isoformat(), "severity": severity,
        }  # fmt: skip

    def kpi(self) -> dict:
        """A KPI degradation of a cell: every customer of the cell is scored and decided."""
        cell = self.cells[self.made % len(self.cells)]
        event = self._base("kpi", "kpi_degradation", cell)
        return event | {"metric": "latency_ms", "value": 180.0, "threshold": 100.0}

    def one_customer(self) -> dict:
        """A customer who keeps failing to connect: one customer scored and decided."""
        customer, cell = self.customers[self.made % len(self.customers)]
        return self._base("one", "repeated_failure", cell) | {"customer_id": customer}

    def outage(self) -> list[dict]:
        """An alarm's onset, its flap (a repeat) and its clear."""
        cell = self.cells[self.made % len(self.cells)]
        onset = self._base("alarm", "alarm_onset", cell, "critical")
        alarm = {"alarm_id": f"alm-{onset['event_id']}"}
        flap = self._base("alarm", "alarm_onset", cell, "critical") | alarm
        clear = self._base("alarm", "alarm_clear", cell, "critical") | alarm
        return [onset | alarm, flap, clear]

    def bad(self) -> dict:
        """An event dated year 1: rejected with its reason, never taken."""
        event = self.kpi() | {"occurred_at": "0001-01-01T00:00:00+00:00"}
        self.invalid.append(event["event_id"])
        return event


async def open_loop(
    url: str, headers: dict, batches: list[list[dict]], rate: float, resend: bool = False
) -> tuple[list[Sent], float]:
    """Post each batch at its scheduled time (``rate`` requests per second); the answers, and
    the seconds from the first send to the last answer (status 0: none came). With ``resend``,
    a refused or unanswered batch is sent again (after its ``Retry-After``, else 1 s) until it
    is answered otherwise, as a client should: the events' ids make a second send harmless."""
    answers: list[Sent] = []
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=60)
    sending = {**headers, "content-type": "application/json"}
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def post(scheduled: float, batch: list[dict]) -> None:
            while True:
                began = time.perf_counter()
                body = json.dumps({"events": batch})
                try:
                    async with session.post("/events", data=body, headers=sending) as answer:
                        await answer.read()
                        status, wait = answer.status, answer.headers.get("Retry-After")
                except (aiohttp.ClientError, TimeoutError):
                    status, wait = 0, None
                now = time.perf_counter()
                ids = [str(e.get("event_id")) for e in batch]
                late, took = (now - scheduled) * 1_000, (now - began) * 1_000
                answers.append(Sent(ids, status, late, took, wait is not None))
                if not (resend and status in (*REFUSED, 0)):  # 0: no answer, its fate unknown
                    return
                await asyncio.sleep(float(wait or 1))

        start = time.perf_counter() + 0.05
        tasks = []
        for i, batch in enumerate(batches):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(scheduled, batch)))
        await asyncio.gather(*tasks)
    return answers, time.perf_counter() - start


async def liveness_while(url: str, work) -> tuple[object, list[float]]:
    """``work`` (a coroutine) and the latencies (ms) of ``/livez`` polled every 50 ms meanwhile;
    a poll that fails counts as 10 s."""
    polls: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=10)) as s:
            while not done.is_set():
                began = time.perf_counter()
                try:
                    async with s.get("/livez") as answer:
                        await answer.read()
                        ok = answer.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                polls.append((time.perf_counter() - began) * 1_000 if ok else 10_000.0)
                await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    try:
        result = await work
    finally:
        done.set()
        await poller
    return result, polls


def committed(home: Path, ids: list[str]) -> set[str]:
    """Which of ``ids`` the ledger holds as events (any sender)."""
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
        db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(i,) for i in ids])
        rows = db.execute("SELECT event_id FROM events JOIN wanted ON id = event_id").fetchall()
    return {i for (i,) in rows}


@dataclass(frozen=True)
class Rate:
    """What one open-loop run at one rate gave."""

    rate: float  # requests per second offered
    events_per_request: int
    offered: int  # events
    taken: int  # events answered 200 and found in the ledger
    lost: int  # events answered 200 but not in the ledger
    refused: int  # requests answered 429/503
    failed: int  # requests answered otherwise (or not at all)
    seconds: float
    p50_ms: float
    p99_ms: float
    livez_p50_ms: float
    livez_max_ms: float

    @property
    def events_per_second(self) -> float:
        return self.taken / self.seconds


def measure(
    url: str, headers: dict, home: Path, batches: list[list[dict]], rate: float
) -> tuple[Rate, list[Sent]]:
    answers, polls = asyncio.run(liveness_while(url, open_loop(url, headers, batches, rate)))
    answers, seconds = answers
    ok = [a for a in answers if a.status == 200]
    ids = [i for a in ok for i in a.ids]
    found = committed(home, ids)
    late = [a.late_ms for a in ok] or [float("nan")]
    return (
        Rate(
            rate, len(batches[0]), sum(len(b) for b in batches), len(found),
            len(set(ids) - found), sum(a.status in REFUSED for a in answers),
            sum(a.status not in (200, *REFUSED) for a in answers), seconds,
            float(np.percentile(late, 50)), float(np.percentile(late, 99)),
            statistics.median(polls) if polls else float("nan"), max(polls, default=float("nan")),
        ),
        answers,
    )  # fmt: skip


# -- the soak: a fixed rate of a mix of events, every one accounted for against the ledger ---


@dataclass(frozen=True)
class Soak:
    """Every event sent, and where the ledger has it."""

    sent: int  # distinct event ids sent (valid and invalid)
    requests: int
    refused: int  # requests answered 429/503 (sent again after Retry-After)
    failed: int  # requests answered other than 200/207/429/503 (or not at all: sent again)
    resent_duplicates: int  # events sent again on purpose, answered duplicate
    lost: int  # valid events not in the ledger
    rejected: int  # invalid events in the ledger's dead-letter with their reason
    actioned: int  # events with a decision committed for delivery or approval
    suppressed: int  # events whose every decision a guard suppressed
    no_action: int  # events needing no action (repeats, clears, below every threshold)
    doubled_events: int  # an event id held twice
    rss_start_mb: float
    rss_end_mb: float

    @property
    def accounted(self) -> int:
        return self.rejected + self.actioned + self.suppressed + self.no_action


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together (Linux /proc), MB."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in lines if x.startswith("VmRSS:")), 0)
    return total / 1024


def soak(
    url: str, headers: dict, home: Path, events: Events, rate: float, seconds: float, pids
) -> Soak:
    """``rate`` requests per second for ``seconds``, each a mix (see the module) of about five
    events; refused requests are sent again after their Retry-After. ``pids()``: the service's
    processes, whose RSS is read at start and end."""
    batches: list[list[dict]] = []
    for n in range(int(rate * seconds)):
        batch = [events.kpi(), events.one_customer()]
        if n % 5 == 0:
            batch += events.outage()
        if n % 7 == 0:
            batch.append(events.bad())
        if n % 11 == 0 and batches:
            batch.append(batches[-1][0])  # a re-sent event: a duplicate, never a second one
        batches.append(batch)
    start = rss_mb(pids())
    answers, _ = asyncio.run(open_loop(url, headers, batches, rate, resend=True))
    end = rss_mb(pids())
    bad = set(events.invalid)
    valid = {e["event_id"] for b in batches for e in b} - bad
    with sqlite3.connect(home / "ledger.db") as db:
        outcome = dict(db.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id"))
        decided = db.execute("SELECT event_id, status FROM decisions").fetchall()
        rejected = {i for (i,) in db.execute("SELECT event_id FROM rejected_events")}
    statuses: dict[str, set[str]] = {}
    for event_id, status in decided:
        statuses.setdefault(event_id, set()).add(status)
    mine = [i for i in valid if i in outcome]
    kinds = Counter(
        "no_action" if not statuses.get(i) else
        "suppressed" if statuses[i] == {"suppressed"} else "actioned"
        for i in mine
    )  # fmt: skip
    resent = sum(len(b) for b in batches) - len({e["event_id"] for b in batches for e in b})
    return Soak(
        sent=len(valid | bad),
        requests=len(answers),
        refused=sum(a.status in REFUSED for a in answers),
        failed=sum(a.status not in (200, 207, *REFUSED) for a in answers),
        resent_duplicates=resent,
        lost=len(valid) - len(mine),
        rejected=len(bad & rejected),
        actioned=kinds["actioned"],
        suppressed=kinds["suppressed"],
        no_action=kinds["no_action"],
        doubled_events=sum(outcome[i] > 1 for i in mine),
        rss_start_mb=start,
        rss_end_mb=end,
    )


# -- the bench's own home and service --------------------------------------------------------


def prepare_home(home: Path, customers: int) -> tuple[Settings, datetime]:
    """A world of ``customers`` (200 a cell) with its online store loaded and churn and fault
    champions registered."""
    from closedloop.models import GateConfig
    from closedloop.world.simulate import simulate
    from closedloop.world.store import write_world
    from features.ingest import ingest_world
    from features.pipeline import apply_repository, build_features, materialize
    from training import registry
    from training.config import LightGBMParams, churn_defaults, fault_defaults
    from training.pipeline import train

    config = WorldConfig(customers=customers, days=63, seed=11)
    end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=config.days)
    settings = Settings(home=home, clock_start=end)
    if (home / "ready").exists():
        return settings, end
    write_world(simulate(config), home / "world")
    ingest_world(home / "world", home, end)
    build_features(home, end)
    apply_repository(settings)
    materialize(settings, end - timedelta(days=config.days + 1), end, stock=False)
    registry.connect(settings)
    fast = LightGBMParams(num_boost_round=200, early_stopping_rounds=20)
    gate = GateConfig(min_roc_auc=0.5, min_pr_auc_lift=1.0)  # speed is measured, not quality
    for target, defaults in (("churn", churn_defaults), ("fault", fault_defaults)):
        outcome = train(settings, target, defaults().model_copy(update={"lightgbm": fast,
                                                                        "gate": gate}))  # fmt: skip
        if not outcome.decision.promote:
            raise SystemExit(f"no {target} champion: {outcome.decision.reasons}")
    (home / "ready").touch()
    return settings, end


def source_key(settings: Settings, name: str) -> dict[str, str]:
    """The Authorization header of a new event source key of the home."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore
    from closedloop.access import Role, local_admin

    now = datetime.now(UTC)
    ledger = open_ledger(settings)
    try:
        made = KeyStore(ledger).create(
            name, Role.EVENT_SOURCE, now + timedelta(days=1), local_admin(), now
        )
    finally:
        ledger.close()
    return {"Authorization": f"Bearer {made.token}"}


def inventory(settings: Settings, at: datetime, prefix: str) -> Events:
    from features.offline import OfflineStore

    customers = OfflineStore(settings.home).read("customers")
    cells = customers.cell_id.value_counts()
    pairs = list(zip(customers.customer_id, customers.cell_id, strict=True))
    return Events(list(cells.index), pairs, at, prefix)


def rates_table(title: str, rows: list[Rate]) -> Table:
    table = Table(title=title)
    for column in ("offered ev/s", "taken ev/s", "p50 ms", "p99 ms", "refused", "failed",
                   "lost", "livez p50 ms", "livez max ms"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r.rate * r.events_per_request:,.0f}", f"{r.events_per_second:,.1f}",
            f"{r.p50_ms:,.0f}", f"{r.p99_ms:,.0f}", str(r.refused), str(r.failed), str(r.lost),
            f"{r.livez_p50_ms:.1f}", f"{r.livez_max_ms:.1f}",
        )  # fmt: skip
    return table


def best(rows: list[Rate], p99_limit_ms: float) -> Rate | None:
    """The highest rate taken in full (nothing refused, failed or lost) within the p99 limit."""
    fine = [r for r in rows if not (r.refused or r.failed or r.lost) and r.p99_ms <= p99_limit_ms]
    return max(fine, key=lambda r: r.events_per_second, default=None)


def main(argv: list[str] | None = None) -> None:
    from serving.process import descendants, start_service

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--soak-seconds", type=float, default=0.0)
    parser.add_argument("--soak-rate", type=float, default=2.0, help="requests per second")
    parser.add_argument("--home", type=Path, help="keep the prepared home here (reused)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        console.print(f"preparing a {args.customers:,}-customer world and both champions…")
        settings, end = prepare_home(home, args.customers)
        run = f"{time.time_ns():x}"
        events = inventory(settings, end - timedelta(minutes=1), run)
        headers = source_key(settings, f"bench {run}")
        served = settings.model_copy(update={
            "serve_port": _free_port(), "events_per_second": 1e6, "events_burst": 10**6,
        })  # fmt: skip
        service = start_service(served)
        try:
            url = service.url
            asyncio.run(open_loop(url, headers, [[events.kpi()] for _ in range(10)], 5))
            kpi = []
            for rate in KPI_RATES:
                batches = [[events.kpi()] for _ in range(int(rate * args.seconds))]
                kpi.append(measure(url, headers, home, batches, rate)[0])
                console.print(rates_table("KPI degradations", kpi[-1:]))
            one = []
            for rate in ONE_RATES:
                count = int(rate / BATCH * args.seconds)
                batches = [[events.one_customer() for _ in range(BATCH)] for _ in range(count)]
                one.append(measure(url, headers, home, batches, rate / BATCH)[0])
                console.print(rates_table("one-customer events", one[-1:]))
            single = []
            for rate in SINGLE_RATES:
                batches = [[events.one_customer()] for _ in range(int(rate * args.seconds))]
                single.append(measure(url, headers, home, batches, rate)[0])
                console.print(rates_table("one-customer events, one per request", single[-1:]))
            top = best(kpi, 1_000.0)
            over = 4 * (top.rate if top else KPI_RATES[0])
            batches = [[events.kpi()] for _ in range(int(over * args.seconds))]
            excess, answers = measure(url, headers, home, batches, over)
            soaked = None
            if args.soak_seconds:
                pids = lambda: [service.process.pid, *descendants(service.process.pid)]  # noqa: E731
                soaked = soak(url, headers, home, events, args.soak_rate, args.soak_seconds, pids)
        finally:
            service.stop()
    report(kpi, one, single, excess, answers, soaked, args)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def report(kpi, one, single, excess: Rate, answers: list[Sent], soaked: Soak | None, args) -> None:
    console.print(rates_table(f"KPI degradations, 1 event/request, {args.seconds:g} s each", kpi))
    console.print(rates_table(f"one-customer events, {BATCH} events/request", one))
    console.print(rates_table("one-customer events, 1 event/request", single))
    console.print(rates_table("beyond capacity (KPI, 4× the best rate)", [excess]))
    top, top_one = best(kpi, 1_000.0), best(one, 1_000.0)
    refused = [a for a in answers if a.status in REFUSED]
    fast = [a for a in refused if a.took_ms <= FAST_ANSWER_MS and a.retry_after]
    share = len(fast) / len(refused) if refused else float("nan")
    refused_ms = [a.took_ms for a in refused] or [float("nan")]
    kpi_rate = f"{top.events_per_second:.1f} events/s at p99 {top.p99_ms:.0f} ms" if top else "none"
    one_rate = f"{top_one.events_per_second:,.0f} events/s" if top_one else "none"
    alone = best(single, SINGLE_P99_MS)
    alone_rate = (
        f"up to {alone.events_per_second:,.0f} events/s at p99 {alone.p99_ms:.1f} ms"
        if alone
        else "at no rate; p99 " + " / ".join(f"{r.p99_ms:,.1f}" for r in single) + " ms"
    )
    console.print(
        f"KPI degradations taken in full at p99 ≤ 1 s: {kpi_rate} (target ≥ 50 events/s)\n"
        f"one-customer events taken in full at p99 ≤ 1 s: {one_rate} (target ≥ 1,000/s)\n"
        f"one-customer event alone in its request, p99 ≤ {SINGLE_P99_MS:g} ms: {alone_rate}\n"
        f"beyond capacity: {len(refused)} of {len(answers)} requests refused, "
        f"{share:.1%} of them within {FAST_ANSWER_MS:g} ms with Retry-After (target 100 %); "
        f"refusal p50 {np.percentile(refused_ms, 50):.1f} ms, "
        f"p99 {np.percentile(refused_ms, 99):.1f} ms; {excess.lost} accepted events lost"
    )
    if soaked is not None:
        console.print(f"soak {args.soak_seconds:g} s: {soaked}")


if __name__ == "__main__":
    main()
