"""A trained model as it is scored: LightGBM booster, categorical levels and calibration.

``ScoringModel.score`` is the one way a frame of features becomes calibrated probabilities,
whether in batch rescoring, in serving or inside the MLflow pyfunc wrapper. A multi-class model
(``classes`` named) scores one probability per class and row (LightGBM's softmax, uncalibrated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

BOOSTER_FILE = "booster.txt"
META_FILE = "scoring.json"


@dataclass(frozen=True)
class ScoringModel:
    booster: lgb.Booster
    features: list[str]  # in the feature service's order
    categories: dict[str, list[str]]  # levels of each categorical feature, as trained
    calibration_x: np.ndarray  # isotonic calibration knots: raw score -> probability
    calibration_y: np.ndarray
    classes: list[str] = field(default_factory=list)  # a multi-class target's, in label order

    def design(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: its features in order, categoricals on the trained levels."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"features missing from the input: {', '.join(missing)}")
        matrix = frame[self.features].copy()
        for name, levels in self.categories.items():
            matrix[name] = pd.Categorical(matrix[name], categories=levels)
        numeric = [f for f in self.features if f not in self.categories]
        matrix[numeric] = matrix[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
        return matrix

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The same input as :meth:`design` as a float matrix, built column by column without
        copying the frame: categoricals as their level codes (missing or unseen: NaN)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"features missing from the input: {', '.join(missing)}")
        matrix = np.empty((len(frame), len(self.features)))
        for position, name in enumerate(self.features):
            column = frame[name]
            if name in self.categories:
                codes = pd.Categorical(column, categories=self.categories[name]).codes
                matrix[:, position] = np.where(codes < 0, np.nan, codes)
            elif pd.api.types.is_numeric_dtype(column):
                matrix[:, position] = column.to_numpy(dtype=float, na_value=np.nan)
            else:
                matrix[:, position] = pd.to_numeric(column, errors="coerce").to_numpy(float)
        return matrix

    @cached_property
    def _level_codes(self) -> dict[str, dict[str, int]]:
        return {
            name: {v: i for i, v in enumerate(levels)} for name, levels in self.categories.items()
        }

    def records_matrix(self, records: list[Mapping[str, object]]) -> np.ndarray:
        """The input matrix of a few records (dicts of feature values) without pandas: the
        serving path. Missing keys, None and unseen levels are NaN, as in :meth:`matrix`."""
        matrix = np.full((len(records), len(self.features)), np.nan)
        codes = self._level_codes
        for row, record in enumerate(records):
            for position, name in enumerate(self.features):
                value = record.get(name)
                if value is None:
                    continue
                if name in codes:
                    matrix[row, position] = codes[name].get(value, np.nan)
                else:
                    matrix[row, position] = value
        return matrix

    def calibrated(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of an input matrix."""
        return self.calibrate(self.booster.predict(matrix, num_threads=1))

    def matrix_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """SHAP contributions (log-odds) of each feature for each row of an input matrix; for a
        multi-class model rows x classes x features (each class's raw score)."""
        values = self.booster.predict(matrix, pred_contrib=True, num_threads=1)
        if not self.classes:
            return values[:, :-1]
        per_class = values.reshape(len(matrix), len(self.classes), len(self.features) + 1)
        return per_class[:, :, :-1]

    def raw_scores(self, frame: pd.DataFrame, threads: int = 1) -> np.ndarray:
        return self.booster.predict(self.matrix(frame), num_threads=threads)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        if len(self.calibration_x) < 2:
            return raw
        return np.interp(raw, self.calibration_x, self.calibration_y)

    def score(self, frame: pd.DataFrame, threads: int = 1) -> np.ndarray:
        """Calibrated probability of the event for each row of ``frame`` (multi-class: rows x
        classes, each row summing to 1)."""
        return self.calibrate(self.raw_scores(frame, threads))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP contributions of each feature (log-odds), from LightGBM itself; for a
        multi-class model the absolute contributions summed over the classes."""
        values = self.matrix_contributions(self.matrix(frame))
        if self.classes:
            values = np.abs(values).sum(axis=1)
        return pd.DataFrame(values, columns=self.features, index=frame.index)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        meta = {
            "features": self.features,
            "categories": self.categories,
            "calibration_x": self.calibration_x.tolist(),
            "calibration_y": self.calibration_y.tolist(),
            "classes": self.classes,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ScoringModel:
        meta = json.loads((folder / META_FILE).read_text())
        return cls(
            booster=lgb.Booster(model_file=str(folder / BOOSTER_FILE)),
            features=meta["features"],
            categories=meta["categories"],
            calibration_x=np.asarray(meta["calibration_x"]),
            calibration_y=np.asarray(meta["calibration_y"]),
            classes=meta.get("classes", []),
        )
