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
from serving.champion import Champion
from serving.scoring import Scorer

MODELS = list(SPECS)
REASONS = 3


class ScorerScores:
    """Churn by customer and fault by cell, without reasons until :meth:`explain` (SHAP is most
    of a score's cost, and most of an event's scores decide nothing); an entity the scorer
    cannot score has no score."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self._scored_by: dict[tuple[str, str], Champion] = {}  # the versions that scored

    def _scores(self, model: str, ids: list[str]) -> dict[str, Score]:
        try:
            scored = self.scorer.by_ids(model, ids, 0)
        except RequestError:
            return {}
        champion = scored.champion
        self._scored_by[champion.name, champion.version] = champion
        return {score.entity_id: score for score in scored.scores}

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return self._scores("churn", customer_ids)

    def fault(self, cell_id: str) -> Score | None:
        return self._scores("fault", [cell_id]).get(cell_id)

    def explain(self, scores: list[Score]) -> list[Score]:
        """The same scores with their top reasons, by the model version that made each, from
        the feature values it saw."""
        explained = list(scores)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, score in enumerate(scores):
            groups.setdefault((score.model, score.model_version), []).append(i)
        for version, positions in groups.items():
            champion = self._scored_by[version]
            records = [scores[i].features for i in positions]
            for i, reasons in zip(
                positions, self.scorer.reasons(champion, records, REASONS), strict=True
            ):
                explained[i] = scores[i].model_copy(update={"reasons": reasons})
        return explained


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
