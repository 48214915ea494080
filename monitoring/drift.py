"""The pure core of monitoring: Evidently reports on two frames, read into typed results.

Large windows are handled by a seeded sample of each side: Evidently's distance tests
(Wasserstein for numbers, Jensen-Shannon for text) estimate the same distances from a sample of
tens of thousands of rows as from millions, so the flags agree with a full-data run at a small
share of its time and memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset

from monitoring.config import DriftPolicy
from monitoring.sampling import sample_positions
from monitoring.summary import ColumnDrift, DriftResult, QualityResult

PROBABILITY = "probability"
LABEL = "label"


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, the same ones for the same seed."""
    if len(frame) <= rows:
        return frame
    return frame.iloc[sample_positions(len(frame), rows, seed)]


def _definition(numeric: Sequence[str], categorical: Sequence[str]) -> DataDefinition:
    return DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))


def _datasets(
    reference: pd.DataFrame, current: pd.DataFrame, definition: DataDefinition
) -> tuple[Dataset, Dataset]:
    columns = [*definition.numerical_columns, *definition.categorical_columns]
    return (
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    policy: DriftPolicy,
) -> Snapshot:
    """Evidently's data drift preset on the features, plus drift of the predicted probability."""
    features = [*numeric, *categorical]
    with_prediction = PROBABILITY in reference.columns and PROBABILITY in current.columns
    metrics: list = [
        DataDriftPreset(
            columns=features,
            num_method=policy.num_method,
            cat_method=policy.cat_method,
            threshold=policy.threshold,
            drift_share=policy.drift_share,
        )
    ]
    if with_prediction:
        metrics.append(
            ValueDrift(
                column=PROBABILITY,
                method=policy.num_method,
                threshold=policy.prediction_threshold,
            )
        )
    numbers = [*numeric, PROBABILITY] if with_prediction else list(numeric)
    current_set, reference_set = _datasets(reference, current, _definition(numbers, categorical))
    return Report(metrics).run(current_set, reference_set)


def read_drift(snapshot: Snapshot, features: Sequence[str], drift_share: float) -> DriftResult:
    """The per-column drift tests of a drift report, found by metric type and column."""
    found: dict[str, ColumnDrift] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift"):
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        found[config["column"]] = ColumnDrift(
            column=config["column"],
            method=config["method"],
            threshold=threshold,
            score=score,
            drifted=bool(score >= threshold),
        )
    missing = [f for f in features if f not in found]
    if missing:
        raise ValueError(f"the drift report has no test for {missing}")
    columns = [found[f] for f in features]
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    return DriftResult(
        columns=columns,
        drifted_share=share,
        drift_share=drift_share,
        drifted=share >= drift_share,
        prediction=found.get(PROBABILITY),
    )


def quality_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> Snapshot:
    """Evidently's data summary (missing values, ranges, categories) of both windows."""
    current_set, reference_set = _datasets(reference, current, _definition(numeric, categorical))
    return Report([DataSummaryPreset()]).run(current_set, reference_set)


def read_quality(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    stale: pd.Series | None = None,
) -> QualityResult:
    """Missing shares per feature of both windows, and the share of rows with stale inputs."""
    return quality_of(
        len(current),
        {f: float(current[f].isna().mean()) for f in features},
        len(reference),
        {f: float(reference[f].isna().mean()) for f in features},
        stale,
    )


def quality_of(
    rows: int,
    missing_share: Mapping[str, float],
    reference_rows: int,
    reference_missing_share: Mapping[str, float],
    stale: pd.Series | None = None,
) -> QualityResult:
    """The quality result of a current window beside the reference, from their row counts and
    missing shares per feature (counted wherever the windows are stored)."""
    return QualityResult(
        rows=rows,
        reference_rows=reference_rows,
        missing_share=dict(missing_share),
        reference_missing_share=dict(reference_missing_share),
        stale_share=None if stale is None or stale.empty else float((stale > 0).mean()),
    )


def performance_report(reference: pd.DataFrame, current: pd.DataFrame) -> Snapshot:
    """Evidently's classification preset on matured rows: label against probability."""
    definition = DataDefinition(
        numerical_columns=[PROBABILITY],
        categorical_columns=[LABEL],
        classification=[BinaryClassification(target=LABEL, prediction_probas=PROBABILITY)],
    )
    current_set, reference_set = (
        Dataset.from_pandas(frame[[LABEL, PROBABILITY]], data_definition=definition)
        for frame in (current, reference)
    )
    return Report([ClassificationPreset()]).run(current_set, reference_set)
