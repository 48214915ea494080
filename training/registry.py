"""MLflow tracking and registry: log a training run, register its model, gate the champion.

The gate scores the challenger and the current ``champion`` on the same test window and moves
the alias only when the challenger passes the quality bars and wins by the configured margin.
Every decision, automatic or manual, is recorded with its reasons on the model version.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from closedloop.quiet import quiet_libraries
from closedloop.settings import Settings
from training.backends import check_reachable, tracking
from training.config import GateConfig
from training.model import ScoringModel

CHAMPION = "champion"


class PyfuncModel(mlflow.pyfunc.PythonModel):
    """The MLflow face of a ScoringModel: ``predict`` returns calibrated probabilities."""

    def load_context(self, context) -> None:
        self.model = ScoringModel.load(Path(context.artifacts["scoring"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.score(model_input)


def point_at(settings: Settings) -> str:
    """Point MLflow at this profile's tracking store and registry, without opening them yet."""
    quiet_libraries()
    settings.paths.mlflow.mkdir(parents=True, exist_ok=True)
    uri = tracking(settings).uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at this home's registry and open it (the CLI edge calls this once); a
    PostgreSQL that cannot be reached is an error within seconds."""
    check_reachable(settings)
    uri = point_at(settings)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment(settings: Settings, name: str) -> str:
    """The experiment's id, created with artifacts under the home folder if new."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = tracking(settings).artifacts
    return mlflow.create_experiment(name, artifact_location=artifacts.as_uri())


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable digest of a training set's content."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return f"{len(frame)}-{int(np.bitwise_xor.reduce(hashed.astype(np.uint64))):016x}"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]
    challenger: float
    champion: float | None


def leak_reasons(
    gate: GateConfig, challenger: dict[str, float], separation: dict[str, float]
) -> list[str]:
    """Why a challenger looks too good to be true: a feature that alone separates the label,
    or an implausibly perfect test score. Empty when neither."""
    review = "held for review: promote by hand (closedloop models promote --why) if it is not"
    found = [
        f"{name} alone separates the label (test ROC AUC {auc:.4f} >= "
        f"{gate.max_single_feature_auc}): a column that gives the answer away? {review}"
        for name, auc in sorted(separation.items(), key=lambda item: -item[1])
        if auc >= gate.max_single_feature_auc
    ]
    if challenger["roc_auc"] >= gate.max_roc_auc:
        found.append(
            f"test roc_auc {challenger['roc_auc']:.4f} >= {gate.max_roc_auc} is implausibly "
            f"perfect: the same entities in train and test, or a leaking feature? {review}"
        )
    return found


def other_classes(champion_classes: list[str] | None) -> list[str]:
    """Why a challenger is held when the champion answers other classes (a binary champion
    has none); nothing when ``champion_classes`` is None (the same classes, or no champion)."""
    if champion_classes is None:
        return []
    shown = ", ".join(champion_classes) or "the binary event"
    return [
        f"the champion answers other classes ({shown}), so it is not compared: held for a "
        "person to promote (closedloop models promote --why)"
    ]


def decide(
    gate: GateConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    separation: dict[str, float] | None = None,
    champion_classes: list[str] | None = None,
    hold: Hold | None = None,
) -> GateDecision:
    """Pure gate rule: the leak guard, the quality bars, then the champion beaten by more than
    the margin; never while the champion is held. ``separation`` is each feature's own test
    ROC AUC; ``champion_classes`` holds a challenger whose champion answers other classes."""
    reasons = [
        *held(hold),
        *leak_reasons(gate, challenger, separation or {}),
        *other_classes(champion_classes),
    ]
    if not challenger["roc_auc"] >= gate.min_roc_auc:
        reasons.append(f"roc_auc {challenger['roc_auc']:.4f} is below the bar {gate.min_roc_auc}")
    if not challenger["pr_auc_lift"] >= gate.min_pr_auc_lift:
        reasons.append(
            f"pr_auc is {challenger['pr_auc_lift']:.2f}x the base rate, "
            f"below the bar {gate.min_pr_auc_lift}x"
        )
    ours = challenger[gate.metric]
    theirs = None if champion is None else champion[gate.metric]
    wins, verdict = versus_champion(gate.metric, ours, theirs, gate.margin, lower_wins=False)
    return GateDecision(not reasons and wins, [*reasons, verdict], ours, theirs)


def versus_champion(
    metric: str,
    ours: float,
    theirs: float | None,
    margin: float,
    lower_wins: bool = False,
    digits: int = 4,
) -> tuple[bool, str]:
    """Whether the challenger's ``metric`` beats the champion's by more than ``margin``, and
    the sentence that says so (figures to ``digits`` decimals)."""
    if theirs is None:
        return True, "there is no champion yet"
    wins = (theirs - ours if lower_wins else ours - theirs) > margin
    beats = "beats" if wins else "does not beat"
    better = " (lower is better)" if lower_wins else ""
    return wins, (
        f"{metric} {ours:.{digits}f} {beats} the champion's {theirs:.{digits}f} "
        f"by more than {margin}{better}"
    )


def decide_classes(
    gate: GateConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    separation: dict[str, float] | None = None,
    champion_classes: list[str] | None = None,
    hold: Hold | None = None,
) -> GateDecision:
    """The gate of a multi-class challenger: the leak guard (one class against the rest), its
    log loss at least ``min_log_loss_gain`` below the no-skill model's, then the champion's
    log loss beaten (lower) by more than the margin. A champion that answers other classes
    (``champion_classes``; none for a binary one) is not compared: a person decides. Never
    while the champion is held."""
    reasons = [
        *held(hold),
        *leak_reasons(gate, challenger, separation or {}),
        *other_classes(champion_classes),
    ]
    if not challenger["log_loss_gain"] >= gate.min_log_loss_gain:
        reasons.append(
            f"log_loss {challenger['log_loss']:.4f} is {challenger['log_loss_gain']:.1%} below "
            f"the class shares' {challenger['prior_log_loss']:.4f}, short of the bar "
            f"{gate.min_log_loss_gain:.0%}"
        )
    ours = challenger["log_loss"]
    theirs = None if champion is None else champion["log_loss"]
    wins, verdict = versus_champion("log_loss", ours, theirs, gate.margin, lower_wins=True)
    return GateDecision(not reasons and wins, [*reasons, verdict], ours, theirs)


HOLD = "champion_hold"  # the registered model's tag while its champion is held


@dataclass(frozen=True)
class Hold:
    """A champion held by a model owner: the gate promotes no challenger until it is released."""

    by: str
    why: str
    at: str


def held(hold: Hold | None) -> list[str]:
    """The gate's reason to promote nothing while the champion is held (none without a hold)."""
    if hold is None:
        return []
    return [f"the champion is held by {hold.by} since {hold.at} ({hold.why}): no promotion "
            "until 'closedloop models release'"]  # fmt: skip


def hold_of(name: str) -> Hold | None:
    """The hold on ``name``'s champion, None if none (or no such model)."""
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except MlflowException:
        return None
    return Hold(**json.loads(tags[HOLD])) if HOLD in tags else None


def set_hold(name: str, hold: Hold | None) -> None:
    """Hold ``name``'s champion (``hold``), or release it (None); raises MlflowException when
    there is no such registered model."""
    client = MlflowClient()
    if hold is None:
        if HOLD in client.get_registered_model(name).tags:
            client.delete_registered_model_tag(name, HOLD)
        return
    client.set_registered_model_tag(name, HOLD, json.dumps(hold.__dict__))


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: which training run made it and the feature service it reads."""

    name: str
    version: str
    run_id: str
    feature_service: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version loaded for scoring, with what its training run recorded."""

    name: str
    version: str
    run_id: str
    feature_service: str
    model: ScoringModel
    horizon: pd.Timedelta
    snapshot_every: pd.Timedelta
    training_window: str
    test_metrics: dict[str, float]
    reference_window: str = "unknown"  # monitoring's reference: the held-out windows


def champion_version(name: str) -> ModelVersion | None:
    """The version the ``champion`` alias points at, None if there is none (MLflow must be
    connected); raises when the registry cannot be read."""
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    client = MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    if CHAMPION not in aliases:
        return None
    return model_version(name, str(aliases[CHAMPION]))


def model_version(name: str, version: str) -> ModelVersion:
    """One registered version of ``name`` (raises when there is none)."""
    client = MlflowClient()
    found = client.get_model_version(name, version)
    run = client.get_run(found.run_id)
    return ModelVersion(name, str(found.version), found.run_id, run.data.tags["feature_service"])


def load_model(version: ModelVersion) -> ScoringModel:
    """A registered version's scoring model, fetched from the registry's artifacts."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(version.uri, dst_path=tmp))
        return ScoringModel.load(local / "artifacts" / "scoring")


def load_version(version: ModelVersion) -> RegisteredModel:
    """A registered version loaded, with its training run's horizon, window and test metrics."""
    run = MlflowClient().get_run(version.run_id)
    return RegisteredModel(
        name=version.name,
        version=version.version,
        run_id=version.run_id,
        feature_service=version.feature_service,
        model=load_model(version),
        horizon=pd.Timedelta(hours=int(run.data.params["horizon_hours"])),
        snapshot_every=pd.Timedelta(hours=int(run.data.params["snapshot_every_hours"])),
        training_window=run.data.tags.get("window_train", "unknown"),
        reference_window=run.data.tags.get("window_reference", "unknown"),
        test_metrics={
            k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")
        },
    )


def load_champion(name: str) -> RegisteredModel | None:
    """The champion of ``name`` loaded, None if the alias is not set (MLflow must be connected)."""
    found = champion_version(name)
    return None if found is None else load_version(found)


def log_model(model: ScoringModel, example: pd.DataFrame, name: str) -> str:
    """Log the model with its signature and an input example; register it; return the version."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "scoring")
        inputs = example[model.features]
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PyfuncModel(),
            artifacts={"scoring": str(folder)},
            signature=infer_signature(inputs, model.score(inputs)),
            input_example=inputs.head(5),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def set_champion(name: str, version: str, by: str, why: str) -> None:
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in (("promoted_by", by), ("promoted_why", why), ("promoted_at", stamp)):
        client.set_model_version_tag(name, version, key, value)


def record_decision(name: str, version: str, decision: GateDecision) -> None:
    client = MlflowClient()
    client.set_model_version_tag(name, version, "gate", "promoted" if decision.promote else "held")
    client.set_model_version_tag(name, version, "gate_reasons", json.dumps(decision.reasons))
    if decision.promote:
        set_champion(name, version, "gate", "; ".join(decision.reasons))


def promote_by_hand(name: str, version: str, why: str, by: str) -> None:
    """A manual override of the gate, recorded with who (a principal) and why."""
    MlflowClient().get_model_version(name, version)  # raises if there is no such version
    set_champion(name, version, by, why)


@dataclass(frozen=True)
class VersionRow:
    name: str
    version: str
    aliases: list[str]
    metrics: dict[str, float]
    gate: str
    created: datetime


def list_versions(names: list[str]) -> list[VersionRow]:
    client = MlflowClient()
    rows = []
    for name in names:
        try:
            by_alias = client.get_registered_model(name).aliases
        except MlflowException:
            continue
        for version in client.search_model_versions(f"name = '{name}'"):
            run = client.get_run(version.run_id)
            rows.append(
                VersionRow(
                    name=name,
                    version=str(version.version),
                    aliases=[a for a, v in by_alias.items() if str(v) == str(version.version)],
                    metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
                    gate=version.tags.get("gate", "-"),
                    created=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
                )
            )
    return sorted(rows, key=lambda r: (r.name, int(r.version)))
