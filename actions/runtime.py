"""The action runtime, opened from the settings: ledger, policy, customers, scores, adapters.

:func:`open_runtime` decides and commits (the service's ``POST /events``, ``closedloop
replay``); :func:`open_dispatcher` delivers what was committed, while it holds the ledger's
lease (a thread of each service worker, ``replay`` after committing, ``closedloop actions
dispatch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from actions.adapters import Adapter, Circuit, HttpAdapter, OutboxAdapter
from actions.backends import open_ledger
from actions.dispatch import Dispatcher
from actions.intake import Record
from actions.ledger import Ledger
from actions.policy import ActionType, load_policy
from actions.policy_record import put_in_force
from actions.processor import Directory, Outcome, Processor
from actions.scoring import ScoresProvider
from closedloop.access import Principal
from closedloop.events import NetworkEvent
from closedloop.settings import Settings
from features.backends import online_store
from features.canonical import CELLS, CUSTOMERS
from features.offline import OfflineStore
from features.online import ReadingWriter


def check_endpoints(settings: Settings) -> None:
    """Raises ValueError naming any endpoint whose action type does not exist."""
    unknown = set(settings.action_endpoints) - {a.value for a in ActionType}
    if unknown:
        raise ValueError(f"action_endpoints: unknown action type(s) {', '.join(sorted(unknown))}")


def adapters_for(settings: Settings, client: httpx.Client) -> dict[ActionType, Adapter]:
    """An HTTP adapter where an endpoint is configured (one circuit breaker per endpoint, shared
    by the action types it receives), the local outbox elsewhere."""
    check_endpoints(settings)
    outbox = OutboxAdapter(settings.paths.outbox)
    circuits = {
        url: Circuit(
            url, settings.action_circuit_failures, settings.action_circuit_cool_down_seconds
        )
        for url in settings.action_endpoints.values()
    }
    return {
        action: HttpAdapter(url, settings.action_timeout_seconds, client, circuits[url])
        if (url := settings.action_endpoints.get(action.value))
        else outbox
        for action in ActionType
    }


def live_writer(settings: Settings) -> ReadingWriter | None:
    """The writer of cells' live features into the profile's online store (SQLite, or Redis
    through Feast); None before ``features apply``."""
    return online_store(settings).live_writer()


def customers_directory(settings: Settings) -> Directory:
    """The inventory: the offline store's canonical customers and cells tables."""
    store = OfflineStore(settings.home)
    return Directory.load(store.table_path(CUSTOMERS.name), store.table_path(CELLS.name))


@dataclass
class Runtime:
    ledger: Ledger
    processor: Processor
    telemetry: ReadingWriter | None = None

    def handle(self, events: list[NetworkEvent], by: str | None = None) -> list[Outcome]:
        """Decide and commit each event, sent by ``by`` (a principal's label); delivery is the
        dispatcher's business."""
        return self.processor.process_many(events, by=by)

    def take(
        self,
        records: list[Record],
        hold: float | None = None,
        patience: float = 0.0,
        sender: str = "",
        by: str | None = None,
    ) -> list[Outcome]:
        """Validate each record on its own, then decide and commit the valid ones; the others
        are recorded as rejected (see :meth:`Processor.take`); ``sender``, the authenticated
        event source, scopes the events' ids; ``by`` (a principal's label) sent them."""
        return self.processor.take(records, hold, patience, sender, by)

    def close(self) -> None:
        self.ledger.close()
        if self.telemetry is not None:
            self.telemetry.close()


def open_runtime(
    settings: Settings,
    scores: ScoresProvider,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    who: Callable[[], Principal] | None = None,
) -> Runtime:
    """Open everything, with the settings' policy in force (:func:`put_in_force`: a changed
    policy needs ``who``, asked then, to be allowed to change it); raises PolicyError,
    AccessDeniedError, FileNotFoundError or a database error."""
    policy = load_policy(settings.action_policy)
    check_endpoints(settings)
    directory = customers_directory(settings)
    ledger = open_ledger(settings)
    try:
        put_in_force(ledger, policy, clock(), who)
    except BaseException:
        ledger.close()
        raise
    telemetry = live_writer(settings)
    processor = Processor(ledger, policy, directory, scores, clock, telemetry)
    return Runtime(ledger, processor, telemetry)


@contextmanager
def open_dispatcher(
    settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Iterator[Dispatcher]:
    """A dispatcher on its own ledger connection and HTTP client, closed on exit (its lease
    released)."""
    with httpx.Client() as client:
        adapters = adapters_for(settings, client)
        ledger = open_ledger(settings)
        dispatcher = Dispatcher(
            ledger,
            adapters,
            settings.action_retries,
            settings.action_backoff_seconds,
            clock,
            settings.action_lease_seconds,
        )
        try:
            yield dispatcher
        finally:
            try:
                dispatcher.release()
            finally:
                ledger.close()
