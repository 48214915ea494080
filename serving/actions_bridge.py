"""Serving's scorer as the action layer's :class:`~actions.scoring.ScoresProvider`: the
service's own scorer, or (for ``closedloop replay``) the registry's champions loaded in this
process."""

from __future__ import annotations

from actions.scoring import ScoresProvider
from closedloop.clock import running_clock
from closedloop.models import SPECS
from closedloop.scores import Score
from closedloop.settings import Settings
from serving.api import RequestError
from serving.scoring import Scorer

MODELS = list(SPECS)
REASONS = 3


class ScorerScores:
    """Churn by customer and fault by cell; an entity the scorer cannot score has no score."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def _scores(self, model: str, ids: list[str]) -> dict[str, Score]:
        try:
            scored = self.scorer.by_ids(model, ids, REASONS)
        except RequestError:
            return {}
        return {score.entity_id: score for score in scored.scores}

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return self._scores("churn", customer_ids)

    def fault(self, cell_id: str) -> Score | None:
        return self._scores("fault", [cell_id]).get(cell_id)


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
    scorer = Scorer(champions, readers, running_clock(settings.clock_start))
    return ScorerScores(scorer), problems
