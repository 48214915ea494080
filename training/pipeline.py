"""The training stage's edge: training set from Feast, fit, evaluate, log to MLflow, gate."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from closedloop.models import ModelSpec, spec
from closedloop.settings import Settings
from features.offline import OfflineStore
from features.pipeline import repository
from features.repo import service_features
from features.store import open_store
from training import registry
from training.config import TrainConfig
from training.evaluate import Evaluation, evaluate, single_feature_auc
from training.labels import SNAPSHOTS
from training.model import ScoringModel
from training.splits import (
    PARTS,
    SplitChoice,
    check_entity_split,
    choose_split,
    entity_folds,
    entity_split,
    time_split,
)
from training.trainer import fit
from training.tuning import search

REFERENCE_ROWS = 50_000  # rows of the held-out windows kept for monitoring's drift reference


def feature_source(settings: Settings, model: ModelSpec) -> Path:
    """The feature table behind the model's feature service: where its entities are listed."""
    repo = repository(settings)
    views = {view.name: view for view in repo.views}
    projections = repo.services[model.feature_service].feature_view_projections
    (path,) = {views[projection.name].batch_source.path for projection in projections}
    return Path(path)


def split_choice(settings: Settings, target: str, config: TrainConfig) -> SplitChoice:
    """Time or entity split: from params, or from the shape of the sources of the labels."""
    reports = OfflineStore(settings.home).reports()
    shapes = [(r.source, r.shape, set(r.tables)) for r in reports]
    return choose_split(config.split, spec(target).label.events, shapes)


def outright_snapshots(keys: pd.DataFrame, events: pd.DataFrame, model: ModelSpec):
    """Snapshot data: each entity's latest feature row, labelled by the events table's outright
    column (``churned``); entities with no label row are left out."""
    if model.label.outright is None:
        raise ValueError(
            f"{model.name} needs time-series data: its label ({model.label.kind}) cannot be "
            "read from a snapshot"
        )
    key = model.entity_key
    latest = keys.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last")
    known = events.drop_duplicates(key).set_index(key)[model.label.outright]
    label = latest[key].map(known)
    out = latest.assign(label=label)[label.notna()]
    out["label"] = out["label"].astype(int)
    return out.sort_values(key).reset_index(drop=True)


def labelled_snapshots(
    settings: Settings,
    target: str,
    config: TrainConfig,
    until: datetime | None = None,
    by: str = "time",
) -> pd.DataFrame:
    """Snapshots on the grid whose label is known by ``until`` (default: the end of the data);
    for an entity split (snapshot data) one row per entity with its outright label."""
    model = spec(target)
    keys = _keys(feature_source(settings, model), model.entity_key, until)
    events = OfflineStore(settings.home).read(model.label.events)
    if by == "entity":
        return outright_snapshots(keys, events, model)
    horizon = pd.Timedelta(hours=config.horizon_hours)
    every = pd.Timedelta(hours=config.snapshot_every_hours)
    return SNAPSHOTS[model.label.kind](keys, events, horizon, every)


def _keys(path: Path, key: str, until: datetime | None) -> pd.DataFrame:
    """Entity keys and feature stamps, those before ``until`` only when it is given."""
    keys = pq.read_table(path, columns=[key, "event_timestamp"]).to_pandas()
    if until is None:
        return keys
    stamps = pd.to_datetime(keys["event_timestamp"], utc=True)
    return keys[stamps < pd.Timestamp(until)].reset_index(drop=True)


def training_set(
    settings: Settings,
    target: str,
    config: TrainConfig,
    until: datetime | None = None,
    by: str = "time",
) -> pd.DataFrame:
    """Labelled snapshots joined point-in-time to the feature service by Feast."""
    snapshots = labelled_snapshots(settings, target, config, until, by)
    if snapshots.empty and by == "entity":
        raise ValueError(f"no labelled entities: no {spec(target).label.events} row matches")
    if snapshots.empty:
        raise ValueError(
            "no labelled snapshots: the data is shorter than the label horizon (for one row "
            "per entity with the label known, declare shape: snapshot in the mapping)"
        )
    store = open_store(settings)
    service = store.get_feature_service(data_set_service(settings, target, config)[0])
    joined = store.get_historical_features(entity_df=snapshots, features=service).to_df()
    key = spec(target).entity_key
    return joined.sort_values(["event_timestamp", key], kind="stable").reset_index(drop=True)


def _plots(evaluation: Evaluation, model: ScoringModel, test: pd.DataFrame, folder: Path) -> None:
    calibration = evaluation.calibration
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(calibration.predicted, calibration.observed, "o-")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration (test)")
    fig.savefig(folder / "calibration.png", dpi=100, bbox_inches="tight")

    lift = evaluation.lift
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.bar(lift.decile, lift.lift)
    ax.axhline(1, color="grey", linestyle="--")
    ax.set(xlabel="score decile (1 = highest)", ylabel="lift", title="lift by decile (test)")
    fig.savefig(folder / "lift.png", dpi=100, bbox_inches="tight")

    gain = pd.Series(model.booster.feature_importance("gain"), index=model.features).sort_values()
    shap = model.contributions(test).abs().mean().sort_values()
    for name, values, title in (
        ("feature_importance.png", gain, "LightGBM gain"),
        ("shap_summary.png", shap, "mean |SHAP| on test (log-odds)"),
    ):
        fig = Figure(figsize=(6, 0.22 * len(values) + 1))
        ax = fig.subplots()
        ax.barh(values.index, values.to_numpy())
        ax.set(title=title)
        fig.savefig(folder / name, dpi=100, bbox_inches="tight")
    ranked = shap.sort_values(ascending=False).to_dict()
    (folder / "shap_summary.json").write_text(json.dumps(ranked, indent=1))


@dataclass(frozen=True)
class TrainOutcome:
    target: str
    version: str
    run_id: str
    metrics: dict[str, float]
    decision: registry.GateDecision
    rows: dict[str, int]
    search: dict[str, float]  # the Optuna search's trials and best validation PR AUC, if any
    split: SplitChoice
    service: tuple[str, str, int]  # the feature service trained on, why, and its features
    folds: dict[str, float]  # k-fold test figures of an entity split (cv_<metric>_mean, _sd)


def _window(frame: pd.DataFrame) -> str:
    return f"{frame.event_timestamp.min().isoformat()} .. {frame.event_timestamp.max().isoformat()}"


def reference_sample(
    part: pd.DataFrame, key: str, model: ScoringModel, rows: int, seed: int
) -> pd.DataFrame:
    """A seeded sample of a window with its labels and scores: monitoring's reference.
    Only the sampled rows are scored."""
    frame = part[[key, "event_timestamp", "label", *model.features]]
    sample = frame.sample(min(rows, len(frame)), random_state=seed)
    return sample.assign(probability=model.score(sample)).sort_values("event_timestamp")


def data_set_service(settings: Settings, target: str, config: TrainConfig) -> tuple[str, str]:
    """The feature service to train on and why: ``service`` from params when given, else the
    one data set service beside the model's built-in one, else the built-in one."""
    model = spec(target)
    if config.service is not None:
        return config.service, "service in params"
    beside = sorted(
        name
        for name, service in repository(settings).services.items()
        if service.tags.get("built_in") == model.feature_service
    )
    if len(beside) > 1:
        raise ValueError(
            f"data sets carry attributes for {target} in services {', '.join(beside)}; "
            f"name one as train_{target}.service in params.yaml"
        )
    if beside:
        data_set = repository(settings).services[beside[0]].tags["data_set"]
        return beside[0], f"{model.feature_service} and the attributes of {data_set}"
    return model.feature_service, "the built-in service"


def kfold_figures(
    data: pd.DataFrame, key: str, features: list[str], params, config: TrainConfig
) -> dict[str, float]:
    """Test ROC AUC and PR AUC over k entity folds (each fold tests once, the next one
    validates, the rest train): how much the single split's figure could have varied."""
    k = config.split.folds
    fold = entity_folds(data[key], data["label"], k, config.seed)
    found: dict[str, list[float]] = {"roc_auc": [], "pr_auc": []}
    for held in range(k):
        test, valid = data[fold == held], data[fold == (held + 1) % k]
        train = data[(fold != held) & (fold != (held + 1) % k)]
        model, _ = fit(train, valid, features, params, config.seed, config.increasing)
        metrics = evaluate(test["label"].to_numpy(), model.score(test), config.action_budget)
        for name, values in found.items():
            values.append(metrics.metrics[name])
    figures = {"cv_folds": float(k)}
    for name, values in found.items():
        figures[f"cv_{name}_mean"] = float(np.mean(values))
        figures[f"cv_{name}_sd"] = float(np.std(values, ddof=1))
    return figures


def train(
    settings: Settings, target: str, config: TrainConfig, until: datetime | None = None
) -> TrainOutcome:
    """Train, evaluate on the latest window, log everything, register and gate the model.

    ``until`` trains on what was known before that instant (the default: all the data).
    """
    model_spec = spec(target)
    key = model_spec.entity_key
    service, service_why = data_set_service(settings, target, config)
    config = config.model_copy(update={"service": service})
    choice = split_choice(settings, target, config)
    data = training_set(settings, target, config, until, choice.by)
    if choice.by == "entity":
        data["split"] = entity_split(data[key], data["label"], config.split, config.seed)
        check_entity_split(data[key], data["split"])
    else:
        data["split"] = time_split(data["event_timestamp"], config.split)
    parts = {name: data[data.split == name] for name in PARTS}
    features = service_features(repository(settings).services[config.service])
    params, search_info = config.lightgbm, {}
    if config.tune.trials:
        found = search(
            parts["train"],
            parts["valid"],
            features,
            params,
            config.tune,
            config.seed,
            config.increasing,
        )
        params = found.params
        search_info = {"tune_trials": found.trials, "tune_valid_pr_auc": found.valid_pr_auc}
    model, fit_info = fit(
        parts["train"], parts["valid"], features, params, config.seed, config.increasing
    )
    folds = {}
    if choice.by == "entity" and config.split.folds:
        folds = kfold_figures(data, key, features, params, config)
    test = parts["test"]
    scores = model.score(test)
    evaluation = evaluate(
        test["label"].to_numpy(), scores, config.action_budget, test[list(model_spec.segments)]
    )
    valid_metrics = evaluate(
        parts["valid"]["label"].to_numpy(), model.score(parts["valid"]), config.action_budget
    ).metrics

    # monitoring's reference: the latest windows the model was judged on, scored out of sample
    held_out = pd.concat([parts["valid"], test])
    registry.connect(settings)
    experiment_id = registry.experiment(settings, f"closedloop-{target}")
    champion = registry.load_champion(target)
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate(
            test["label"].to_numpy(), champion.model.score(test), config.action_budget
        ).metrics
    separation = single_feature_auc(parts["train"], test, features)
    decision = registry.decide(config.gate, evaluation.metrics, champion_metrics, separation)

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                **params.model_dump(),
                "horizon_hours": config.horizon_hours,
                "snapshot_every_hours": config.snapshot_every_hours,
                "split": json.dumps(config.split.model_dump()),
                "split_by": choice.by,
                "seed": config.seed,
                "feature_service": config.service,
                "features": len(features),
                "increasing": ",".join(config.increasing),
            }
        )
        mlflow.set_tags(
            {
                "feature_service": config.service,
                "feature_list": ",".join(features),
                "data_fingerprint": registry.fingerprint(data.drop(columns=["split"])),
                "git_commit": registry.git_commit(),
                "data_until": until.isoformat() if until else "end of data",
                "split_why": choice.why,
                "window_train": _window(parts["train"]),
                "window_valid": _window(parts["valid"]),
                "window_test": _window(test),
                "window_reference": _window(held_out),
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.metrics.items()})
        mlflow.log_metrics({f"valid_{k}": v for k, v in valid_metrics.items()})
        mlflow.log_metrics({**fit_info, **search_info, **folds})
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_test_{k}": v for k, v in champion_metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            _plots(evaluation, model, test, folder)
            reference = reference_sample(
                held_out, model_spec.entity_key, model, REFERENCE_ROWS, config.seed
            )
            reference.to_parquet(folder / "reference.parquet", index=False)
            evaluation.lift.to_csv(folder / "lift.csv", index=False)
            evaluation.calibration.to_csv(folder / "calibration.csv", index=False)
            evaluation.segments.to_csv(folder / "segments.csv", index=False)
            gate = {
                "promote": decision.promote,
                "reasons": decision.reasons,
                "champion_version": champion.version if champion else None,
                "champion_metrics": champion_metrics,
                "single_feature_auc": dict(sorted(separation.items(), key=lambda i: -i[1])),
            }
            (folder / "gate.json").write_text(json.dumps(gate, indent=1))
            mlflow.log_artifacts(str(folder), artifact_path="evaluation")
        version = registry.log_model(model, parts["train"], target)
    registry.record_decision(target, version, decision)
    return TrainOutcome(
        target=target,
        version=version,
        run_id=run.info.run_id,
        metrics=evaluation.metrics,
        decision=decision,
        rows={name: len(part) for name, part in parts.items()},
        search=search_info,
        split=choice,
        folds=folds,
        service=(service, service_why, len(features)),
    )
