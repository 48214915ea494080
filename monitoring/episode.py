"""A drift episode end to end, for the demo and the tests.

A 200-cell world whose aurora cells take a firmware update on day 21 that reports latency and
packet loss in new units (×10). The fault champion is trained on what was known before the
update. Weekly windows of its predictions are batch-scored into the log and monitored: the calm
week before the update raises nothing; two weeks after it the features have drifted, the
champion's precision has fallen on the matured labels, the trigger fires and the model is
retrained through the gate on what is known by then. Last, the first champion and the champion
at the end are compared on the days after the last run, which neither has trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from closedloop.settings import Profile, Settings, in_schema
from closedloop.world.config import Band, Drift, FirmwareUpdate, WorldConfig
from monitoring.config import MonitorConfig, PerformancePolicy
from monitoring.pipeline import load_champion, monitor, score_window
from monitoring.summary import MonitorSummary
from training import registry
from training.config import GateConfig, LightGBMParams, fault_defaults
from training.evaluate import evaluate
from training.pipeline import train, training_set

DRIFT_DAY = 21
WORLD = WorldConfig(
    customers=2_000,
    days=49,
    seed=11,
    customers_per_cell=10,
    incident_rate=0.08,
    incident_band=Band(low=0.05, high=0.12),
    drift=Drift(
        firmware=FirmwareUpdate(vendor="aurora", day=DRIFT_DAY, latency_factor=10, loss_factor=10)
    ),
)
# a third of faults strike without warning, so ROC AUC stays near 0.6 on 100 cells; the bar
# that matters for a top-k action budget is PR AUC over the base rate, kept at 1.5x
TRAINING = fault_defaults().model_copy(
    update={
        "lightgbm": LightGBMParams(num_boost_round=200, early_stopping_rounds=20),
        "gate": GateConfig(min_roc_auc=0.5),
    }
)
# a week of 200 cells holds a few dozen faults: PR AUC is noisy, so the floor is lower
MONITOR = MonitorConfig(window_days=7, persistence=2, performance=PerformancePolicy(min_ratio=0.6))
WEEKS = (3, 5)  # monitoring runs at the end of these weeks: the calm one before, one after
SCHEMA = "drift_episode"  # the episode's PostgreSQL schema on the cluster profile


@dataclass(frozen=True)
class Episode:
    runs: list[MonitorSummary]
    first_version: str
    final_version: str
    holdout: str  # the window both champions are compared on
    pr_auc_first: float
    pr_auc_final: float


def episode_settings(settings: Settings) -> Settings:
    """The episode's settings: a home of its own under ``settings``' home and, on the cluster
    profile, a PostgreSQL schema of its own for MLflow and the Feast registry, so its world's
    models and feature views never meet the champions and views of the home's world on the
    shared servers (the episode writes nothing to Redis nor to the ledger)."""
    update: dict[str, object] = {"home": settings.paths.drift_episode.root}
    if settings.profile is Profile.CLUSTER:
        dsn = in_schema(settings.postgres_dsn.get_secret_value(), SCHEMA)
        update["postgres_dsn"] = SecretStr(dsn)
    return settings.model_copy(update=update)


def prepare(settings: Settings, world: WorldConfig = WORLD) -> None:
    """Generate, ingest, build and apply the episode's world in the settings' home."""
    from closedloop.world.simulate import simulate
    from closedloop.world.store import write_world
    from features.ingest import ingest_world
    from features.pipeline import apply_repository, build_features

    if settings.profile is Profile.CLUSTER:
        import psycopg

        with psycopg.connect(settings.postgres_dsn.get_secret_value(), autocommit=True) as db:
            db.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    home = settings.home
    end = datetime.combine(world.start, datetime.min.time(), UTC) + timedelta(days=world.days)
    write_world(simulate(world), settings.paths.world)
    ingest_world(settings.paths.world, home, end)
    build_features(home, end)
    apply_repository(settings)


def run(
    settings: Settings,
    world: WorldConfig = WORLD,
    on_run: Callable[[MonitorSummary], None] = lambda _: None,
) -> Episode:
    """Train before the drift, then score and monitor week by week; compare at the end."""
    start = datetime.combine(world.start, datetime.min.time(), UTC)
    first = train(settings, "fault", TRAINING, until=start + timedelta(days=DRIFT_DAY))
    runs = []
    for week in WEEKS:
        end = start + timedelta(weeks=week)
        score_window(settings, "fault", end - timedelta(days=MONITOR.window_days), end)
        summary = monitor(settings, "fault", MONITOR, end, TRAINING)
        on_run(summary)
        runs.append(summary)

    final = load_champion(settings, "fault")
    holdout_start = start + timedelta(weeks=WEEKS[-1])
    data = training_set(settings, "fault", TRAINING)
    held = data[data.event_timestamp >= holdout_start]
    labels = held["label"].to_numpy()
    scores = {
        version: registry.load_version(registry.model_version("fault", version)).model.score(held)
        for version in {first.version, final.version}
    }
    budget = TRAINING.action_budget
    return Episode(
        runs=runs,
        first_version=first.version,
        final_version=final.version,
        holdout=f"{holdout_start:%Y-%m-%d} .. {held.event_timestamp.max():%Y-%m-%d %H:%M}",
        pr_auc_first=evaluate(labels, scores[first.version], budget).metrics["pr_auc"],
        pr_auc_final=evaluate(labels, scores[final.version], budget).metrics["pr_auc"],
    )
