"""The BentoML service: churn and fault scores with reasons, from the registry's champions.

Start it with ``closedloop serve`` or ``bentoml serve serving.service:Closedloop``. Settings
come from the environment (``CLOSEDLOOP_*``) once, when a worker builds the service: importing
this module reads nothing and registers nothing. Where it listens and how many workers run are
BentoML's own options (``--host``, ``--port``, ``BENTOML_CONFIG_OVERRIDES``), which
``closedloop serve`` sets from the settings.

BentoML imports this module in its supervisor process too, which only needs the routes: the
model, online store and registry code (LightGBM, MLflow) is imported by the worker that scores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse

from closedloop.models import SPECS
from closedloop.settings import Settings, redact_logs
from serving.access import AccessControl, TokenBucket, principal_in, retry_after
from serving.api import (
    CellRequest,
    CustomerRequest,
    EventOutcome,
    EventsRequest,
    EventsResponse,
    Health,
    ModelHealth,
    RequestError,
    ScoreResponse,
    WhatIfRequest,
)
from serving.console.app import console_app
from serving.group_commit import GroupCommit, NotTakenError
from serving.metrics import service_metrics
from serving.shedding import intakes, retry_later

if TYPE_CHECKING:
    from actions.dispatch import Dispatcher
    from actions.intake import Record
    from actions.processor import Outcome
    from actions.runtime import Runtime
    from closedloop.access import Principal
    from features.online import FeatureReader
    from serving.actions_bridge import ScorerScores
    from serving.champion import Champion
    from serving.scoring import Scored

MODELS = list(SPECS)
log = logging.getLogger("closedloop.serving")

health_app = FastAPI()


def _readers(settings: Settings) -> tuple[dict[str, FeatureReader], list[str]]:
    from features.backends import OnlineStoreError, online_store

    try:
        return online_store(settings).readers(settings.serve_feature_cache), []
    except (FileNotFoundError, OnlineStoreError) as error:
        return {}, [str(error)]


def _action_runtime(settings: Settings, scores: ScorerScores) -> tuple[Runtime | None, list[str]]:
    """The action layer over this worker's scorer; a problem is reported, never fatal."""
    from actions.runtime import open_runtime
    from closedloop.clock import running_clock

    try:
        runtime = open_runtime(settings, scores, running_clock(settings.clock_start))
    except Exception as error:  # a bad policy or missing customers must not stop scoring
        log.error("the action layer cannot open: %s", error)
        return None, [f"actions: {error}"]
    return runtime, []


def _point_at_registry(settings: Settings) -> None:
    from training import registry

    registry.point_at(settings)


def _stream(settings: Settings):
    from actions.backends import open_stream

    return open_stream(settings)


class DeliveryThread:
    """This worker's dispatcher: delivers the ledger's pending actions whenever it holds the
    ledger's lease (one worker at a time across every worker and process), off the request
    path; woken when an event batch commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop, self.wake = threading.Event(), threading.Event()
        self.dispatcher: Dispatcher | None = None
        self.thread = threading.Thread(target=self._run, name="closedloop-dispatch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from actions.runtime import open_dispatcher
        from closedloop.clock import running_clock

        try:
            with open_dispatcher(self.settings, running_clock(self.settings.clock_start)) as d:
                self.dispatcher = d
                d.follow(self.stop, self.wake)
        except Exception:
            log.exception("the dispatcher stopped")

    def problems(self) -> list[str]:
        """Endpoints whose circuit is not closed: their deliveries are dead-lettered."""
        circuits = self.dispatcher.circuits() if self.dispatcher is not None else []
        return [f"delivery: {c}" for c in circuits if c.state != "closed"]

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout=30)


def _status(outcome: str) -> str:
    """accepted, duplicate or rejected: what a client needs to know of an event's outcome."""
    return outcome if outcome in ("duplicate", "rejected") else "accepted"


@bentoml.asgi_app(health_app, path="/status")
@bentoml.asgi_app(console_app, path="/console")
@bentoml.service(name="closedloop", traffic={"timeout": 30})
class Closedloop:
    """Scores customers for churn and cells for faults, with reasons, in real time."""

    def __init__(self) -> None:
        from serving.process import die_with_parent, lightgbm_without_sklearn

        lightgbm_without_sklearn()  # before anything imports LightGBM

        from closedloop.clock import running_clock
        from serving.actions_bridge import ScorerScores, action_readers
        from serving.champion import Champions, ModelCache
        from serving.logs import quiet_client_errors
        from serving.prediction_log import PredictionLog
        from serving.scoring import Scorer

        settings = Settings()  # the worker is the service's entry point
        quiet_client_errors()
        redact_logs(settings)
        die_with_parent()  # a worker whose server was killed stops instead of keeping the port
        self.metrics = service_metrics()
        cache = ModelCache(settings.paths.model_cache)
        self.champions = Champions(MODELS, cache, on_swap=self._served)
        self.champions.start(
            settings.model_poll_seconds,
            settings.registry_timeout_seconds,
            connect=lambda: _point_at_registry(settings),  # MLflow imported by the watcher
        )
        readers, self.problems = _readers(settings)
        self.scorer = Scorer(self.champions, readers, running_clock(settings.clock_start))
        self.log = PredictionLog(settings.home)
        self.action_scores = ScorerScores(  # the scores the action layer reads
            Scorer(self.champions, action_readers(readers), running_clock(settings.clock_start))
        )
        self.actions, self.action_problems = _action_runtime(settings, self.action_scores)
        self.delivery = DeliveryThread(settings) if self.actions is not None else None
        self.stream = _stream(settings)  # cluster: POST /events appends, consumers decide
        self._acting = threading.Lock()  # cluster: one ledger connection, one append at a time
        self.commits = GroupCommit(self._take)  # embedded: concurrent requests, one commit
        self._patience = settings.ledger_busy_seconds  # then 503, never a 504 of unknown fate
        self.events_rate = TokenBucket(settings.events_per_second, settings.events_burst)
        held = intakes(settings.serve_max_pending)  # work off the event loop, bounded
        self.scoring, self.intake = held["scoring"], held["events"]

    def __is_ready__(self) -> bool:
        return self.champions.ready and not self.problems

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop watching the registry and write every queued prediction."""
        self.champions.stop()
        self.scoring.close()
        self.intake.close()
        self.log.close()
        if self.delivery is not None:
            self.delivery.close()
        if self.actions is not None:
            self.actions.close()
        if self.stream is not None:
            self.stream.close()
        log.info("prediction log closed: %d rows written by this worker", self.log.written)

    @bentoml.api(route="/churn/score")
    async def churn_score(self, request: CustomerRequest, /) -> ScoreResponse:
        """Churn risk of customers, features looked up in the online store."""
        return await self._score(
            "churn",
            "online",
            lambda: self.scorer.by_ids("churn", request.customer_ids, request.explain),
        )

    @bentoml.api(route="/fault/score")
    async def fault_score(self, request: CellRequest, /) -> ScoreResponse:
        """Fault risk of cells in the next hours, features looked up in the online store."""
        return await self._score(
            "fault",
            "online",
            lambda: self.scorer.by_ids("fault", request.cell_ids, request.explain),
        )

    @bentoml.api(route="/churn/what-if")
    async def churn_what_if(self, request: WhatIfRequest, /) -> ScoreResponse:
        """Churn risk of supplied feature values: what would the model say if..."""
        return await self._score(
            "churn",
            "supplied",
            lambda: self.scorer.supplied("churn", request.rows, request.explain),
        )

    @bentoml.api(route="/fault/what-if")
    async def fault_what_if(self, request: WhatIfRequest, /) -> ScoreResponse:
        """Fault risk of supplied feature values."""
        return await self._score(
            "fault",
            "supplied",
            lambda: self.scorer.supplied("fault", request.rows, request.explain),
        )

    @bentoml.api(route="/events")
    async def events(self, request: EventsRequest, /, ctx: bentoml.Context) -> EventsResponse:
        """Network events in; what the action layer decided, suppressed or queued for approval
        out, committed to the ledger (delivery follows, by the dispatcher holding the ledger's
        lease). A re-sent event changes nothing. Each event is answered on its own: 200 when
        every one was accepted (or a duplicate), 207 when some were rejected (each with its
        reason, recorded in the ledger), 422 when all were. On the cluster profile the valid
        events are appended to the event stream and decided by 'closedloop consume': 202 with
        their ids (207 and 422 as above), 503 when the stream cannot be reached. 429 (with
        Retry-After) when the key has posted more events than its rate allows; 503 (with
        Retry-After, nothing done) when the worker already holds its bound of event requests."""
        answer = await self._events(request, principal_in(ctx.request.scope))
        if isinstance(answer, JSONResponse):  # BentoML answers with the context's status
            ctx.response.status_code = answer.status_code
        return answer

    async def _events(
        self, request: EventsRequest, principal: Principal
    ) -> EventsResponse | JSONResponse:
        wait = self.events_rate.take(principal.id, len(request.events), time.monotonic())
        if wait:
            error = RequestError(
                429, "too_many_events", f"{principal.label} may post "
                f"{self.events_rate.rate:g} events per second; retry in {wait:.1f} s",
            )  # fmt: skip
            headers = {"Retry-After": retry_after(wait)}
            return JSONResponse(error.body(), status_code=error.status, headers=headers)
        if self.actions is None:
            error = RequestError(
                503, "actions_unavailable", "; ".join(self.action_problems) or "not open"
            )
            return JSONResponse(error.body(), status_code=error.status)
        if not self.intake.admit():
            return self.intake.busy()
        return await self.intake.run(lambda: self._act(request, principal))

    def _act(self, request: EventsRequest, sent_by: Principal) -> EventsResponse | JSONResponse:
        """Decide and commit; the key's name scopes the event ids (it outlives a rotated key),
        its label is kept on each decision."""
        from actions.intake import Record
        from actions.ledger import LedgerBusyError, Status

        records = [Record(item, "POST /events", n) for n, item in enumerate(request.events, 1)]
        if self.stream is not None:
            return self._append(records, sent_by)
        try:
            outcomes = self.commits.submit(records, sent_by.name, sent_by.label, self._patience)
        except NotTakenError:
            return retry_later("ledger_busy", "this worker is still committing other events")
        except LedgerBusyError as error:
            return retry_later("ledger_busy", str(error))
        if self.delivery is not None:
            self.delivery.wake.set()
        queued = Counter(
            d["action"] for o in outcomes for d in o.decisions if d["status"] == Status.PENDING
        )
        answers = [
            EventOutcome.model_validate(asdict(o) | {"status": _status(o.outcome)})
            for o in outcomes
        ]
        response = EventsResponse(outcomes=answers, queued=dict(queued))
        rejected = [a for a in answers if a.status == "rejected"]
        if not rejected:
            return response
        if len(rejected) == len(answers):
            error = RequestError(
                422, "events_rejected", f"all {len(answers)} event(s) rejected",
                [a.model_dump(mode="json") for a in rejected],
            )  # fmt: skip
            return JSONResponse(error.body(), status_code=error.status)
        return JSONResponse(response.model_dump(mode="json"), status_code=207)

    def _take(self, records: list[Record], sender: str, by: str | None) -> list[Outcome]:
        """Decide and commit one sender's records in one transaction, the churn scores of the
        customers its one-customer events name made first in one call."""
        customers = {
            r.raw["customer_id"]
            for r in records
            if isinstance(r.raw, dict) and isinstance(r.raw.get("customer_id"), str)
        }
        with self.action_scores.ready(sorted(customers)):
            return self.actions.take(records, sender=sender, by=by)

    def _append(self, records, sent_by: Principal) -> JSONResponse:
        """The cluster profile's intake: valid events appended to the stream with their sender,
        202."""
        from actions.ledger import LedgerBusyError
        from actions.streams import IntakeUnavailableError, enqueue

        if not self._acting.acquire(timeout=self._patience):
            return retry_later("ledger_busy", "this worker is still recording rejected events")
        try:
            outcomes = enqueue(
                self.stream, self.actions.processor, records, sent_by.name, sent_by.label
            )
        except LedgerBusyError as error:
            return retry_later("ledger_busy", str(error))
        except IntakeUnavailableError as error:
            return retry_later("intake_unavailable", str(error))
        finally:
            self._acting.release()
        answers = [
            EventOutcome.model_validate(asdict(o) | {"status": _status(o.outcome)})
            for o in outcomes
        ]
        accepted = [a.event_id for a in answers if a.status == "accepted"]
        response = EventsResponse(outcomes=answers, queued={}, accepted=accepted)
        if not accepted:
            error = RequestError(
                422, "events_rejected", f"all {len(answers)} event(s) rejected",
                [a.model_dump(mode="json") for a in answers],
            )  # fmt: skip
            return JSONResponse(error.body(), status_code=error.status)
        status = 202 if len(accepted) == len(answers) else 207
        return JSONResponse(response.model_dump(mode="json"), status_code=status)

    @health_app.get("/health")
    def health(self) -> Health:
        """Models served and where they came from, the online store, and any problem."""
        models = {
            name: ModelHealth(**asdict(status)) for name, status in self.champions.status.items()
        }
        problems = list(self.problems) + list(self.action_problems)
        if self.delivery is not None:
            problems += self.delivery.problems()
        for name, status in models.items():
            if status.version is None:
                problems.append(f"{name}: no champion loaded")
            if status.registry_error:
                problems.append(f"{name}: registry unreachable ({status.registry_error})")
            elif status.reason:
                problems.append(f"{name}: {status.reason}")
            problems += [f"{name}: quarantined {copy}" for copy in status.quarantined]
        state = "ok" if not problems else "degraded" if self.champions.ready else "starting"
        return Health(
            status=state,
            models=models,
            feature_services=sorted(self.scorer.readers),
            problems=problems,
            predictions_logged=self.log.written,
        )

    async def _score(self, model: str, source: str, score) -> ScoreResponse | JSONResponse:
        """Scored on a thread of the scoring intake, or refused at once when it is full."""
        if not self.scoring.admit():
            return self.scoring.busy()
        return await self.scoring.run(lambda: self._answer(model, source, score))

    def _answer(self, model: str, source: str, score) -> ScoreResponse | JSONResponse:
        began = time.perf_counter()
        try:
            scored: Scored = score()
        except RequestError as error:
            self.metrics.rejected.labels(model=model, code=error.code).inc()
            return JSONResponse(error.body(), status_code=error.status)
        self._record(scored, source, time.perf_counter() - began)
        champion = scored.champion
        return ScoreResponse(
            request_id=scored.request_id,
            model=champion.name,
            model_version=champion.version,
            feature_service=champion.feature_service,
            scores=scored.scores,
            unknown_ids=scored.unknown_ids,
        )

    def _served(self, new: Champion, old: Champion | None) -> None:
        """Point the version gauge at the version now served."""
        if old is not None:
            self.metrics.model_version.labels(model=old.name, version=old.version).set(0)
        self.metrics.model_version.labels(model=new.name, version=new.version).set(1)

    def _record(self, scored: Scored, source: str, seconds: float) -> None:
        champion = scored.champion
        self.log.append(champion, scored.log)
        self.metrics.latency.labels(model=champion.name, source=source).observe(seconds)
        for score in scored.scores:
            self.metrics.probability.labels(model=champion.name).observe(score.probability)
            if score.stale_features:
                self.metrics.stale.labels(model=champion.name).inc()


Closedloop.add_asgi_middleware(AccessControl)  # keys, roles and limits before every route
