"""The monitoring stage's edge: champion and reference from MLflow, the prediction log, labels,
reports on disk and in the Evidently workspace, and retraining through the training gate."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
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
from closedloop.predictions import (
    LOG_COLUMNS,
    PredictionBatch,
    class_column,
    log_folder,
    log_schema,
    log_table,
)
from closedloop.settings import Settings
from features.offline import OfflineStore
from features.repo import TRAITS, Traits
from features.store import open_store
from monitoring import drift as core
from monitoring.config import MonitorConfig
from monitoring.policy import decide, live_baseline, performance_verdict
from monitoring.sampling import PartsWindow
from monitoring.summary import (
    DriftResult,
    MonitorSummary,
    Performance,
    QualityResult,
    RetrainOutcome,
    runs_in,
)
from training import registry
from training.config import TrainConfig
from training.evaluate import evaluate, evaluate_classes
from training.labels import MATURED, class_labels, snapshot_instants
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
    which of them are text, their traits, and the first instant of their feature table (values
    are complete once their history lies behind them)."""

    features: list[str]
    categorical: list[str]
    traits: dict[str, Traits] = field(default_factory=dict)
    history_start: pd.Timestamp | None = None
    classes: list[str] = field(default_factory=list)  # a multi-class model's classes

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    @property
    def predictions(self) -> list[str]:
        """The prediction columns: the probability, then each class's (multi-class)."""
        return [core.PROBABILITY, *(class_column(name) for name in self.classes)]


def history_start(settings: Settings, target: str) -> pd.Timestamp:
    """The first stamp of the model's feature table, from the Parquet statistics when they are
    there: where every trailing window began filling."""
    path = feature_source(settings, spec(target))
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("event_timestamp")
    lows = []
    for group in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            lows = []
            break
        lows.append(pd.Timestamp(stats.min))
    if not lows:
        lows = [pd.Timestamp(pc.min(pq.read_table(path, columns=["event_timestamp"])[0]).as_py())]
    first = min(lows)
    return first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")


def report_columns(model: ScoringModel, start: pd.Timestamp | None = None) -> ReportColumns:
    features = model.features
    return ReportColumns(
        features,
        [f for f in features if f in model.categories],
        {f: TRAITS[f] for f in features if f in TRAITS},
        start,
        list(model.classes),
    )


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
    """Prediction log rows of scored feature rows (``event_timestamp`` becomes ``scored_at``);
    a multi-class model's ``scores`` have a column per class."""
    model = champion.model
    batch = PredictionBatch(
        model=champion.name,
        model_version=champion.version,
        feature_service=champion.feature_service,
        source="batch",
        request_id=f"batch-{champion.name}-{champion.version}",
        scored_at=frame["event_timestamp"],
        entity_ids=frame[spec(champion.name).entity_key].astype(str),
        probabilities=scores.max(axis=1) if model.classes else scores,
        stale_features=frame[model.features].isna().sum(axis=1),
        features={name: frame[name] for name in model.features},
        classes=dict(zip(model.classes, scores.T, strict=True)) if model.classes else {},
    )
    return log_table([batch], log_schema(model.features, model.categories, model.classes))


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
    return runs_in(monitoring_home(settings, target))


def _matured(
    settings: Settings, champion: RegisteredModel, rows: pd.DataFrame, as_of
) -> pd.DataFrame:
    """The rows whose labels are known at ``as_of``, labelled by the model's rule."""
    label = spec(champion.name).label
    events = OfflineStore(settings.home).read(label.events)
    return MATURED[label.kind](rows, events, champion.horizon, as_of)


def _binary_performance(
    champion: RegisteredModel,
    labelled: pd.DataFrame,
    config: MonitorConfig,
    baseline: Performance | None,
) -> Performance | None:
    """The champion's figures on its matured rows against its own test figures."""
    if labelled.empty:
        return None
    labels = labelled["label"].to_numpy()
    return performance_verdict(
        evaluate(labels, labelled["probability"].to_numpy(), 100).metrics,
        champion.test_metrics,
        len(labelled),
        int(labels.sum()),
        config,
        pd.Timestamp(labelled["scored_at"].max()).to_pydatetime(),
        baseline,
    )


def _class_performance(
    settings: Settings,
    champion: RegisteredModel,
    window: PartsWindow,
    reference: pd.DataFrame,
    config: MonitorConfig,
    baseline: Performance | None,
) -> Performance | None:
    """A multi-class champion on the window's rows whose entity's class is recorded: log loss
    (and its gain over the reference's class shares), macro-F1, accuracy, F1 per class."""
    model, label = champion.model, spec(champion.name).label
    columns = [class_column(name) for name in model.classes]
    scored = window.read(["scored_at", "entity_id", *columns])
    events = OfflineStore(settings.home).read(label.events)
    key = spec(champion.name).entity_key
    labelled = class_labels(scored, events, key, str(label.classes), model.classes)
    if labelled.empty:
        return None
    shares = np.bincount(reference[core.LABEL].astype(int), minlength=len(model.classes))
    prior = shares / shares.sum()
    labels = labelled["label"].to_numpy()
    figures = evaluate_classes(labels, labelled[columns].to_numpy(), model.classes, prior)
    return performance_verdict(
        figures.metrics,
        champion.test_metrics,
        len(labelled),
        int(np.bincount(labels, minlength=len(model.classes)).min()),
        config,
        pd.Timestamp(labelled["scored_at"].max()).to_pydatetime(),
        baseline,
        model.classes,
    )


def _to_workspace(settings: Settings, target: str, run: str, snapshots: dict) -> None:
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(settings.paths.evidently_workspace))
    name = f"{PROJECT_PREFIX}-{target}"
    found = workspace.search_project(name)
    project = found[0] if found else workspace.create_project(name, f"monitoring of {target}")
    for kind, snapshot in snapshots.items():
        workspace.add_run(project.id, snapshot, name=f"{run} {kind}")


def _sample(window: PartsWindow, config: MonitorConfig, wanted: list[str], stamp: str):
    """The seeded sample of a window's ``wanted`` columns that it has, its stamp column (when
    it has one) as ``core.STAMP``."""
    names = pq.ParquetFile(window.parts[0]).schema_arrow.names
    columns = [name for name in [*wanted, stamp] if name in names]
    return window.sample(config.sample_rows, config.seed, columns).rename(
        columns={stamp: core.STAMP}
    )


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
    wanted = [*columns.features, *columns.predictions]
    sample_ref = _sample(reference, config, wanted, "event_timestamp")
    sample_cur = _sample(current, config, wanted, "scored_at")
    numeric, categorical = columns.numeric, columns.categorical
    plan = core.comparison(
        sample_ref,
        sample_cur,
        columns.features,
        categorical,
        config.drift,
        columns.traits,
        columns.history_start,
        columns.predictions,
    )
    drift_snapshot = core.drift_report(plan, config.drift)
    quality = core.quality_of(
        current.rows,
        current.missing_share(columns.features),
        reference.rows,
        reference.missing_share(columns.features),
        stale,
    )
    return WindowReports(
        drift=core.read_drift(drift_snapshot, plan, config.drift),
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
        columns = report_columns(champion.model, history_start(settings, target))
        reports = window_reports(reference, window, columns, config, current["stale_features"])
        scored_reference = reference.read([core.LABEL, core.PROBABILITY])
    drift, quality = reports.drift, reports.quality

    snapshots = dict(reports.snapshots)
    past = history(settings, target)
    baseline = live_baseline(past, champion.version)
    if champion.model.classes:
        performance = _class_performance(
            settings, champion, window, scored_reference, config, baseline
        )
    else:
        # the latest window whose labels are all known: the current one less the label horizon
        matured = log_window(settings, target, champion.version, start - champion.horizon, end)
        columns = ["scored_at", "entity_id", core.PROBABILITY]
        scored = matured.read(columns) if matured.rows else current
        labelled = _matured(settings, champion, scored, pd.Timestamp(end))
        performance = _binary_performance(champion, labelled, config, baseline)
        positives = labelled["label"].sum() if not labelled.empty else 0
        if 0 < positives < len(labelled):
            snapshots["performance"] = core.performance_report(scored_reference, labelled)

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
        reference_window=champion.reference_window,
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
        return RetrainOutcome(retrained=False, failed=True, reasons=[f"training failed: {error}"])
    return RetrainOutcome(
        retrained=True,
        version=outcome.version,
        promoted=outcome.decision.promote,
        reasons=outcome.decision.reasons,
        metrics=outcome.metrics,
    )
