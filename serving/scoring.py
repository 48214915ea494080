"""Scoring with reasons: online features or supplied ones in, ``Score`` objects out.

The core the BentoML service wraps. It never raises anything but :class:`RequestError` for
bad input, which the edge turns into a 4xx with the same code, message and detail.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from closedloop.predictions import PredictionBatch
from closedloop.scores import Direction, FeatureValue, Reason, Score
from features.online import OnlineReader, ServiceLayout
from serving.api import RequestError
from serving.champion import Champion, Champions


@dataclass(frozen=True)
class Scored:
    """The outcome of one request: scores, the ids nobody knows, and the batch for the log."""

    champion: Champion
    request_id: str
    scores: list[Score]
    log: PredictionBatch
    unknown_ids: list[str] = field(default_factory=list)


def reason_text(description: str, value: FeatureValue, direction: Direction) -> str:
    shown = "missing" if value is None else f"{value:,.4g}" if isinstance(value, float) else value
    return f"{description}: {shown} ({direction.value} the risk)"


def top_reasons(
    contributions: np.ndarray,
    record: Mapping[str, FeatureValue],
    features: list[str],
    descriptions: Mapping[str, str],
    top: int,
) -> list[Reason]:
    """The ``top`` features with the largest absolute SHAP contribution, largest first."""
    order = np.argsort(-np.abs(contributions), kind="stable")[:top]
    reasons = []
    for position in order:
        contribution = float(contributions[position])
        if contribution == 0:
            break
        name = features[position]
        direction = Direction.RAISES if contribution > 0 else Direction.LOWERS
        value = record.get(name)
        reasons.append(
            Reason(
                feature=name,
                value=value,
                contribution=contribution,
                direction=direction,
                text=reason_text(descriptions.get(name, name), value, direction),
            )
        )
    return reasons


def check_supplied(
    record: Mapping[str, object], features: list[str], categorical: set[str], row: int
) -> list[str]:
    """Problems of one supplied record: unknown names, wrong types, non-finite numbers."""
    problems = [f"row {row}: unknown feature {name!r}" for name in record if name not in features]
    for name in features:
        value = record.get(name)
        if value is None:
            continue
        if name in categorical:
            if not isinstance(value, str):
                problems.append(f"row {row}: {name} expects text, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"row {row}: {name} expects a number, got {value!r}")
        elif not math.isfinite(value):
            problems.append(f"row {row}: {name} must be a finite number, got {value!r}")
    return problems


class Scorer:
    """Scores entities by id (features from the online store) or supplied features."""

    def __init__(
        self,
        champions: Champions,
        readers: dict[str, OnlineReader],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.champions = champions
        self.readers = readers  # by feature service
        self.clock = clock

    def champion(self, name: str) -> Champion:
        champion = self.champions.get(name)
        if champion is None:
            raise RequestError(503, "model_unavailable", f"no {name} model is loaded yet")
        return champion

    def _layout(self, champion: Champion) -> ServiceLayout:
        reader = self.readers.get(champion.feature_service)
        if reader is None:
            raise RequestError(
                503,
                "feature_service_unavailable",
                f"{champion.name} version {champion.version} needs feature service "
                f"{champion.feature_service!r}, which the online store does not serve",
            )
        return reader.layout

    def by_ids(self, name: str, ids: list[str], top: int) -> Scored:
        """Score entities with their online features; stale or missing inputs are flagged."""
        champion = self.champion(name)
        layout = self._layout(champion)
        reader = self.readers[champion.feature_service]
        now = self.clock()
        records, stale, known, unknown = [], [], [], []
        for entity_id, row in reader.read_many(ids, now).items():
            if not row.known:
                unknown.append(entity_id)
                continue
            known.append(entity_id)
            records.append(row.values)
            stale_views = set(row.stale_views)
            stale.append(
                [
                    f
                    for view in layout.views
                    for f in view.features
                    if view.name in stale_views or row.values[f] is None
                ]
            )
        if not known:
            raise RequestError(
                404,
                "unknown_ids",
                f"no online features for any of the {layout.join_key}s asked for",
                {"unknown_ids": unknown},
            )
        return self._score(champion, layout, known, records, stale, top, "online", unknown)

    def supplied(self, name: str, rows: list[dict[str, object]], top: int) -> Scored:
        """Score supplied feature values (what-if); absent features count as missing."""
        champion = self.champion(name)
        layout = self._layout(champion)
        features = champion.model.features
        categorical = set(champion.model.categories)
        problems = [
            p for i, row in enumerate(rows) for p in check_supplied(row, features, categorical, i)
        ]
        if problems:
            raise RequestError(
                422, "invalid_features", f"{len(problems)} problem(s) in the supplied features",
                {"problems": problems, "features": features},
            )  # fmt: skip
        ids = [str(row.get(layout.join_key, f"row-{i}")) for i, row in enumerate(rows)]
        records = [{f: row.get(f) for f in features} for row in rows]
        stale = [[f for f in features if record[f] is None] for record in records]
        return self._score(champion, layout, ids, records, stale, top, "supplied", [])

    def reasons(
        self, champion: Champion, records: list[dict[str, FeatureValue]], top: int
    ) -> list[list[Reason]]:
        """The ``top`` reasons of ``champion``'s score of each record (its feature values)."""
        model = champion.model
        descriptions = self._layout(champion).descriptions
        contributions = model.matrix_contributions(model.records_matrix(records))
        return [
            top_reasons(contributions[i], record, model.features, descriptions, top)
            for i, record in enumerate(records)
        ]

    def _score(
        self,
        champion: Champion,
        layout: ServiceLayout,
        ids: list[str],
        records: list[dict[str, FeatureValue]],
        stale: list[list[str]],
        top: int,
        source: str,
        unknown: list[str],
    ) -> Scored:
        model = champion.model
        matrix = model.records_matrix(records)
        probabilities = model.calibrated(matrix)
        contributions = model.matrix_contributions(matrix) if top > 0 else None
        by_class = probabilities if model.classes else None
        if by_class is not None:
            likeliest = by_class.argmax(axis=1)
            probabilities = by_class[np.arange(len(ids)), likeliest]
            if contributions is not None:  # the reasons for the likeliest class
                contributions = contributions[np.arange(len(ids)), likeliest]
        descriptions = layout.descriptions
        request_id = uuid.uuid4().hex
        scored_at = self.clock()
        scores = []
        for i, entity_id in enumerate(ids):
            reasons = (
                []
                if contributions is None
                else top_reasons(contributions[i], records[i], model.features, descriptions, top)
            )
            probability = float(probabilities[i])
            per_class = (
                {}
                if by_class is None
                else dict(zip(model.classes, by_class[i].tolist(), strict=True))
            )
            scores.append(
                Score(
                    entity_id=entity_id,
                    model=champion.name,
                    model_version=champion.version,
                    feature_service=champion.feature_service,
                    probability=probability,
                    predicted_class=max(per_class, key=per_class.get) if per_class else None,
                    classes=per_class,
                    stale_features=stale[i],
                    reasons=reasons,
                    features=records[i],
                )
            )
        batch = PredictionBatch(
            model=champion.name,
            model_version=champion.version,
            feature_service=champion.feature_service,
            source=source,
            request_id=request_id,
            scored_at=scored_at,
            entity_ids=ids,
            probabilities=probabilities.tolist(),
            stale_features=[len(names) for names in stale],
            features={name: [record[name] for record in records] for name in model.features},
            classes={} if by_class is None else dict(zip(model.classes, by_class.T, strict=True)),
        )
        return Scored(champion, request_id, scores, batch, unknown)
