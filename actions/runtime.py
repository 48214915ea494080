"""The action runtime, opened from the settings: ledger, policy, customers, scores, adapters.

The service opens it with its :class:`~serving.scoring.Scorer`; ``closedloop replay`` opens it
with the champions loaded in-process. Opening delivers whatever a previous run left pending.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from actions.adapters import Adapter, HttpAdapter, OutboxAdapter
from actions.ledger import Ledger
from actions.policy import ActionType, load_policy
from actions.processor import Directory, Dispatcher, Outcome, Processor, ScoresProvider
from closedloop.events import NetworkEvent
from closedloop.scores import Score
from closedloop.settings import Profile, Settings
from features.backends import online_store
from features.online import LiveWriter


def open_ledger(settings: Settings) -> Ledger:
    if settings.profile is Profile.CLUSTER:
        return Ledger.postgresql(settings.postgres_dsn.get_secret_value(), settings.ledger_schema)
    return Ledger.sqlite(settings.home / "ledger.db")


def adapters_for(settings: Settings, client: httpx.Client) -> dict[ActionType, Adapter]:
    """An HTTP adapter where an endpoint is configured, the local outbox elsewhere."""
    unknown = set(settings.action_endpoints) - {a.value for a in ActionType}
    if unknown:
        raise ValueError(f"action_endpoints: unknown action type(s) {', '.join(sorted(unknown))}")
    outbox = OutboxAdapter(settings.home / "actions" / "outbox")
    return {
        action: HttpAdapter(url, settings.action_timeout_seconds, client)
        if (url := settings.action_endpoints.get(action.value))
        else outbox
        for action in ActionType
    }


def live_writer(settings: Settings) -> LiveWriter | None:
    """The writer of cells' live features into the profile's online store; None without one
    (not applied yet, or the cluster profile's Redis store)."""
    return online_store(settings).live_writer()


@dataclass
class Runtime:
    ledger: Ledger
    processor: Processor
    dispatcher: Dispatcher
    pause_seconds: float
    client: httpx.Client
    telemetry: LiveWriter | None = None

    def handle(self, events: list[NetworkEvent]) -> tuple[list[Outcome], Counter[str]]:
        """Decide and commit each event, then deliver what is pending; returns the outcomes
        and the delivery results by status."""
        outcomes = self.processor.process_many(events)
        if self.pause_seconds:
            time.sleep(self.pause_seconds)  # a window to kill the process in (tests)
        return outcomes, self.dispatcher.drain()

    def close(self) -> None:
        self.client.close()
        self.ledger.close()
        if self.telemetry is not None:
            self.telemetry.close()


class NoScores:
    """A scores provider with no models: only threshold-0 rules can fire."""

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {}

    def fault(self, cell_id: str) -> Score | None:
        return None


def open_runtime(
    settings: Settings,
    scores: ScoresProvider,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Runtime:
    """Open everything; raises PolicyError, FileNotFoundError or a database error."""
    policy = load_policy(settings.action_policy)
    directory = Directory.load(settings.world_dir)
    ledger = open_ledger(settings)
    client = httpx.Client()
    dispatcher = Dispatcher(
        ledger,
        adapters_for(settings, client),
        settings.action_retries,
        settings.action_backoff_seconds,
        clock,
    )
    telemetry = live_writer(settings)
    runtime = Runtime(
        ledger,
        Processor(ledger, policy, directory, scores, clock, telemetry),
        dispatcher,
        settings.action_pause_seconds,
        client,
        telemetry,
    )
    dispatcher.drain()  # what a crashed run committed but never delivered
    return runtime
