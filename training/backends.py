"""The training stage's backends, chosen by the profile: each factory builds one and describes it.

- MLflow tracking and registry (:func:`tracking`): a SQLite file under the home (embedded) or
  PostgreSQL (cluster), artifacts under the home on both;
- the training engine (:func:`training_engine`): LightGBM in one process (embedded), on a Dask
  cluster through ``lightgbm.dask`` (cluster, or wherever a scheduler is named).

Nothing here imports MLflow, LightGBM or Dask, so describing the backends stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from closedloop.backends import Backend, Concern
from closedloop.settings import Profile, Settings, redacted


@dataclass(frozen=True)
class Tracking:
    """Where MLflow tracks runs and registers models, and where their artifacts go."""

    uri: str
    artifacts: Path
    backend: Backend


def tracking(settings: Settings) -> Tracking:
    """The profile's MLflow tracking store and registry (one URI for both)."""
    paths = settings.paths
    if settings.profile is Profile.CLUSTER:
        dsn = settings.postgres_dsn.get_secret_value()
        uri = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        kind, where = "postgresql", redacted(dsn)
    else:
        uri = f"sqlite:///{paths.mlflow_db}"
        kind, where = "sqlite", str(paths.mlflow_db)
    backend = Backend(Concern.TRACKING, kind, f"{where}; artifacts {paths.mlflow_artifacts}")
    return Tracking(uri, paths.mlflow_artifacts, backend)


def check_reachable(settings: Settings, timeout: float = 5.0) -> None:
    """Raises psycopg.OperationalError within ``timeout`` seconds when the cluster profile's
    PostgreSQL cannot be reached (MLflow itself retries for minutes before it says so)."""
    if settings.profile is Profile.CLUSTER:
        import psycopg

        psycopg.connect(settings.postgres_dsn.get_secret_value(), connect_timeout=timeout).close()


@dataclass(frozen=True)
class TrainingEngine:
    """Where the final fit of ``closedloop train`` runs: in this process, or on a Dask cluster
    (the scheduler at ``scheduler``, else a local cluster of ``workers`` workers)."""

    backend: Backend
    on_dask: bool = False
    scheduler: str | None = None
    workers: int = 0


def training_engine(settings: Settings) -> TrainingEngine:
    """LightGBM on Dask on the cluster profile or when a scheduler is named; else one process."""
    scheduler = settings.dask_scheduler
    if scheduler is not None:
        backend = Backend(Concern.TRAINING, "lightgbm.dask", f"on the scheduler {scheduler}")
        return TrainingEngine(backend, on_dask=True, scheduler=scheduler)
    if settings.profile is Profile.CLUSTER:
        workers = settings.dask_workers
        where = f"on a local Dask cluster of {workers} workers started by the command"
        backend = Backend(Concern.TRAINING, "lightgbm.dask", where)
        return TrainingEngine(backend, on_dask=True, workers=workers)
    return TrainingEngine(Backend(Concern.TRAINING, "lightgbm", "in one process"))


def describe(settings: Settings) -> list[Backend]:
    """Every backend the training stage builds for this profile."""
    return [tracking(settings).backend, training_engine(settings).backend]
