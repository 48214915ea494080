"""The pure core of monitoring: Evidently reports on two frames, read into typed results.

Large windows are handled by a seeded sample of each side: Evidently's distance tests
(Wasserstein for numbers, Jensen-Shannon for text) estimate the same distances from a sample of
tens of thousands of rows as from millions, so the flags agree with a full-data run at a small
share of its time and memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset

from features.repo import Kind, Traits
from monitoring.config import ColumnTest, DriftPolicy
from monitoring.sampling import sample_positions
from monitoring.summary import ColumnDrift, DriftResult, QualityResult

PROBABILITY = "probability"
LABEL = "label"


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, the same ones for the same seed."""
    if len(frame) <= rows:
        return frame
    return frame.iloc[sample_positions(len(frame), rows, seed)]


STAMP = "at"  # the instant each compared row was stamped (reference) or scored (current)
AGED = " (aged)"  # suffix of a clock feature's reference aged to the current window


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


@dataclass(frozen=True)
class Comparison:
    """What a drift report compares: both samples with incomplete values blanked, clock
    features' reference aged beside them, and each feature's test or why it is left out."""

    reference: pd.DataFrame
    current: pd.DataFrame
    features: list[str]
    categorical: list[str]
    kinds: dict[str, Kind]
    tests: dict[str, ColumnTest]  # compared features only
    rows: dict[str, tuple[int, int]]
    notes: dict[str, str]  # features left out, and why
    predictions: list[str]  # prediction columns on both sides: the probability, each class's

    @property
    def compared(self) -> list[str]:
        return [f for f in self.features if f in self.tests]


def _kind(name: str, frame: pd.DataFrame, traits: Mapping[str, Traits]) -> Traits:
    if name in traits:
        return traits[name]
    numeric = pd.api.types.is_numeric_dtype(frame[name])
    return Traits(Kind.LEVEL if numeric else Kind.CATEGORY)


def _stamps(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame[STAMP], utc=True)


def comparison(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    policy: DriftPolicy,
    traits: Mapping[str, Traits] | None = None,
    history_start: pd.Timestamp | None = None,
    predictions: Sequence[str] = (PROBABILITY,),
) -> Comparison:
    """Decide what is comparable. A value stamped before ``history_start`` plus its feature's
    history summarises a window not yet full: it is blanked on both sides, and a feature with
    fewer than ``policy.min_rows`` complete values on either side is not compared at all. Of the
    ``predictions`` columns (a multi-class model's: each class's probability too) those on both
    sides are compared."""
    traits = traits or {}
    reference, current = reference.copy(), current.copy()
    kinds, tests, rows, notes = {}, {}, {}, {}
    for name in features:
        trait = _kind(name, reference, traits)
        kinds[name] = trait.kind
        if history_start is not None and trait.history > timedelta(0) and STAMP in reference:
            complete_from = history_start + trait.history
            reference[name] = reference[name].where(_stamps(reference) >= complete_from)
            current[name] = current[name].where(_stamps(current) >= complete_from)
        counts = (int(reference[name].notna().sum()), int(current[name].notna().sum()))
        rows[name] = counts
        if min(counts) < policy.min_rows:
            side = "reference" if counts[0] < policy.min_rows else "current window"
            full = f"its {_span(trait.history)} window is full in" if trait.history else "in"
            notes[name] = (
                f"not compared: {full} only {min(counts):,} rows of the {side} "
                f"(at least {policy.min_rows:,} needed)"
            )
            continue
        tests[name] = policy.test(name, trait.kind.name.lower())
        if trait.kind is Kind.CLOCK and STAMP in reference:
            elapsed = (_stamps(current).median() - _stamps(reference)) / pd.Timedelta(days=1)
            aged = reference[name] + trait.per_day * elapsed.to_numpy()
            reference[name + AGED] = aged if trait.floor is None else aged.clip(trait.floor)
            current[name + AGED] = current[name]
    both = [c for c in predictions if c in reference.columns and c in current.columns]
    return Comparison(
        reference, current, list(features), list(categorical), kinds, tests, rows, notes, both
    )


def _span(history: timedelta) -> str:
    if history % timedelta(days=1):
        return f"{history / timedelta(hours=1):g}-hour"
    return f"{history.days}-day"


def drift_report(plan: Comparison, policy: DriftPolicy) -> Snapshot:
    """Evidently's data drift preset on the compared features, each with its own test (clock
    features twice: as they were and aged), plus drift of the predicted probability (and of
    each class's, multi-class)."""
    reference, current = plan.reference, plan.current
    columns, methods, thresholds = [], {}, {}
    for name in plan.compared:
        test = plan.tests[name]
        for column in (name, name + AGED):
            if column in reference.columns:
                columns.append(column)
                methods[column], thresholds[column] = test.method, test.threshold
    metrics: list = []
    if columns:
        metrics.append(
            DataDriftPreset(
                columns=columns,
                per_column_method=methods,
                per_column_threshold=thresholds,
                drift_share=policy.drift_share,
            )
        )
    test = policy.prediction
    metrics += [
        ValueDrift(column=name, method=test.method, threshold=test.threshold)
        for name in plan.predictions
    ]
    if not metrics:
        raise ValueError("nothing to compare: no feature has complete values on both sides")
    categorical = [c for c in columns if c in plan.categorical]
    numbers = [c for c in columns if c not in categorical]
    numbers += plan.predictions
    current_set, reference_set = _datasets(reference, current, _definition(numbers, categorical))
    return Report(metrics).run(current_set, reference_set)


def read_drift(snapshot: Snapshot, plan: Comparison, policy: DriftPolicy) -> DriftResult:
    """The per-column drift tests of a drift report, found by metric type and column; a clock
    feature keeps the smaller of its two distances. The window drifts when the policy's share
    of compared features drifts, when one feature is ``policy.severe`` times past its threshold
    (a change confined to one region or vendor moves few features, but far), or when the
    predicted probability drifts."""
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
    missing = [f for f in plan.compared if f not in found]
    if missing:
        raise ValueError(f"the drift report has no test for {missing}")
    columns = []
    for name in plan.features:
        kind, rows = plan.kinds[name].name.lower(), plan.rows[name]
        if name not in plan.tests:
            columns.append(
                ColumnDrift(
                    column=name,
                    kind=kind,
                    method="-",
                    threshold=0,
                    drifted=False,
                    rows=rows,
                    note=plan.notes[name],
                )
            )
            continue
        column, note = found[name], None
        aged = found.get(name + AGED)
        if aged is not None and aged.score < column.score:
            column, note = aged, f"{column.score:.3f} as it was; the reference aged to the window"
        columns.append(
            column.model_copy(update={"column": name, "kind": kind, "rows": rows, "note": note})
        )
    compared = [c for c in columns if c.compared]
    share = sum(c.drifted for c in compared) / len(compared) if compared else 0.0
    severe = [c.column for c in compared if c.score >= policy.severe * c.threshold]
    prediction = found.get(PROBABILITY)
    by_class = [found[name] for name in plan.predictions if name != PROBABILITY]
    predicted = [*([prediction] if prediction else []), *by_class]
    return DriftResult(
        columns=columns,
        drifted_share=share,
        drift_share=policy.drift_share,
        severe=severe,
        drifted=share >= policy.drift_share or bool(severe or any(p.drifted for p in predicted)),
        prediction=prediction,
        classes=by_class,
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
