"""The monitoring stage's edge: champion and reference from MLflow, the prediction log, labels,
reports on disk and in the Evidently workspace, and retraining through the training gate."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from evidently.core.report import Snapshot

from closedloop.models import spec
from closedloop.predictions import LOG_COLUMNS, PredictionBatch, log_folder, log_schema, log_table
from closedloop.settings import Settings
from features.offline import OfflineStore
from features.store import open_store
from monitoring import drift as core
from monitoring.config import MonitorConfig
from monitoring.policy import decide, performance_verdict
from monitoring.sampling import PartsWindow
from monitoring.summary import DriftResult, MonitorSummary, QualityResult, RetrainOutcome
from training import registry
from training.config import TrainConfig
from training.evaluate import evaluate
from training.labels import MATURED, snapshot_instants
from training.model import ScoringModel
from training.native import NATIVE_MIN_ROWS, Engine, batch_scores
from training.pipeline import feature_source
from training.pipeline import train as train_and_gate
from training.registry import RegisteredModel

PROJECT_PREFIX = "closedloop"


def load_champion(settings: Settings, target: str) -> RegisteredModel:
    """The champion of ``target`` with what its training run recorded; a clear error if none."""
    registry.connect(settings)
    champion = registry.load_champion(target)
    if champion is None:
        raise LookupError(f"{target} has no champion yet: train it first")
    return champion


@dataclass(frozen=True)
class ReportColumns:
    """The columns every report is run on: the model's features in the feature service's order,
    and which of them are text."""

    features: list[str]
    categorical: list[str]

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]


def report_columns(model: ScoringModel) -> ReportColumns:
    return ReportColumns(model.features, [f for f in model.features if f in model.categories])


def download_reference(champion: RegisteredModel, folder: Path) -> Path:
    """The sample of its training window the champion's run logged for monitoring, on disk."""
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path="evaluation/reference.parquet", dst_path=folder
        )
    )


# --- batch scoring into the prediction log -------------------------------------------------


def _window_keys(settings: Settings, target: str, start, end, every) -> pd.DataFrame:
    model = spec(target)
    source = feature_source(settings, model)
    keys = pq.read_table(source, columns=[model.entity_key, "event_timestamp"]).to_pandas()
    stamps = pd.to_datetime(keys["event_timestamp"], utc=True)
    keys = keys.assign(event_timestamp=stamps)
    on_grid = snapshot_instants(stamps, every)
    inside = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return keys[on_grid & inside].reset_index(drop=True)


def batch_table(champion: RegisteredModel, frame: pd.DataFrame, scores: np.ndarray) -> pa.Table:
    """Prediction log rows of scored feature rows (``event_timestamp`` becomes ``scored_at``)."""
    model = champion.model
    batch = PredictionBatch(
        model=champion.name,
        model_version=champion.version,
        feature_service=champion.feature_service,
        source="batch",
        request_id=f"batch-{champion.name}-{champion.version}",
        scored_at=frame["event_timestamp"],
        entity_ids=frame[spec(champion.name).entity_key].astype(str),
        probabilities=scores,
        stale_features=frame[model.features].isna().sum(axis=1),
        features={name: frame[name] for name in model.features},
    )
    return log_table([batch], log_schema(model.features, model.categories))


@dataclass(frozen=True)
class ScoredWindow:
    """What ``monitor-score`` wrote: by which champion, where, how many rows, with what engine."""

    champion: RegisteredModel
    path: Path
    rows: int
    engine: Engine


def score_window(
    settings: Settings,
    target: str,
    start: datetime,
    end: datetime,
    native_from: int = NATIVE_MIN_ROWS,
) -> ScoredWindow:
    """Score every entity on the champion's snapshot grid in ``[start, end)`` into the log: the
    compiled forest from ``native_from`` rows, LightGBM below."""
    champion = load_champion(settings, target)
    keys = _window_keys(settings, target, start, end, champion.snapshot_every)
    if keys.empty:
        raise ValueError(f"no feature rows of {target} between {start} and {end}")
    store = open_store(settings)
    service = store.get_feature_service(champion.feature_service)
    frame = store.get_historical_features(entity_df=keys, features=service).to_df()
    frame = frame.sort_values(["event_timestamp", spec(target).entity_key], kind="stable")
    scores, engine = batch_scores(
        champion.model, frame, settings.paths.compiled_models, native_from=native_from
    )
    table = batch_table(champion, frame, scores)
    folder = log_folder(settings.home, target)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-batch-{pd.Timestamp(start):%Y%m%dT%H%M}-v{champion.version}.parquet"
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return ScoredWindow(champion, path, table.num_rows, engine)


def log_window(settings: Settings, target: str, version: str, start, end) -> PartsWindow:
    """The prediction log's rows of one model version with ``scored_at`` in ``[start, end)``,
    found by reading those two columns only."""
    parts, kept = [], []
    for part in sorted(log_folder(settings.home, target).glob("*.parquet")):
        found = pq.read_table(part, columns=["model_version", "scored_at"])
        stamps = found.column("scored_at")
        since, until = (pa.scalar(pd.Timestamp(t), stamps.type) for t in (start, end))
        inside = pc.and_(pc.greater_equal(stamps, since), pc.less(stamps, until))
        ours = pc.equal(found.column("model_version"), version)
        keep = pc.fill_null(pc.and_(ours, inside), False).to_numpy()
        if keep.any():
            parts.append(part)
            kept.append(keep)
    return PartsWindow(parts, kept)


def read_log(settings: Settings, target: str, version: str, start, end) -> pd.DataFrame:
    """The prediction log of one model version with ``scored_at`` in ``[start, end)``, whole."""
    window = log_window(settings, target, version, start, end)
    if not window.rows:
        return pd.DataFrame(columns=[f.name for f in LOG_COLUMNS])
    return window.read()


# --- monitoring runs -----------------------------------------------------------------------


def monitoring_home(settings: Settings, target: str) -> Path:
    return settings.paths.monitoring(target)


def history(settings: Settings, target: str) -> list[MonitorSummary]:
    """Every past run of ``target``, oldest first."""
    folder = monitoring_home(settings, target)
    paths = sorted(folder.glob("*/summary.json")) if folder.is_dir() else []
    return [MonitorSummary.model_validate_json(p.read_text()) for p in paths]


def _matured(
    settings: Settings, champion: RegisteredModel, rows: pd.DataFrame, as_of
) -> pd.DataFrame:
    """The rows whose labels are known at ``as_of``, labelled by the model's rule."""
    label = spec(champion.name).label
    events = OfflineStore(settings.home).read(label.events)
    return MATURED[label.kind](rows, events, champion.horizon, as_of)


def _to_workspace(settings: Settings, target: str, run: str, snapshots: dict) -> None:
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(settings.paths.evidently_workspace))
    name = f"{PROJECT_PREFIX}-{target}"
    found = workspace.search_project(name)
    project = found[0] if found else workspace.create_project(name, f"monitoring of {target}")
    for kind, snapshot in snapshots.items():
        workspace.add_run(project.id, snapshot, name=f"{run} {kind}")


@dataclass(frozen=True)
class WindowReports:
    drift: DriftResult
    quality: QualityResult
    snapshots: dict[str, Snapshot]  # Evidently's drift and quality reports


def window_reports(
    reference: PartsWindow,
    current: PartsWindow,
    columns: ReportColumns,
    config: MonitorConfig,
    stale: pd.Series | None = None,
) -> WindowReports:
    """Drift and data quality of a current window against the reference: Evidently on a seeded
    sample of each, read column by column; missing shares counted over every row."""
    wanted = [*columns.features, core.PROBABILITY]
    sample_ref = reference.sample(config.sample_rows, config.seed, wanted)
    sample_cur = current.sample(config.sample_rows, config.seed, wanted)
    numeric, categorical = columns.numeric, columns.categorical
    drift_snapshot = core.drift_report(sample_ref, sample_cur, numeric, categorical, config.drift)
    quality = core.quality_of(
        current.rows,
        current.missing_share(columns.features),
        reference.rows,
        reference.missing_share(columns.features),
        stale,
    )
    return WindowReports(
        drift=core.read_drift(drift_snapshot, columns.features, config.drift.drift_share),
        quality=quality,
        snapshots={
            "drift": drift_snapshot,
            "quality": core.quality_report(sample_ref, sample_cur, numeric, categorical),
        },
    )


def monitor(
    settings: Settings,
    target: str,
    config: MonitorConfig,
    end: datetime,
    retrain: TrainConfig | None,
) -> MonitorSummary:
    """One monitoring run over ``[end - window, end)``: reports, summary, trigger, retrain.

    ``retrain`` is how to train when the trigger fires; None never retrains.
    """
    champion = load_champion(settings, target)
    start = end - timedelta(days=config.window_days)
    window = log_window(settings, target, champion.version, start, end)
    if not window.rows:
        raise ValueError(
            f"no predictions of {target} version {champion.version} between {start:%Y-%m-%d} "
            f"and {end:%Y-%m-%d}: score the window first (closedloop monitor-score)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        reference = PartsWindow.whole(download_reference(champion, Path(tmp)))
        current = window.read(["scored_at", "entity_id", core.PROBABILITY, "stale_features"])
        reports = window_reports(
            reference, window, report_columns(champion.model), config, current["stale_features"]
        )
        scored_reference = reference.read([core.LABEL, core.PROBABILITY])
    drift, quality = reports.drift, reports.quality

    as_of = pd.Timestamp(end)
    labelled = _matured(settings, champion, current, as_of)
    snapshots = dict(reports.snapshots)
    performance = None
    if not labelled.empty:
        labels = labelled["label"].to_numpy()
        metrics = evaluate(labels, labelled["probability"].to_numpy(), 100).metrics
        performance = performance_verdict(
            metrics, champion.test_metrics, len(labelled), int(labels.sum()), config
        )
        if labels.sum() and labels.sum() < len(labels):
            snapshots["performance"] = core.performance_report(scored_reference, labelled)

    past = history(settings, target)
    trigger = decide(drift, performance, past, champion.version, end, config)
    outcome = None
    if trigger.retrain and retrain is None:
        outcome = RetrainOutcome(retrained=False, reasons=["retraining is switched off"])
    elif trigger.retrain:
        outcome = _retrain(settings, target, retrain, end)

    run = f"{len(past) + 1:04d}-{end:%Y%m%dT%H%M}"
    folder = monitoring_home(settings, target) / run
    folder.mkdir(parents=True, exist_ok=True)
    reports = {}
    for kind, snapshot in snapshots.items():
        snapshot.save_html(str(folder / f"{kind}.html"))
        reports[kind] = str(folder / f"{kind}.html")
    summary = MonitorSummary(
        run=run,
        model=target,
        champion_version=champion.version,
        feature_service=champion.feature_service,
        created_at=datetime.now(UTC),
        reference_window=champion.training_window,
        window_start=start,
        window_end=end,
        drift=drift,
        quality=quality,
        performance=performance,
        trigger=trigger,
        retrain=outcome,
        reports=reports,
    )
    (folder / "summary.json").write_text(summary.model_dump_json(indent=1))
    _to_workspace(settings, target, run, snapshots)
    return summary


def _retrain(
    settings: Settings, target: str, config: TrainConfig, until: datetime
) -> RetrainOutcome:
    """Train on what is known by ``until`` and let the gate decide."""
    try:
        outcome = train_and_gate(settings, target, config, until)
    except ValueError as error:
        return RetrainOutcome(retrained=False, reasons=[f"training failed: {error}"])
    return RetrainOutcome(
        retrained=True,
        version=outcome.version,
        promoted=outcome.decision.promote,
        reasons=outcome.decision.reasons,
        metrics=outcome.metrics,
    )
