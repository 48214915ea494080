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
import pyarrow.parquet as pq

from closedloop.predictions import LOG_COLUMNS, log_folder
from closedloop.settings import Settings
from features.offline import OfflineStore
from features.repo import FeaturePaths
from features.store import open_store
from monitoring import drift as core
from monitoring.config import MonitorConfig
from monitoring.labels import churn_labels, fault_labels
from monitoring.policy import decide, performance_verdict
from monitoring.summary import MonitorSummary, RetrainOutcome
from training import registry
from training.config import TrainConfig
from training.evaluate import evaluate
from training.labels import snapshot_instants
from training.model import ScoringModel
from training.pipeline import Target
from training.pipeline import train as train_and_gate

KEYS = {"churn": "customer_id", "fault": "cell_id"}
PROJECT_PREFIX = "closedloop"


@dataclass(frozen=True)
class Champion:
    """The champion of one model, with what its training run recorded about it."""

    name: str
    version: str
    run_id: str
    feature_service: str
    model: ScoringModel
    horizon: pd.Timedelta
    snapshot_every: pd.Timedelta
    training_window: str
    test_metrics: dict[str, float]

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.model.features if f not in self.model.categories]

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.model.features if f in self.model.categories]


def load_champion(settings: Settings, target: Target) -> Champion:
    """The ``champion`` alias of ``target`` and its training run's params and tags."""
    client = registry.connect(settings)
    try:
        version = client.get_model_version_by_alias(target, registry.CHAMPION)
    except mlflow.exceptions.MlflowException:
        raise LookupError(f"{target} has no champion yet: train it first") from None
    run = client.get_run(version.run_id)
    model = mlflow.pyfunc.load_model(f"models:/{target}/{version.version}")
    return Champion(
        name=target,
        version=str(version.version),
        run_id=version.run_id,
        feature_service=run.data.tags["feature_service"],
        model=model.unwrap_python_model().model,
        horizon=pd.Timedelta(hours=int(run.data.params["horizon_hours"])),
        snapshot_every=pd.Timedelta(hours=int(run.data.params["snapshot_every_hours"])),
        training_window=run.data.tags.get("window_train", "unknown"),
        test_metrics={
            k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")
        },
    )


def reference_frame(champion: Champion) -> pd.DataFrame:
    """The sample of its training window the champion's run logged for monitoring."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path="evaluation/reference.parquet", dst_path=tmp
        )
        return pd.read_parquet(path)


# --- batch scoring into the prediction log -------------------------------------------------


def _window_keys(settings: Settings, target: Target, start, end, every) -> pd.DataFrame:
    paths = FeaturePaths.under(settings.paths)
    source = paths.customer_daily if target == "churn" else paths.cell_hourly
    keys = pq.read_table(source, columns=[KEYS[target], "event_timestamp"]).to_pandas()
    stamps = pd.to_datetime(keys["event_timestamp"], utc=True)
    keys = keys.assign(event_timestamp=stamps)
    on_grid = snapshot_instants(stamps, every)
    inside = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return keys[on_grid & inside].reset_index(drop=True)


def log_table(champion: Champion, frame: pd.DataFrame, scores: np.ndarray, source: str) -> pa.Table:
    """Prediction log rows for scored feature rows (``event_timestamp`` becomes ``scored_at``)."""
    from serving.prediction_log import log_schema

    schema = log_schema(champion.model)
    stale = frame[champion.model.features].isna().sum(axis=1).astype("int32")
    columns: dict[str, object] = {
        "scored_at": frame["event_timestamp"],
        "request_id": [f"{source}-{champion.name}-{champion.version}"] * len(frame),
        "model": [champion.name] * len(frame),
        "model_version": [champion.version] * len(frame),
        "feature_service": [champion.feature_service] * len(frame),
        "entity_id": frame[KEYS[champion.name]].astype(str),
        "source": [source] * len(frame),
        "probability": scores,
        "stale_features": stale,
    }
    for name in champion.model.features:
        values = frame[name]
        columns[name] = values.astype("string") if name in champion.model.categories else values
    table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
    return table.select(schema.names).cast(schema)


def score_window(
    settings: Settings, target: Target, start: datetime, end: datetime
) -> tuple[Champion, Path, int]:
    """Score every entity on the champion's snapshot grid in ``[start, end)`` into the log."""
    champion = load_champion(settings, target)
    keys = _window_keys(settings, target, start, end, champion.snapshot_every)
    if keys.empty:
        raise ValueError(f"no feature rows of {target} between {start} and {end}")
    store = open_store(settings)
    service = store.get_feature_service(champion.feature_service)
    frame = store.get_historical_features(entity_df=keys, features=service).to_df()
    frame = frame.sort_values(["event_timestamp", KEYS[target]], kind="stable")
    table = log_table(champion, frame, champion.model.score(frame), "batch")
    folder = log_folder(settings.home, target)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-batch-{pd.Timestamp(start):%Y%m%dT%H%M}-v{champion.version}.parquet"
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return champion, path, table.num_rows


def read_log(settings: Settings, target: Target, version: str, start, end) -> pd.DataFrame:
    """The prediction log of one model version with ``scored_at`` in ``[start, end)``."""
    parts = sorted(log_folder(settings.home, target).glob("*.parquet"))
    frames = []
    for part in parts:
        frame = pq.read_table(part, filters=[("model_version", "=", version)]).to_pandas()
        stamps = pd.to_datetime(frame["scored_at"], utc=True)
        frames.append(frame[(stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))])
    if not frames:
        return pd.DataFrame(columns=[f.name for f in LOG_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# --- monitoring runs -----------------------------------------------------------------------


def monitoring_home(settings: Settings, target: str) -> Path:
    return settings.home / "monitoring" / target


def history(settings: Settings, target: str) -> list[MonitorSummary]:
    """Every past run of ``target``, oldest first."""
    folder = monitoring_home(settings, target)
    paths = sorted(folder.glob("*/summary.json")) if folder.is_dir() else []
    return [MonitorSummary.model_validate_json(p.read_text()) for p in paths]


def _matured(settings: Settings, champion: Champion, rows: pd.DataFrame, as_of) -> pd.DataFrame:
    offline = OfflineStore(settings.home)
    if champion.name == "churn":
        return churn_labels(rows, offline.read("churn_labels"), champion.horizon, as_of)
    return fault_labels(rows, offline.read("cell_fault_labels"), champion.horizon, as_of)


def _to_workspace(settings: Settings, target: str, run: str, snapshots: dict) -> None:
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(settings.home / "monitoring" / "workspace"))
    name = f"{PROJECT_PREFIX}-{target}"
    found = workspace.search_project(name)
    project = found[0] if found else workspace.create_project(name, f"monitoring of {target}")
    for kind, snapshot in snapshots.items():
        workspace.add_run(project.id, snapshot, name=f"{run} {kind}")


def monitor(
    settings: Settings,
    target: Target,
    config: MonitorConfig,
    end: datetime,
    retrain: TrainConfig | None,
) -> MonitorSummary:
    """One monitoring run over ``[end - window, end)``: reports, summary, trigger, retrain.

    ``retrain`` is how to train when the trigger fires; None never retrains.
    """
    champion = load_champion(settings, target)
    start = end - timedelta(days=config.window_days)
    current = read_log(settings, target, champion.version, start, end)
    if current.empty:
        raise ValueError(
            f"no predictions of {target} version {champion.version} between {start:%Y-%m-%d} "
            f"and {end:%Y-%m-%d}: score the window first (closedloop monitor-score)"
        )
    reference = reference_frame(champion)
    features = champion.model.features
    sample_ref = core.sample(reference, config.sample_rows, config.seed)
    sample_cur = core.sample(current, config.sample_rows, config.seed)
    drift_snapshot = core.drift_report(
        sample_ref, sample_cur, champion.numeric, champion.categorical, config.drift
    )
    drift = core.read_drift(drift_snapshot, features, config.drift.drift_share)
    quality_snapshot = core.quality_report(
        sample_ref, sample_cur, champion.numeric, champion.categorical
    )
    quality = core.read_quality(reference, current, features, current["stale_features"])

    as_of = pd.Timestamp(end)
    labelled = _matured(settings, champion, current, as_of)
    snapshots = {"drift": drift_snapshot, "quality": quality_snapshot}
    performance = None
    if not labelled.empty:
        labels = labelled["label"].to_numpy()
        metrics = evaluate(labels, labelled["probability"].to_numpy(), 100).metrics
        performance = performance_verdict(
            metrics, champion.test_metrics, len(labelled), int(labels.sum()), config
        )
        if labels.sum() and labels.sum() < len(labels):
            snapshots["performance"] = core.performance_report(reference, labelled)

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
    settings: Settings, target: Target, config: TrainConfig, until: datetime
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
