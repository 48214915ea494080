"""Serving's scorer as the action layer's :class:`~actions.scoring.ScoresProvider`: the
service's own scorer, or (for ``closedloop replay``) the registry's champions loaded in this
process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from actions.scoring import ScoresProvider
from closedloop.clock import running_clock
from closedloop.models import SPECS
from closedloop.scores import FeatureValue, Reason, Score
from closedloop.settings import Settings
from features.online import LIVE_VIEW, FeatureReader, OnlineReader, OnlineRow, freshness
from serving.api import RequestError
from serving.champion import Champion
from serving.scoring import Scorer

MODELS = list(SPECS)
REASONS = 3
KEPT = 10_000  # explanations remembered (least recently used forgotten first)

Inputs = tuple[str, str, tuple[FeatureValue, ...]]
"""A score's model, version and feature values: what its explanation is a function of."""
ROWS_KEPT_SECONDS = 60.0  # an entity's online features reused this long on the action path
ROWS_KEPT = 20_000  # entities per feature service


class KeptRows:
    """A feature reader that keeps each known entity's row for ``seconds`` and answers from it
    meanwhile, its views' freshness judged again at each read: the action path reads the same
    customers' batch features event after event, and they change when the online store is
    materialized (seen here at most ``seconds`` later). Never used for a service with a view
    that events push to (:data:`~features.online.LIVE_VIEW`)."""

    def __init__(
        self,
        reader: FeatureReader,
        seconds: float = ROWS_KEPT_SECONDS,
        kept: int = ROWS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader, self.layout = reader, reader.layout
        self.seconds, self.kept, self.clock = seconds, kept, clock
        self._rows: OrderedDict[str, tuple[float, OnlineRow]] = OrderedDict()

    def read(self, entity_id: str, now: datetime) -> OnlineRow:
        return self.read_many([entity_id], now)[entity_id]

    def read_many(self, entity_ids: list[str], now: datetime) -> dict[str, OnlineRow]:
        at = self.clock()
        rows: dict[str, OnlineRow] = {}
        for entity_id in entity_ids:
            kept = self._rows.get(entity_id)
            if kept is not None and at - kept[0] <= self.seconds:
                row = kept[1]
                rows[entity_id] = replace(
                    row, stale_views=freshness(self.layout, row.event_times, now)
                )
        missing = [e for e in dict.fromkeys(entity_ids) if e not in rows]
        if missing:
            for entity_id, row in self.reader.read_many(missing, now).items():
                rows[entity_id] = row
                if row.known:
                    self._rows[entity_id] = (at, row)
                    self._rows.move_to_end(entity_id)
            while len(self._rows) > self.kept:
                self._rows.popitem(last=False)
        return {e: rows[e] for e in dict.fromkeys(entity_ids) if e in rows}

    def close(self) -> None:
        self.reader.close()


def action_readers(readers: dict[str, FeatureReader]) -> dict[str, FeatureReader]:
    """The readers of the action path: each SQLite reader's rows kept a while (:class:`KeptRows`),
    but for a service that reads pushed live features; other readers as they are (the cluster's
    Redis readers keep their replies until Redis reports them written)."""
    return {
        name: KeptRows(reader)
        if isinstance(reader, OnlineReader)
        and all(view.name != LIVE_VIEW for view in reader.layout.views)
        else reader
        for name, reader in readers.items()
    }


class ScorerScores:
    """Churn by customer and fault by cell, without reasons until :meth:`explain` (SHAP is most
    of a score's cost, and most of an event's scores decide nothing); an entity the scorer
    cannot score has no score. TreeSHAP is a pure function of the model version and the
    feature values, so an explanation is computed once and remembered for the next score of the
    same inputs (a customer's features change when the online store is materialized)."""

    def __init__(self, scorer: Scorer, kept: int = KEPT) -> None:
        self.scorer, self.kept = scorer, kept
        self._scored_by: dict[tuple[str, str], Champion] = {}  # the versions that scored
        self._explained: OrderedDict[Inputs, list[Reason]] = OrderedDict()
        self.explained = self.recalled = 0  # explanations computed, and remembered ones used
        self._ready: dict[str, Score] = {}  # churn scores made ahead for a batch of events

    def _scores(self, model: str, ids: list[str]) -> dict[str, Score]:
        try:
            scored = self.scorer.by_ids(model, ids, 0)
        except RequestError:
            return {}
        champion = scored.champion
        self._scored_by[champion.name, champion.version] = champion
        return {score.entity_id: score for score in scored.scores}

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        ready = self._ready
        if ready and all(c in ready for c in customer_ids):
            return {c: ready[c] for c in customer_ids}
        return self._scores("churn", customer_ids)

    @contextmanager
    def ready(self, customer_ids: list[str]) -> Iterator[None]:
        """Within the block, :meth:`churn` of these customers answers with their scores made
        now, in one call (a batch of one-customer events: one read and one predict, not one per
        event); others are scored when asked."""
        self._ready = self._scores("churn", customer_ids) if customer_ids else {}
        try:
            yield
        finally:
            self._ready = {}

    def fault(self, cell_id: str) -> Score | None:
        return self._scores("fault", [cell_id]).get(cell_id)

    def explain(self, scores: list[Score]) -> list[Score]:
        """The same scores with their top reasons, by the model version that made each, from
        the feature values it saw: remembered, or computed in one call per version."""
        explained = list(scores)
        missing: dict[tuple[str, str], list[int]] = {}
        for i, score in enumerate(scores):
            reasons = self._explained.get(inputs := _inputs(score))
            if reasons is None:
                missing.setdefault((score.model, score.model_version), []).append(i)
                continue
            self._explained.move_to_end(inputs)
            explained[i] = score.model_copy(update={"reasons": reasons})
            self.recalled += 1
        for version, positions in missing.items():
            champion = self._scored_by[version]
            records = [scores[i].features for i in positions]
            for i, reasons in zip(
                positions, self.scorer.reasons(champion, records, REASONS), strict=True
            ):
                explained[i] = scores[i].model_copy(update={"reasons": reasons})
                self._remember(_inputs(scores[i]), reasons)
        return explained

    def _remember(self, inputs: Inputs, reasons: list[Reason]) -> None:
        self._explained[inputs] = reasons
        self.explained += 1
        if len(self._explained) > self.kept:
            self._explained.popitem(last=False)


def _inputs(score: Score) -> Inputs:
    return score.model, score.model_version, tuple(score.features.values())


def in_process_scores(settings: Settings) -> tuple[ScoresProvider, list[str]]:
    """Scores from the champions and online store of this home, loaded here; and what could
    not be loaded."""
    from features.backends import OnlineStoreError, online_store
    from serving.champion import Champions, ModelCache
    from training import registry

    registry.point_at(settings)
    champions = Champions(MODELS, ModelCache(settings.paths.model_cache))
    champions.refresh()
    problems = [f"{name}: no champion model" for name in MODELS if champions.get(name) is None]
    try:
        readers = online_store(settings).readers()
    except (FileNotFoundError, OnlineStoreError) as error:
        readers, problems = {}, [*problems, str(error)]
    scorer = Scorer(champions, action_readers(readers), running_clock(settings.clock_start))
    return ScorerScores(scorer), problems
