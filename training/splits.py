"""How a training set is split (pure): by time for time series, by entity for snapshot data.

A time split trains on earlier instants and tests on later ones. An entity split puts every
entity in exactly one part, stratified by label, so no customer is seen in training and
scored again in test. Which one is used is chosen explicitly (``split.by`` in params.yaml, or
the data set's ``shape`` in its mapping) and printed with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from closedloop.models import DataShape
from training.config import SplitConfig

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitChoice:
    by: Literal["time", "entity"]
    why: str


def choose_split(config: SplitConfig, events: str, shapes: Iterable[tuple[str, str, set[str]]]):
    """``by`` from params, or with ``auto`` from the shape of the sources that wrote ``events``
    (``shapes``: source, shape, tables it wrote)."""
    if config.by != "auto":
        return SplitChoice(config.by, f"split.by: {config.by} in params")
    snapshot = sorted(
        source
        for source, shape, tables in shapes
        if shape == DataShape.SNAPSHOT and events in tables
    )
    if snapshot:
        return SplitChoice("entity", f"source {', '.join(snapshot)} has shape: snapshot")
    return SplitChoice("time", "the data is a time series")


def time_split(instants: pd.Series, config: SplitConfig) -> pd.Series:
    """``train`` / ``valid`` / ``test`` by the order of distinct instants: later never trains."""
    distinct = np.sort(instants.unique())
    if len(distinct) < len(PARTS):
        raise ValueError(
            f"a time split needs at least {len(PARTS)} snapshot instants and the data has "
            f"{len(distinct)}; for one row per entity declare shape: snapshot in the mapping "
            "or set split.by: entity"
        )
    cut_valid = distinct[int(len(distinct) * config.train)]
    cut_test = distinct[int(len(distinct) * (config.train + config.valid))]
    part = np.where(instants < cut_valid, "train", np.where(instants < cut_test, "valid", "test"))
    return pd.Series(part, index=instants.index)


def _entity_labels(entities: pd.Series, labels: pd.Series) -> pd.Series:
    """One label per entity: positive if any of its rows is."""
    return labels.groupby(entities.to_numpy()).max()


def entity_split(entities: pd.Series, labels: pd.Series, config: SplitConfig, seed: int):
    """``train`` / ``valid`` / ``test`` by entity, stratified by label: every row of an entity
    lands in the same part."""
    per_entity = _entity_labels(entities, labels)
    rest, test = train_test_split(
        per_entity.index, test_size=config.test, stratify=per_entity, random_state=seed
    )
    _, valid = train_test_split(
        rest,
        test_size=config.valid / (config.train + config.valid),
        stratify=per_entity[rest],
        random_state=seed,
    )
    part = pd.Series("train", index=per_entity.index, dtype=object)
    part[valid], part[test] = "valid", "test"
    return pd.Series(entities.map(part).to_numpy(), index=entities.index)


def entity_folds(entities: pd.Series, labels: pd.Series, folds: int, seed: int) -> np.ndarray:
    """A fold number per row, entities never split across folds, stratified by label."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.empty(len(entities), dtype=int)
    for number, (_, held) in enumerate(splitter.split(entities, labels, groups=entities)):
        fold[held] = number
    return fold


def shared_entities(entities: pd.Series, parts: pd.Series) -> list[str]:
    """Entities with rows in more than one part (an entity split must have none)."""
    spread = pd.Series(parts.to_numpy()).groupby(entities.to_numpy()).nunique()
    return sorted(map(str, spread.index[spread > 1]))


def check_entity_split(entities: pd.Series, parts: pd.Series) -> None:
    """ValueError when an entity is in more than one part: its test score would be a memory."""
    shared = shared_entities(entities, parts)
    if shared:
        shown = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
        raise ValueError(
            f"{len(shared)} entities are in more than one split ({shown}); "
            "an entity split must keep each entity in one part"
        )
