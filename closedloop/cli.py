"""The ``closedloop`` command: the one entry point that loads settings and drives every stage."""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from actions import commands as action_commands
from actions import key_commands
from actions.policy import load_policy
from closedloop import __version__
from closedloop.access import Permission, Role
from closedloop.backends import Backend
from closedloop.models import SPECS, ModelName
from closedloop.openmp import spin_briefly
from closedloop.params import load_params
from closedloop.quiet import quiet_libraries
from closedloop.settings import Profile, Settings, redact_logs
from closedloop.terminal import (
    PRINCIPAL,
    AsJson,
    UserError,
    console,
    describe_validation,
    emit_json,
    err_console,
    known_failure,
    principal_of,
    settings_of,
)
from closedloop.world import schemas
from closedloop.world.config import Dirt, WorldConfig
from closedloop.world.simulate import STEPS, World, WorldSummary, simulate
from closedloop.world.store import read_summary, write_world
from features import commands as feature_commands
from monitoring import commands as monitoring_commands
from monitoring.summary import owner_alert
from serving import commands as serving_commands
from training import commands as training_commands


def in_process_scores(settings: Settings):
    """The action layer's scores from this home's champions, loaded in this process (serving's
    scorer; imported when a command scores, not at start)."""
    from serving.actions_bridge import in_process_scores as open_scores

    return open_scores(settings)


def backtest_estimates(settings: Settings, truth, start: int):
    """Churn scores and uplift at a backtest window's start, from the uplift model (its
    control model is the churn score of an untreated customer), and the expected MRR gain of
    an upgrade offer, from the upsell model."""
    from actions.backtest import Estimates
    from closedloop.world.upgrade import upsell_observed

    model, source = training_commands.uplift_models(settings, truth, start)
    upsell, upsell_source = training_commands.upsell_model(settings, truth, start)
    features = upsell_observed(truth, start)
    estimates = Estimates(
        churn=model.churn(features),
        uplift=model.uplift(features),
        upsell=upsell.expected_gain(features),
    )
    return estimates, f"{source}; {upsell_source}"


app = typer.Typer(
    help="closedloop: telemetry and revenue signals in, scored and governed actions out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
world_app = typer.Typer(
    help="Generate and inspect the synthetic telco world.", no_args_is_help=True
)
app.add_typer(world_app, name="world")
app.add_typer(feature_commands.features_app, name="features", no_args_is_help=True)
app.command("ingest")(feature_commands.ingest)
app.command("import-csv")(feature_commands.import_csv)
app.add_typer(training_commands.models_app, name="models", no_args_is_help=True)
app.command("serve")(serving_commands.serve)
action_commands.policy_app.command("backtest")(action_commands.backtest_command(backtest_estimates))
app.add_typer(action_commands.policy_app, name="policy")
app.command("replay")(action_commands.replay_command(in_process_scores))
app.command("consume")(action_commands.consume_command(in_process_scores))
app.add_typer(action_commands.actions_app, name="actions")
app.add_typer(action_commands.audit_app, name="audit")
app.add_typer(action_commands.events_app, name="events")
app.add_typer(key_commands.keys_app, name="keys")
app.command("monitor-score")(monitoring_commands.monitor_score)
app.command("monitor-history")(monitoring_commands.monitor_history)


@app.callback()
def _load_settings(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="Folder for all state [env CLOSEDLOOP_HOME; default ./var]")
    ] = None,
    profile: Annotated[
        Profile | None, typer.Option(help="Backends to use [env CLOSEDLOOP_PROFILE]")
    ] = None,
) -> None:
    overrides = {k: v for k, v in {"home": home, "profile": profile}.items() if v is not None}
    try:
        ctx.obj = Settings(**overrides)
    except ValidationError as error:
        raise UserError(
            f"invalid settings (CLOSEDLOOP_* environment): {describe_validation(error)}"
        ) from None
    redact_logs(ctx.obj)
    quiet_libraries()
    ctx.meta[PRINCIPAL] = _principal_resolver(ctx.obj)


def _principal_resolver(settings: Settings):
    """Who the command acts as, resolved when a command first asks (a key is checked against
    the store then, so commands that change nothing never open it)."""
    resolved = []

    def resolve():
        from actions.keys import cli_principal

        if not resolved:
            try:
                resolved.append(cli_principal(settings, datetime.now(UTC)))
            except ValueError as error:
                raise UserError(str(error)) from None
        return resolved[0]

    return resolve


@app.command()
def version() -> None:
    """Print the closedloop version."""
    console.print(__version__)


ParamsFile = Annotated[
    Path | None,
    typer.Option(help="params.yaml: its world, train_<model> and monitor sections set defaults"),
]


@app.command("train")
def train(
    ctx: typer.Context,
    target: Annotated[ModelName, typer.Argument(help="Which model to train")],
    params: ParamsFile = None,
    trials: Annotated[
        int | None,
        typer.Option(min=0, help="Optuna trials before the final fit (overrides tune.trials)"),
    ] = None,
) -> None:
    """Train on point-in-time training sets, log to MLflow, register, and gate the champion
    (role data_scientist or admin)."""
    by = principal_of(ctx, Permission.TRAIN)
    config = load_params(params).train(target.value)
    if trials is not None:
        config = config.model_copy(
            update={"tune": config.tune.model_copy(update={"trials": trials})}
        )
    settings = settings_of(ctx)
    outcome = training_commands.run_train(settings, target.value, config)
    action_commands.record_change(
        settings, "training", by,
        {"model": target.value, "version": outcome.version,
         "promoted": outcome.decision.promote, "reasons": outcome.decision.reasons},
        f"model:{target.value}",
    )  # fmt: skip


@training_commands.models_app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[ModelName, typer.Argument(help="Registered model")],
    version: Annotated[int, typer.Argument(help="Version to make champion")],
    why: Annotated[str, typer.Option(help="Reason, recorded on the version and in the audit")],
) -> None:
    """Override the gate: make VERSION the champion, recorded with your principal and why. A
    newer version than the champion's (a challenger) takes a data_scientist, an older one (a
    rollback) a model_owner; an admin may do both."""
    settings = settings_of(ctx)
    champion = training_commands.champion_version(settings, name.value)
    rollback = champion is not None and version < champion
    by = principal_of(ctx, Permission.ROLLBACK if rollback else Permission.PROMOTE)
    hold = training_commands.hold_of(settings, name.value)
    if hold is not None and not rollback:
        raise UserError(
            f"{name.value}'s champion is held by {hold.by} ({hold.why}): a model_owner may roll "
            f"it back, or release it ('closedloop models release {name.value}') first"
        )
    training_commands.run_promote(settings, name.value, version, why, by.label)
    action_commands.record_change(
        settings, "promotion", by,
        {"model": name.value, "version": version, "previous": champion,
         "rollback": rollback, "why": why},
        f"model:{name.value}",
    )  # fmt: skip


@training_commands.models_app.command("hold")
def hold(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model (churn, fault, uplift)")],
    why: Annotated[str, typer.Option(help="Reason, recorded on the model and in the audit")],
) -> None:
    """Hold NAME's champion: no training run or monitoring retrain promotes a challenger (nor
    may one be promoted by hand) until it is released; a rollback is still allowed (role
    model_owner or admin)."""
    from training.registry import Hold

    by = principal_of(ctx, Permission.HOLD)
    settings = settings_of(ctx)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    training_commands.run_hold(settings, name, Hold(by.label, why, at))
    action_commands.record_change(
        settings, "hold", by, {"model": name, "held": True, "why": why}, f"model:{name}"
    )
    console.print(f"{name}'s champion is held by {by.label} ({why})")


@training_commands.models_app.command("release")
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model (churn, fault, uplift)")],
    why: Annotated[str, typer.Option(help="Reason, recorded in the audit")],
) -> None:
    """Release the hold on NAME's champion: the gate may promote challengers again (role
    model_owner or admin)."""
    by = principal_of(ctx, Permission.HOLD)
    settings = settings_of(ctx)
    before = training_commands.run_hold(settings, name, None)
    if before is None:
        raise UserError(f"{name}'s champion is not held")
    action_commands.record_change(
        settings, "hold", by,
        {"model": name, "held": False, "why": why, "held_by": before.by}, f"model:{name}",
    )  # fmt: skip
    console.print(f"{name}'s champion is released by {by.label} ({why}); held by {before.by}")


class UpliftLearner(StrEnum):
    R = "r"
    T = "t"
    X = "x"


@app.command("train-uplift")
def train_uplift(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(
            help="Learn from outcomes before this day, YYYY-MM-DD [default: the "
            "world's last 30 days are left out]"
        ),
    ] = None,
    learner: Annotated[
        UpliftLearner, typer.Option(help="r: ratio learner; t: T-learner; x: X-learner")
    ] = UpliftLearner.R,
) -> None:
    """Learn uplift models (credit, message, offer) from randomised trials on the world, log
    Qini and AUUC on a held-out trial to MLflow, register as 'uplift', gate the champion."""
    try:
        day = None if before is None else date.fromisoformat(before)
    except ValueError:
        raise UserError(f"--before {before!r} is not a date (YYYY-MM-DD)") from None
    training_commands.run_train_uplift(settings_of(ctx), day, learner.value)


@app.command("train-upsell")
def train_upsell(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(
            help="Learn from offers made before this day, YYYY-MM-DD [default: the world's "
            "last 30 days are left out]"
        ),
    ] = None,
) -> None:
    """Learn the upsell model (who accepts an upgrade offer) from the offers logged on the
    world, log ROC AUC on a held-out day's offers to MLflow, register as 'upsell', gate the
    champion."""
    try:
        day = None if before is None else date.fromisoformat(before)
    except ValueError:
        raise UserError(f"--before {before!r} is not a date (YYYY-MM-DD)") from None
    training_commands.run_train_upsell(settings_of(ctx), day)


@app.command("monitor")
def monitor(
    ctx: typer.Context,
    target: Annotated[ModelName, typer.Argument(help="Which model to monitor")],
    end: Annotated[
        datetime | None,
        typer.Option(help="End of the current window (UTC) [default: the world's end]"),
    ] = None,
    params: ParamsFile = None,
    retrain: Annotated[
        bool, typer.Option("--retrain/--no-retrain", help="Retrain when the policy says so")
    ] = True,
) -> None:
    """Drift, data quality and matured-label performance of the champion; retrain on a breach
    (role model_owner or admin)."""
    by = principal_of(ctx, Permission.MONITOR)
    settings = settings_of(ctx)
    loaded = load_params(params)
    summary = monitoring_commands.run_monitor(
        settings,
        target.value,
        loaded.monitor,
        monitoring_commands.window_end(end, settings),
        loaded.train(target.value) if retrain else None,
    )
    alert = owner_alert(summary, SPECS[target].owner)
    if alert is not None:
        action_commands.tell_owner(settings, alert, by)


def profile_backends(settings: Settings) -> list[Backend]:
    """What each stage's factories build for this profile, in the order of the loop."""
    from actions.backends import describe as action_backends
    from features.backends import describe as feature_backends
    from training.backends import describe as training_backends

    return [*feature_backends(settings), *training_backends(settings), *action_backends(settings)]


@app.command("settings")
def show_settings(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Show the profile and the backend each factory builds for it."""
    settings = settings_of(ctx)
    backends = profile_backends(settings)
    if as_json:
        described = {
            "profile": settings.profile.value,
            "home": str(settings.paths.root),
            "backends": [
                {"concern": b.concern.value, "kind": b.kind, "where": b.where, "wired": b.wired}
                for b in backends
            ],
        }
        emit_json(described)
        return
    home = escape(str(settings.paths.root))
    console.print(f"[bold]profile[/] {settings.profile.value}   [bold]home[/] {home}")
    width = max(len(b.concern.value) for b in backends)
    for backend in backends:
        shown = escape(backend.describe())
        line = (
            f"{backend.concern.value:<{width}}  {shown if backend.wired else f'[yellow]{shown}[/]'}"
        )
        console.print(line, soft_wrap=True)


def _generate(config: WorldConfig, folder: Path) -> World:
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"simulating {STEPS[0]}", total=len(STEPS) + 1)

        def advance(step: str) -> None:
            following = STEPS.index(step) + 1
            upcoming = f"simulating {STEPS[following]}" if following < len(STEPS) else "writing"
            progress.update(task, advance=1, description=upcoming)

        world = simulate(config, advance)
        write_world(world, folder)
        progress.update(task, advance=1)
    return world


def _print_summary(summary: WorldSummary, folder: Path) -> None:
    console.print(
        f"[bold]world[/] {folder}: {summary.customers:,} customers, {summary.cells:,} cells, "
        f"{summary.days} days"
    )
    rows = Table(title="rows written")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in summary.rows.items():
        rows.add_row(name, f"{count:,}")
    console.print(rows)
    labels = Table(title="labels")
    labels.add_column("what")
    labels.add_column("value", justify="right")
    labels.add_row("churned", f"{summary.churned:,}")
    labels.add_row("churn per 30 days", f"{summary.churn_rate_30d:.2%}")
    labels.add_row("incidents per cell-day", f"{summary.incident_rate_per_cell_day:.4f}")
    for kind, count in summary.incidents.items():
        labels.add_row(f"incidents: {kind}", f"{count:,}")
    for kind, count in summary.events.items():
        labels.add_row(f"events: {kind}", f"{count:,}")
    console.print(labels)
    dirt = Table(title="dirt injected into raw telemetry")
    dirt.add_column("records")
    vendors = list(summary.dirt)
    for vendor in vendors:
        dirt.add_column(vendor, justify="right")
    for kind in sorted({k for counts in summary.dirt.values() for k in counts}):
        row = (f"{summary.dirt[v].get(kind, 0):,}" for v in vendors)
        dirt.add_row(kind.replace("_", " "), *row)
    console.print(dirt)


@world_app.command("generate")
def world_generate(
    ctx: typer.Context,
    customers: Annotated[int | None, typer.Option(help="Customers (default 10000)")] = None,
    days: Annotated[int | None, typer.Option(help="Days simulated (default 90)")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42)")] = None,
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default 2026-01-01)")
    ] = None,
    interval_minutes: Annotated[
        int | None, typer.Option(help="Telemetry reporting period (default 15)")
    ] = None,
    clean: Annotated[bool, typer.Option(help="Write raw data without any dirt")] = False,
    params: Annotated[
        Path | None, typer.Option(help="YAML file whose 'world' section sets the defaults")
    ] = None,
) -> None:
    """Generate a synthetic telco world into HOME/world and print its summary."""
    if start is not None:
        try:
            date.fromisoformat(start)
        except ValueError:
            raise UserError(f"--start must be a date as YYYY-MM-DD, not {start!r}") from None
    options = {
        "customers": customers,
        "days": days,
        "seed": seed,
        "start": start,
        "interval_minutes": interval_minutes,
        "dirt": Dirt.clean() if clean else None,
    }
    world = load_params(params).world.model_dump()
    config = WorldConfig(**{**world, **{k: v for k, v in options.items() if v is not None}})
    folder = settings_of(ctx).world_dir
    _print_summary(_generate(config, folder).summary, folder)


@world_app.command("summary")
def world_summary(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Print the summary of the world in HOME/world."""
    folder = settings_of(ctx).world_dir
    if not (folder / schemas.MANIFEST_PATH).is_file():
        raise UserError(f"no world in {folder}; run 'closedloop world generate' first")
    if as_json:
        emit_json(read_summary(folder))
        return
    _print_summary(read_summary(folder), folder)


@world_app.command("schema")
def world_schema(
    table: Annotated[str | None, typer.Argument(help="One table; all when omitted")] = None,
    as_json: AsJson = False,
) -> None:
    """Print the documented schema of the world's tables."""
    specs = {spec.name: spec for spec in schemas.TABLES}
    if table is not None and table not in specs:
        raise UserError(f"unknown table {table!r}; choose from {', '.join(specs)}")
    chosen = [specs[table]] if table else list(specs.values())
    if as_json:
        emit_json([_schema_of(spec) for spec in chosen])
        return
    for spec in chosen:
        out = Table(title=f"{spec.name}  ({spec.path})", caption=spec.description)
        out.add_column("column")
        out.add_column("type")
        out.add_column("description")
        for f in spec.schema:
            out.add_row(f.name, str(f.type) + ("" if not f.nullable else "?"), _described(f))
        console.print(out)


def _described(field) -> str:
    return (field.metadata or {}).get(b"description", b"").decode()


def _schema_of(spec: schemas.TableSpec) -> dict:
    """One table's documented schema as plain values."""
    return {
        "table": spec.name, "path": str(spec.path), "description": spec.description,
        "columns": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable,
             "description": _described(f)}
            for f in spec.schema
        ],
    }  # fmt: skip


DEMO_CUSTOMERS = 5_000
DEMO_DAYS = 60
DEMO_MIN_DAYS = 45
STAGE_6 = "policy, guards, approvals, ledger, audit"


@app.command()
def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="Customers in the demo world")] = DEMO_CUSTOMERS,
    days: Annotated[int, typer.Option(help="Days in the demo world")] = DEMO_DAYS,
    seed: Annotated[int, typer.Option(help="Random seed")] = 42,
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--no-serve",
            help="Serve the console at the end until Ctrl-C [default: when run in a terminal]",
        ),
    ] = None,
) -> None:
    """Run the whole loop on a small world (world, ingest, features, training, service, two
    days of events with a major outage, actions, monitoring and a drift episode, the policy
    backtest), summarise it, then serve the ops console on its home until Ctrl-C."""
    if days < DEMO_MIN_DAYS:
        raise UserError(
            f"--days {days} is too short: the demo trains a churn model with a 30-day horizon, "
            f"use {DEMO_MIN_DAYS} or more"
        )
    settings = settings_of(ctx)
    began = time.monotonic()
    console.rule(f"closedloop demo — profile {settings.profile.value}, home {settings.home}")
    console.rule("1. world", style="dim")
    folder = settings.world_dir
    config = WorldConfig(customers=customers, days=days, seed=seed)
    world = _generate(config, folder)
    _print_summary(world.summary, folder)

    console.rule("2. ingest: normalise, validate, quarantine", style="dim")
    end = feature_commands.world_end(settings)
    feature_commands.run_ingest(settings, end)
    console.rule("3. features: build, apply, materialise, look up", style="dim")
    feature_commands.run_build(settings, end)
    feature_commands.run_apply(settings)
    feature_commands.run_materialize(settings, end - timedelta(days=days + 1), end)
    customers, cells = _demo_targets(world)
    feature_commands.run_lookup(settings, "churn_v1", customers[0], end)

    console.rule("4. training: LightGBM, MLflow registry, champion gate", style="dim")
    for target in SPECS:
        training_commands.run_train(settings, target, load_params(None).train(target))

    console.rule("5. serving: BentoML service, online features, scores with reasons", style="dim")
    by = principal_of(ctx, Permission.MANAGE_KEYS)
    key_id, token, _ = key_commands.make_key(settings, f"demo {by.name}", Role.ADMIN, "1d", by)
    console.print(
        f"API key {key_id} for the local admin (role admin, 1 day), for the service's "
        f"'Authorization: Bearer' header, CLOSEDLOOP_API_KEY or the console's sign-in:\n{token}"
    )
    in_world_time = settings.model_copy(update={"clock_start": end})
    streamed = settings.profile is Profile.CLUSTER  # POST /events appends to the Redis stream
    service = serving_commands.start_demo_service(in_world_time)
    try:
        serving_commands.run_demo_scoring(service.url, customers, cells, token)
        if streamed:  # the service takes the events, a consumer decides them
            console.rule(f"6. actions: {STAGE_6}, through the event stream", style="dim")
            action_commands.run_demo_stream(
                in_world_time, service.url, token, end, cells, in_process_scores
            )
    finally:
        serving_commands.stop_demo_service(in_world_time, service)
    if not streamed:  # the events replayed from a file, decided in this process
        console.rule(f"6. actions: {STAGE_6}", style="dim")
        action_commands.run_demo_actions(in_world_time, end, cells, in_process_scores)

    console.rule("7. monitoring: drift episode, Evidently reports, gated retrain", style="dim")
    monitoring_commands.run_episode(settings)

    console.rule("8. value: the policy backtested against the world's ground truth", style="dim")
    window = _backtest_window(config)
    policy = load_policy(settings.action_policy)
    result, source = action_commands.run_backtest(
        settings, policy, window, None, backtest_estimates
    )
    action_commands.print_backtest(result, source)

    console.rule("summary", style="dim")
    action_commands.print_loop_summary(settings)
    console.print(f"the demo took {time.monotonic() - began:,.0f} s")
    url = f"http://{settings.serve_host}:{settings.serve_port}/console/"
    _where_to_look(settings, url, token)
    if serve is None:  # a person at a terminal gets the console; a script or CI does not
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    if serve:
        serving_commands.serve_until_interrupted(in_world_time, url)


def _backtest_window(config: WorldConfig) -> str:
    """The demo's backtest window: the world's last 15 days, or fewer where the uplift trials
    before it (one to learn from, one held out, 30-day outcomes) need the room."""
    from training.uplift import UpliftConfig

    uplift = UpliftConfig()
    earliest = uplift.horizon_days + uplift.trial_every_days + 1
    first = config.start + timedelta(days=max(config.days - 15, earliest))
    return f"{first}..{config.start + timedelta(days=config.days - 1)}"


def _where_to_look(settings: Settings, url: str, token: str) -> None:
    """The demo's last words: where each kind of user looks next."""
    from training.registry import point_at

    console.rule("where to look next", style="dim")
    home = f"CLOSEDLOOP_HOME={settings.home}"
    console.print(f"ops console:  {url}  (sign in with the admin key {token})")
    console.print(f"              later: {home} closedloop console")
    console.print(f"experiments:  mlflow ui --backend-store-uri {point_at(settings)}")
    episode = settings.paths.drift_episode.evidently_workspace
    console.print(f"drift:        evidently ui --workspace {episode}")


@app.command("console")
def console_command(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: CLOSEDLOOP_SERVE_PORT)")] = None,
) -> None:
    """Serve the ops console (and the API) on this home until interrupted; a home holding a
    simulated world runs on the world's clock, as the demo did."""
    settings = settings_of(ctx)
    has_world = (settings.world_dir / schemas.MANIFEST_PATH).is_file()
    clock_start = feature_commands.world_end(settings) if has_world else None
    serving_commands.serve(ctx, port, clock_start)


def _demo_targets(world: World) -> tuple[list[str], list[str]]:
    """The five most valuable customers still active, and the three cells that serve the most
    valuable ones."""
    customers = world.tables["customers"].to_pandas()
    stayed = world.tables["churn"].to_pandas().query("not churned").customer_id
    ranked = customers[customers.customer_id.isin(stayed)].sort_values("mrr", ascending=False)
    return ranked.customer_id.head(5).tolist(), ranked.cell_id.drop_duplicates().head(3).tolist()


def main() -> None:
    """Console entry point: user mistakes, and failures a user meets (a server down, a busy
    database), become one red line naming the fix and exit code 2."""
    spin_briefly()
    try:
        app()
    except ValidationError as error:
        err_console.print(f"[red]error:[/] {describe_validation(error)}")
        sys.exit(2)
    except UserError as error:
        err_console.print(f"[red]error:[/] {error}")
        sys.exit(2)
    except Exception as error:
        message = known_failure(error)
        if message is None:
            raise
        err_console.print(f"[red]error:[/] {escape(message)}")
        sys.exit(2)
