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
from closedloop.predictions import class_column
from closedloop.settings import Settings
from features.offline import OfflineStore
from features.pipeline import repository
from features.repo import service_features
from features.store import open_store
from training import registry
from training.backends import TrainingEngine, training_engine
from training.config import LightGBMParams, TrainConfig
from training.evaluate import (
    ClassEvaluation,
    Evaluation,
    evaluate,
    evaluate_classes,
    single_feature_auc,
)
from training.labels import SNAPSHOTS, entity_classes
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


@dataclass(frozen=True)
class TargetChoice:
    classes: list[str]  # a multi-class target's classes in label order; empty: binary
    why: str


def target_choice(settings: Settings, target: str, config: TrainConfig) -> TargetChoice:
    """Binary, or the multi-class target a mapping declares for the model's label table."""
    model = spec(target)
    declared = {
        report.source: report.classes[model.label.events]
        for report in OfflineStore(settings.home).reports()
        if model.label.events in report.classes
    }
    if config.target == "binary" or (config.target == "auto" and not declared):
        why = "target: binary in params" if config.target == "binary" else "no classes declared"
        return TargetChoice([], f"binary ({why})")
    if not declared:
        raise ValueError(
            f"target: classes, but no mapping declares classes for {model.label.events}."
            f"{model.label.classes} (classes: true on its rule)"
        )
    if len({tuple(names) for names in declared.values()}) > 1:
        raise ValueError(f"sources declare different classes: {declared}")
    source, names = next(iter(declared.items()))
    return TargetChoice(
        names, f"{len(names)} classes of {model.label.events}.{model.label.classes} ({source})"
    )


def outright_snapshots(
    keys: pd.DataFrame, events: pd.DataFrame, model: ModelSpec, classes: list[str] | None = None
):
    """Snapshot data: each entity's latest feature row, labelled by the events table's outright
    column (``churned``), or with ``classes`` by the index of its class in the class column;
    entities with no label row (or no class) are left out."""
    column = model.label.classes if classes else model.label.outright
    if column is None:
        raise ValueError(
            f"{model.name} needs time-series data: its label ({model.label.kind}) cannot be "
            "read from a snapshot"
        )
    key = model.entity_key
    latest = keys.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last")
    known = events.drop_duplicates(key).set_index(key)[column]
    if classes:
        known = entity_classes(events, key, column, classes)
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
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Snapshots on the grid whose label is known by ``until`` (default: the end of the data);
    for an entity split (snapshot data) one row per entity with its outright label or class."""
    model = spec(target)
    keys = _keys(feature_source(settings, model), model.entity_key, until)
    events = OfflineStore(settings.home).read(model.label.events)
    if by == "entity":
        return outright_snapshots(keys, events, model, classes)
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
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Labelled snapshots joined point-in-time to the feature service by Feast."""
    snapshots = labelled_snapshots(settings, target, config, until, by, classes)
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


def _plots(evaluation: Evaluation, folder: Path) -> None:
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


def _feature_plots(model: ScoringModel, test: pd.DataFrame, folder: Path) -> None:
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
    label: TargetChoice  # binary or multi-class, and why
    service: tuple[str, str, int]  # the feature service trained on, why, and its features
    folds: dict[str, float]  # k-fold test figures of an entity split (cv_<metric>_mean, _sd)
    params: LightGBMParams  # the booster's parameters (after the search, if any)


def _window(frame: pd.DataFrame) -> str:
    return f"{frame.event_timestamp.min().isoformat()} .. {frame.event_timestamp.max().isoformat()}"


def reference_sample(
    part: pd.DataFrame, key: str, model: ScoringModel, rows: int, seed: int
) -> pd.DataFrame:
    """A seeded sample of a window with its labels and scores: monitoring's reference (for a
    multi-class model the probability of the likeliest class, and each class's in its own
    column). Only the sampled rows are scored."""
    frame = part[[key, "event_timestamp", "label", *model.features]]
    sample = frame.sample(min(rows, len(frame)), random_state=seed)
    scores = model.score(sample)
    if not model.classes:
        return sample.assign(probability=scores).sort_values("event_timestamp")
    by_class = {class_column(name): scores[:, i] for i, name in enumerate(model.classes)}
    return sample.assign(probability=scores.max(axis=1), **by_class).sort_values("event_timestamp")


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


def judge(
    model: ScoringModel,
    part: pd.DataFrame,
    config: TrainConfig,
    prior: np.ndarray,
    segments: tuple[str, ...] = (),
) -> Evaluation | ClassEvaluation:
    """The figures of ``model`` on a labelled part: binary (with ``segments``) or multi-class
    (log loss against ``prior``, the training class shares)."""
    labels = part["label"].to_numpy()
    if model.classes:
        return evaluate_classes(labels, model.score(part), model.classes, prior)
    grouped = part[list(segments)] if segments else None
    return evaluate(labels, model.score(part), config.action_budget, grouped)


def class_shares(train: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The training share of each class (the no-skill multi-class model); empty if binary."""
    counts = np.bincount(train["label"].to_numpy(dtype=int), minlength=len(classes))
    return counts / counts.sum() if classes else np.array([])


FOLD_METRICS = {False: ("roc_auc", "pr_auc"), True: ("log_loss", "macro_f1")}


def kfold_figures(
    data: pd.DataFrame,
    key: str,
    features: list[str],
    params,
    config: TrainConfig,
    classes: list[str] | None = None,
) -> dict[str, float]:
    """Test ROC AUC and PR AUC (multi-class: log loss and macro-F1) over k entity folds (each
    fold tests once, the next one validates, the rest train): how much the single split's
    figure could have varied."""
    k = config.split.folds
    fold = entity_folds(data[key], data["label"], k, config.seed)
    found: dict[str, list[float]] = {name: [] for name in FOLD_METRICS[bool(classes)]}
    for held in range(k):
        test, valid = data[fold == held], data[fold == (held + 1) % k]
        train = data[(fold != held) & (fold != (held + 1) % k)]
        model, _ = fit(train, valid, features, params, config.seed, config.increasing, classes)
        metrics = judge(model, test, config, class_shares(train, classes or [])).metrics
        for name, values in found.items():
            values.append(metrics[name])
    figures = {"cv_folds": float(k)}
    for name, values in found.items():
        figures[f"cv_{name}_mean"] = float(np.mean(values))
        figures[f"cv_{name}_sd"] = float(np.std(values, ddof=1))
    return figures


def final_fit(
    engine: TrainingEngine,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    params: LightGBMParams,
    seed: int,
    increasing: tuple[str, ...],
    classes: list[str] | None = None,
) -> tuple[ScoringModel, dict[str, float]]:
    """The model :func:`training.trainer.fit` makes, fitted where ``engine`` says."""
    if not engine.on_dask:
        return fit(train, valid, features, params, seed, increasing, classes)
    from training.distributed import dask_client, fit_on_dask

    with dask_client(engine.scheduler, engine.workers) as client:
        return fit_on_dask(client, train, valid, features, params, seed, increasing, classes)


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
    target_of = target_choice(settings, target, config)
    classes = target_of.classes
    if classes and choice.by != "entity":
        raise ValueError(
            "a multi-class target is read from snapshot data (shape: snapshot in the mapping, "
            "or split.by: entity in params)"
        )
    if classes and config.tune.trials:
        raise ValueError("the search tunes binary models; set tune.trials: 0 for a multi-class one")
    data = training_set(settings, target, config, until, choice.by, classes)
    if choice.by == "entity":
        data["split"] = entity_split(data[key], data["label"], config.split, config.seed)
        check_entity_split(data[key], data["split"])
    else:
        data["split"] = time_split(data["event_timestamp"], config.split)
    parts = {name: data[data.split == name] for name in PARTS}
    features = service_features(repository(settings).services[config.service])
    params, search_info = config.booster(choice.by), {}
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
    engine = training_engine(settings)
    model, fit_info = final_fit(
        engine,
        parts["train"],
        parts["valid"],
        features,
        params,
        config.seed,
        config.increasing,
        classes,
    )
    folds = {}
    if choice.by == "entity" and config.split.folds:
        folds = kfold_figures(data, key, features, params, config, classes)
    test = parts["test"]
    prior = class_shares(parts["train"], classes)
    evaluation = judge(model, test, config, prior, model_spec.segments)
    valid_metrics = judge(model, parts["valid"], config, prior).metrics

    # monitoring's reference: the latest windows the model was judged on, scored out of sample
    held_out = pd.concat([parts["valid"], test])
    registry.connect(settings)
    experiment_id = registry.experiment(settings, f"closedloop-{target}")
    champion = registry.load_champion(target)
    champion_metrics, champion_classes = None, None
    if champion is not None and champion.model.classes == classes:
        champion_metrics = judge(champion.model, test, config, prior).metrics
    elif champion is not None:
        champion_classes = champion.model.classes
    separation = single_feature_auc(parts["train"], test, features)
    decide = registry.decide_classes if classes else registry.decide
    decision = decide(
        config.gate, evaluation.metrics, champion_metrics, separation, champion_classes,
        registry.hold_of(target),
    )  # fmt: skip

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                **params.model_dump(),
                "horizon_hours": config.horizon_hours,
                "snapshot_every_hours": config.snapshot_every_hours,
                "split": json.dumps(config.split.model_dump()),
                "split_by": choice.by,
                "classes": ",".join(classes),
                "seed": config.seed,
                "feature_service": config.service,
                "features": len(features),
                "increasing": ",".join(config.increasing),
                "training_engine": engine.backend.describe(),
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
                "target_why": target_of.why,
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
            _feature_plots(model, test, folder)
            if isinstance(evaluation, ClassEvaluation):
                evaluation.per_class.to_csv(folder / "per_class.csv", index=False)
                evaluation.confusion.to_csv(folder / "confusion.csv")
            else:
                _plots(evaluation, folder)
                evaluation.lift.to_csv(folder / "lift.csv", index=False)
                evaluation.calibration.to_csv(folder / "calibration.csv", index=False)
                evaluation.segments.to_csv(folder / "segments.csv", index=False)
            reference = reference_sample(
                held_out, model_spec.entity_key, model, REFERENCE_ROWS, config.seed
            )
            reference.to_parquet(folder / "reference.parquet", index=False)
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
        label=target_of,
        folds=folds,
        service=(service, service_why, len(features)),
        params=params,
    )
