"""A registered version's review, read back from its training run in MLflow: its test metrics
beside the champion's of the time (on the same test window), lift, calibration, segments, what
drives its scores overall, and the reasons behind its highest scores."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from closedloop.models import spec
from closedloop.settings import Settings
from training import registry
from training.model import ScoringModel


@dataclass(frozen=True)
class Review:
    name: str
    version: str
    run_id: str
    promoted: bool  # what the gate decided when the version was trained
    gate_reasons: list[str]
    champion_version: str | None  # the champion it was compared with, if there was one
    comparison: pd.DataFrame  # test metrics: this version, the champion, the difference
    lift: pd.DataFrame  # by score decile
    calibration: pd.DataFrame  # by bin of predicted probability
    segments: pd.DataFrame  # ROC AUC and PR AUC per segment value
    importance: pd.Series  # mean |SHAP| on the test window by feature, largest first
    reference: pd.DataFrame  # the scored held-out sample monitoring compares with
    model: ScoringModel


def comparison(ours: dict[str, float], champion: dict[str, float] | None) -> pd.DataFrame:
    """Test metrics side by side: this version, the champion (NaN without one), the gap."""
    table = pd.DataFrame({"this version": pd.Series(ours, dtype=float)})
    table["champion"] = pd.Series(champion or {}, dtype=float).reindex(table.index)
    table["difference"] = table["this version"] - table["champion"]
    return table


PARTS = ("lift", "calibration", "segments")  # the evaluation tables a training run logs


def _table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a model without segments logs an empty table
        return pd.DataFrame()


def review(settings: Settings, name: str, version: str) -> Review:
    """The review of version ``version`` of model ``name`` in this home's registry."""
    registry.connect(settings)
    found = registry.model_version(name, version)
    run = MlflowClient().get_run(found.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(
            mlflow.artifacts.download_artifacts(
                run_id=found.run_id, artifact_path="evaluation", dst_path=tmp
            )
        )
        gate = json.loads((folder / "gate.json").read_text())
        importance = json.loads((folder / "shap_summary.json").read_text())
        tables = {part: _table(folder / f"{part}.csv") for part in PARTS}
        reference = pd.read_parquet(folder / "reference.parquet")
    ours = {
        key.removeprefix("test_"): value
        for key, value in run.data.metrics.items()
        if key.startswith("test_")
    }
    return Review(
        name=name,
        version=found.version,
        run_id=found.run_id,
        promoted=bool(gate["promote"]),
        gate_reasons=list(gate["reasons"]),
        champion_version=gate["champion_version"],
        comparison=comparison(ours, gate["champion_metrics"]),
        lift=tables["lift"],
        calibration=tables["calibration"],
        segments=tables["segments"],
        importance=pd.Series(importance, dtype=float).sort_values(ascending=False),
        reference=reference,
        model=registry.load_model(found),
    )


def top_reasons(model: ScoringModel, frame: pd.DataFrame, top: int = 3) -> list[list[str]]:
    """Per row of ``frame``, its ``top`` features by absolute SHAP contribution, largest first,
    as 'feature = value (raises|lowers the risk)'."""
    contributions = model.contributions(frame)[model.features].to_numpy()
    records = frame[model.features].to_dict("records")
    out = []
    for record, values in zip(records, contributions, strict=True):
        order = np.argsort(-np.abs(values), kind="stable")[:top]
        out.append(
            [
                f"{model.features[i]} = {_shown(record[model.features[i]])} "
                f"({'raises' if values[i] > 0 else 'lowers'} the risk)"
                for i in order
                if values[i] != 0
            ]
        )
    return out


def _shown(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def highest_scores(review: Review, rows: int = 5, top: int = 3) -> pd.DataFrame:
    """The held-out sample's ``rows`` highest scores, with their label and top reasons."""
    key = spec(review.name).entity_key
    best = review.reference.nlargest(rows, "probability")
    return pd.DataFrame(
        {
            key: best[key].to_numpy(),
            "probability": best["probability"].round(4).to_numpy(),
            "label": best["label"].to_numpy(),
            "reasons": ["; ".join(r) for r in top_reasons(review.model, best, top)],
        }
    )
