"""Every path under the home folder, named once.

All state of a run lives under one folder (``CLOSEDLOOP_HOME``, default ``./var``); stages ask a
:class:`Home` for their paths instead of joining strings, so the layout is written here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    """The home folder of a run and the place of each kind of state in it."""

    root: Path

    @classmethod
    def at(cls, folder: Path) -> Home:
        return cls(folder.resolve())

    # sources and the feature store

    @property
    def world(self) -> Path:
        """The synthetic world's raw tables (one source among others)."""
        return self.root / "world"

    @property
    def offline(self) -> Path:
        """Canonical tables, one Parquet file per source: ``offline/<table>/<source>.parquet``."""
        return self.root / "offline"

    @property
    def quarantine(self) -> Path:
        """Rejected rows with their reasons: ``quarantine/<table>/<source>.parquet``."""
        return self.root / "quarantine"

    def offline_table(self, table: str) -> Path:
        """One canonical table: a Parquet file per source."""
        return self.offline / table

    def quarantine_table(self, table: str) -> Path:
        """One canonical table's rejected rows: a Parquet file per source."""
        return self.quarantine / table

    @property
    def ingest_reports(self) -> Path:
        """What the last ingestion of each source did: ``<source>.json``."""
        return self.offline / "_reports"

    @property
    def features(self) -> Path:
        """Windowed feature tables built from the canonical tables."""
        return self.root / "features"

    @property
    def customer_daily(self) -> Path:
        """Daily customer features, the source of the customer views."""
        return self.features / "customer_daily.parquet"

    @property
    def cell_hourly(self) -> Path:
        """Hourly cell health, the source of the cell_health view."""
        return self.features / "cell_hourly.parquet"

    @property
    def feast(self) -> Path:
        """The Feast repository: feature_store.yaml, registry, the embedded online store."""
        return self.root / "feast"

    @property
    def feast_yaml(self) -> Path:
        """The store's configuration for this profile, so the stock ``feast`` CLI works."""
        return self.feast / "feature_store.yaml"

    @property
    def feast_registry(self) -> Path:
        """The embedded profile's Feast registry."""
        return self.feast / "registry.db"

    @property
    def online_db(self) -> Path:
        """The embedded profile's SQLite online store."""
        return self.feast / "online.db"

    @property
    def online_layout(self) -> Path:
        """How each feature service's rows are laid out in the online store."""
        return self.feast / "online_layout.json"

    # training and serving

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        """The embedded profile's MLflow tracking and registry database."""
        return self.mlflow / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow / "artifacts"

    def metrics(self, target: str) -> Path:
        """Test metrics of the last training run of a model, for ``dvc metrics``."""
        return self.root / "metrics" / f"train_{target}.json"

    @property
    def model_cache(self) -> Path:
        """Last known good champions on disk, served when the registry is down."""
        return self.root / "serving" / "models"

    @property
    def compiled_models(self) -> Path:
        """Forests compiled to native code for batch rescoring, one folder per model and CPU."""
        return self.root / "compiled"

    def service_log(self, port: int) -> Path:
        return self.root / "serving" / f"service-{port}.log"

    def service_bentoml_home(self, port: int) -> Path:
        """BentoML's own home for the service on ``port``: BentoML empties its Prometheus folder
        there whenever a service starts, so two services never share one."""
        return self.root / "serving" / f"bentoml-{port}"

    @property
    def prediction_logs(self) -> Path:
        """The prediction log of every model."""
        return self.root / "predictions"

    def predictions(self, model: str) -> Path:
        """The prediction log of a model, one Parquet file per flush."""
        return self.prediction_logs / model

    # monitoring

    def monitoring(self, model: str) -> Path:
        """Monitoring runs of a model: ``monitoring/<model>/<run>/``."""
        return self.root / "monitoring" / model

    @property
    def evidently_workspace(self) -> Path:
        return self.root / "monitoring" / "workspace"

    @property
    def drift_episode(self) -> Home:
        """The demo's drift episode runs in a home of its own."""
        return Home(self.root / "drift-episode")

    # actions

    @property
    def ledger_db(self) -> Path:
        """The embedded profile's action ledger and audit trail."""
        return self.root / "ledger.db"

    @property
    def audit_key(self) -> Path:
        """The embedded profile's generated audit key (mode 0600), when none is set."""
        return self.root / "secrets" / "audit.key"

    @property
    def audit_head(self) -> Path:
        """The audit trail's head checkpoint (last row and its MAC, sealed), apart from the
        ledger's database."""
        return self.root / "audit" / "head.json"

    @property
    def audit_witness(self) -> Path:
        """The default witness log of the audit trail's head checkpoints (appended, never
        rewritten); ``CLOSEDLOOP_AUDIT_WITNESS`` puts it where the database's administrators
        cannot rewind it."""
        return self.root / "audit" / "witness.log"

    @property
    def demo_events(self) -> Path:
        """The network events the demo replays."""
        return self.root / "actions" / "demo-events.jsonl"

    @property
    def outbox(self) -> Path:
        """Where actions without an HTTP endpoint are delivered as files."""
        return self.root / "actions" / "outbox"
