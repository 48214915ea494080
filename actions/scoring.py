"""The scoring interface the action layer reads: churn by customer, fault by cell.

The action layer never scores itself: whoever opens it passes a :class:`ScoresProvider` (the
service its own scorer, ``closedloop replay`` the registry's champions loaded in-process, or
:class:`NoScores`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from closedloop.scores import Score
from closedloop.settings import Settings


class ScoresProvider(Protocol):
    """Scores for the action layer; an entity that cannot be scored has no score. Reasons may
    wait for :meth:`explain`, asked only for the scores a decision carries."""

    def churn(self, customer_ids: list[str]) -> dict[str, Score]: ...

    def fault(self, cell_id: str) -> Score | None: ...

    def explain(self, scores: list[Score]) -> list[Score]:
        """The same scores, in order, with their reasons."""
        ...


class NoScores:
    """A scores provider with no models: only threshold-0 rules can fire."""

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {}

    def fault(self, cell_id: str) -> Score | None:
        return None

    def explain(self, scores: list[Score]) -> list[Score]:
        return scores


ScoresFactory = Callable[[Settings], tuple[ScoresProvider, list[str]]]
"""Opens the scores of a home: the provider and what could not be loaded."""
