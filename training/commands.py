"""CLI edge of the training stage: ``closedloop train`` and ``closedloop models ...``.

MLflow, LightGBM and Feast are imported inside the commands so ``closedloop --help`` stays quick.
"""

from __future__ import annotations

import json
from datetime import date

import typer
from rich.table import Table

from closedloop.models import SPECS
from closedloop.settings import Profile, Settings
from closedloop.terminal import (
    AsJson,
    UserError,
    console,
    emit_json,
    make_table,
    settings_of,
)
from training.config import TrainConfig

models_app = typer.Typer(help="Registered models: versions, aliases, manual promotion (MLflow).")


def run_train(settings: Settings, target: str, config: TrainConfig):
    from training.pipeline import train as fit_and_gate

    try:
        outcome = fit_and_gate(settings, target, config)
    except ValueError as error:
        raise UserError(f"cannot train {target}: {error}") from None
    table = Table(title=f"{target} model version {outcome.version} (test window)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in outcome.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    if outcome.search:
        console.print(
            f"Optuna: {outcome.search['tune_trials']:.0f} trials, best validation PR AUC "
            f"{outcome.search['tune_valid_pr_auc']:.4f}"
        )
    name, why, count = outcome.service
    console.print(f"features: {count} from service {name} ({why})")
    split = config.split
    shares = f"{split.train:g}/{split.valid:g}/{split.test:g}"
    if outcome.split.by == "entity":
        how = f"entity-disjoint, stratified by label, {shares} of the entities"
    else:
        how = f"by time, {shares} of the snapshot instants (later never trains)"
    console.print(f"split: {how} ({outcome.split.why})")
    section = "snapshot_lightgbm" if outcome.split.by == "entity" else "lightgbm"
    found = " found by the search" if outcome.search else f" (train_{target}.{section})"
    params = outcome.params
    console.print(
        f"lightgbm: {params.num_leaves} leaves, learning rate {params.learning_rate:g}, "
        f"{params.min_child_samples} rows a leaf at least{found}"
    )
    console.print(f"target: {outcome.label.why}")
    if outcome.folds:
        shown = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss"}
        shown |= {"macro_f1": "macro-F1"}
        figures = ", ".join(
            f"{shown[name]} {outcome.folds[f'cv_{name}_mean']:.4f} ± "
            f"{outcome.folds[f'cv_{name}_sd']:.4f}"
            for name in shown
            if f"cv_{name}_mean" in outcome.folds
        )
        console.print(f"{outcome.folds['cv_folds']:.0f}-fold test figures: {figures}")
    rows = ", ".join(f"{k} {v:,}" for k, v in outcome.rows.items())
    verdict = "[green]promoted to champion[/]" if outcome.decision.promote else "[yellow]held[/]"
    console.print(f"snapshots: {rows}; gate: {verdict}")
    for reason in outcome.decision.reasons:
        console.print(f"  - {reason}")
    metrics = settings.paths.metrics(target)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    gate = {"promoted": outcome.decision.promote, "version": int(outcome.version)}
    metrics.write_text(json.dumps({**outcome.metrics, **gate}, indent=1) + "\n")
    return outcome


@models_app.command("list")
def list_models(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Show every registered version with its aliases, test metrics and gate decision."""
    settings = settings_of(ctx)
    if settings.profile is Profile.EMBEDDED and not settings.paths.mlflow_db.exists():
        raise UserError("no registered models yet; run 'closedloop train churn' first")
    from training import registry  # MLflow: seconds to import, so after the quick checks

    registry.connect(settings)
    rows = registry.list_versions([*SPECS, "uplift", "upsell"])
    if not rows:
        raise UserError("no registered models yet; run 'closedloop train churn' first")
    if as_json:
        emit_json(rows)
        return
    metrics = list(dict.fromkeys(m for model in SPECS.values() for m in model.metrics))
    shown = make_table(
        "registered models", "model", "version", "aliases", *metrics, "gate", "created",
        keys=("model",),
    )  # fmt: skip
    for row in rows:
        shown.add_row(
            row.name,
            row.version,
            ", ".join(row.aliases) or "-",
            *(f"{row.metrics.get(f'test_{m}', float('nan')):.4f}" for m in metrics),
            row.gate,
            f"{row.created:%m-%d %H:%M}",
        )
    console.print(shown)


def champion_version(settings: Settings, name: str) -> int | None:
    """The version the champion alias names now, if any."""
    from training import registry

    registry.connect(settings)
    found = registry.champion_version(name)
    return None if found is None else int(found.version)


def run_promote(settings: Settings, name: str, version: int, why: str, by: str) -> None:
    """Override the gate: make ``version`` the champion, recording ``by`` (a principal) and why
    on the version (the CLI checks the principal's role and writes the audit row)."""
    from mlflow.exceptions import MlflowException

    from training import registry

    registry.connect(settings)
    try:
        registry.promote_by_hand(name, str(version), why, by)
    except MlflowException:
        raise UserError(f"{name} has no version {version}") from None
    console.print(f"{name} version {version} is now the champion ({why}), by {by}")


def run_hold(settings: Settings, name: str, hold):
    """Hold ``name``'s champion (a :class:`training.registry.Hold`) or release it (None); the
    hold it replaced, if any (the CLI checks the principal's role and writes the audit row)."""
    from mlflow.exceptions import MlflowException

    from training import registry

    registry.connect(settings)
    before = registry.hold_of(name)
    if hold is not None and registry.champion_version(name) is None:
        raise UserError(f"{name} has no champion to hold")
    try:
        registry.set_hold(name, hold)
    except MlflowException:
        raise UserError(f"{name} is not a registered model") from None
    return before


def hold_of(settings: Settings, name: str):
    """The hold on ``name``'s champion, None if none."""
    from training import registry

    registry.connect(settings)
    return registry.hold_of(name)


def _world_before(settings: Settings, before: date | None):
    """(this home's world config, the day ``before`` names; default: the last 30 days left
    out)."""
    from closedloop.world.store import read_config

    try:
        world = read_config(settings.world_dir)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    day = world.days - 30 if before is None else (before - world.start).days
    if not 0 < day <= world.days:
        raise UserError(f"--before {before} lies outside the world ({world.start}, {world.days} d)")
    return world, day


def run_train_uplift(settings: Settings, before: date | None, learner: str = "r"):
    """Learn the uplift models from randomised trials on this home's world before ``before``
    (default: the world's last 30 days), register and gate them."""
    from closedloop.world.simulate import simulate_truth
    from training.uplift import UpliftConfig, train_uplift

    config = UpliftConfig(learner=learner)
    world, day = _world_before(settings, before)
    try:
        outcome = train_uplift(settings, simulate_truth(world), day, config)
    except ValueError as error:
        raise UserError(f"cannot train uplift: {error}") from None
    table = Table(title=f"uplift model version {outcome.version} (held-out trial)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in outcome.metrics.items():
        table.add_row(name, f"{value:.5f}")
    console.print(table)
    verdict = "[green]promoted to champion[/]" if outcome.decision.promote else "[yellow]held[/]"
    console.print(f"trial rows: {outcome.rows:,}; gate: {verdict}")
    for reason in outcome.decision.reasons:
        console.print(f"  - {reason}")
    return outcome


def uplift_models(settings: Settings, truth, start: int):
    """(uplift model, where it came from) for a backtest from day ``start``: the registered
    champion when it learned from this world before that day, else one fitted here on the
    trials before it (fewer than configured when the world's days before it hold fewer)."""
    from mlflow import MlflowClient

    from training import registry
    from training.uplift import (
        LEARNER_NAMES,
        NAME,
        UpliftConfig,
        fit_uplift,
        load_champion,
        trial_logs,
    )

    registry.connect(settings)
    found = registry.champion_version(NAME)
    if found is not None:
        params = MlflowClient().get_run(found.run_id).data.params
        same_world = params.get("world_seed") == str(truth.config.seed)
        if same_world and int(params["before_day"]) <= start:
            champion = load_champion()
            if champion is not None:
                learner = LEARNER_NAMES[champion[1].learner]
                return champion[1], f"uplift champion version {champion[0]} ({learner})"
    config = UpliftConfig()
    room = (start - config.horizon_days - 1) // config.trial_every_days  # trials that fit
    if 1 <= room < config.trials:  # a short world: fewer trials rather than none
        config = config.model_copy(update={"trials": room})
    learn, _ = trial_logs(truth, start, config)
    learner = LEARNER_NAMES[config.learner]
    return (
        fit_uplift(learn, config),
        f"uplift {learner} fitted on the trials before the window ({config.trials}; no usable "
        "champion)",
    )


def run_train_upsell(settings: Settings, before: date | None):
    """Learn the upsell model from the upgrade offers logged on this home's world before
    ``before`` (default: the world's last 30 days), register and gate it."""
    from closedloop.world.simulate import simulate_truth
    from training.upsell import UpsellConfig, train_upsell

    world, day = _world_before(settings, before)
    try:
        outcome = train_upsell(settings, simulate_truth(world), day, UpsellConfig())
    except ValueError as error:
        raise UserError(f"cannot train upsell: {error}") from None
    table = Table(title=f"upsell model version {outcome.version} (held-out offers)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in outcome.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    verdict = "[green]promoted to champion[/]" if outcome.decision.promote else "[yellow]held[/]"
    console.print(f"logged offers: {outcome.rows:,}; gate: {verdict}")
    for reason in outcome.decision.reasons:
        console.print(f"  - {reason}")
    return outcome


def upsell_model(settings: Settings, truth, start: int):
    """(upsell model, where it came from) for a backtest from day ``start``: the registered
    champion when it learned from this world before that day, else one fitted here on the
    offers logged before it."""
    from mlflow import MlflowClient

    from training import registry
    from training.upsell import NAME, UpsellConfig, fit_upsell, load_champion, offer_logs

    registry.connect(settings)
    found = registry.champion_version(NAME)
    if found is not None:
        params = MlflowClient().get_run(found.run_id).data.params
        same_world = params.get("world_seed") == str(truth.config.seed)
        if same_world and int(params["before_day"]) <= start:
            champion = load_champion()
            if champion is not None:
                return champion[1], f"upsell champion version {champion[0]}"
    config = UpsellConfig()
    room = (start - 2) // config.offer_every_days  # offer days that fit before the held-out one
    if 1 <= room < config.offer_days:  # a short world: fewer offer days rather than none
        config = config.model_copy(update={"offer_days": room})
    learn, _ = offer_logs(truth, start, config)
    return (
        fit_upsell(learn, config),
        f"upsell fitted on the offers logged before the window ({config.offer_days} days; no "
        "usable champion)",
    )
