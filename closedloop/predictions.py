"""The prediction log: every score serving makes, as Parquet parts that monitoring reads.

One folder per model under ``HOME/predictions/<model>/``; each part file holds the columns of
``LOG_COLUMNS``, then for a multi-class model one column per class with its probability
(``probability[<class>]``; ``probability`` is the likeliest class's), then one column per
feature of the model's feature service, named as in the service (strings stay strings, numbers
are float64, missing values are null).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from closedloop.arrow import UTC_MS, described
from closedloop.home import Home
from closedloop.scores import FeatureValue

LOG_COLUMNS = pa.schema(
    [
        described("scored_at", UTC_MS, "when the score was made"),
        described("request_id", pa.string(), "the request that asked for it"),
        described("model", pa.string(), "registered model name"),
        described("model_version", pa.string(), "registered model version"),
        described("feature_service", pa.string(), "Feast feature service of the inputs"),
        described("entity_id", pa.string(), "customer_id or cell_id"),
        described(
            "source",
            pa.string(),
            "online (features looked up), supplied (what-if) or batch (monitor-score)",
        ),
        described(
            "probability", pa.float64(), "calibrated probability (multi-class: the likeliest's)"
        ),
        described("stale_features", pa.int32(), "how many inputs were stale or missing"),
    ]
)


def log_folder(home: Path, model: str) -> Path:
    """Where the prediction log of one model lives."""
    return Home.at(home).predictions(model)


def class_column(name: str) -> str:
    """The log's column of one class's probability (no feature name has brackets)."""
    return f"probability[{name}]"


def log_schema(
    features: Sequence[str], categorical: Collection[str], classes: Sequence[str] = ()
) -> pa.Schema:
    """The log's columns, each class's probability, then the model's features (text for
    categoricals, else float64)."""
    by_class = [pa.field(class_column(name), pa.float64()) for name in classes]
    fields = [pa.field(f, pa.string() if f in categorical else pa.float64()) for f in features]
    return pa.schema([*LOG_COLUMNS, *by_class, *fields])


@dataclass(frozen=True)
class PredictionBatch:
    """What one model version scored in one go (a request, or a batch window), column by
    column: the one shape every writer of the prediction log hands over."""

    model: str
    model_version: str
    feature_service: str
    source: str
    request_id: str
    scored_at: datetime | Sequence[datetime]  # one instant for every row, or one per row
    entity_ids: Sequence[str]
    probabilities: Sequence[float]
    stale_features: Sequence[int]  # per row: how many inputs were stale or missing
    features: Mapping[str, Sequence[FeatureValue]]  # the inputs as scored, by feature
    classes: Mapping[str, Sequence[float]] = field(default_factory=dict)  # multi-class: by class

    def __len__(self) -> int:
        return len(self.entity_ids)

    def columns(self) -> dict[str, Sequence]:
        """The log's columns of this batch, the per-batch values repeated on every row."""
        rows = len(self)
        stamps = self.scored_at
        return {
            "scored_at": [stamps] * rows if isinstance(stamps, datetime) else stamps,
            "request_id": [self.request_id] * rows,
            "model": [self.model] * rows,
            "model_version": [self.model_version] * rows,
            "feature_service": [self.feature_service] * rows,
            "entity_id": self.entity_ids,
            "source": [self.source] * rows,
            "probability": self.probabilities,
            "stale_features": self.stale_features,
            **{class_column(name): values for name, values in self.classes.items()},
            **self.features,
        }


def log_table(batches: Sequence[PredictionBatch], schema: pa.Schema) -> pa.Table:
    """The prediction log rows of ``batches``, in order, as one table of ``schema``."""
    parts = [batch.columns() for batch in batches]
    arrays = []
    for column in schema:
        columns = [part[column.name] for part in parts]
        values = columns[0] if len(columns) == 1 else list(itertools.chain.from_iterable(columns))
        arrays.append(pa.array(values, type=column.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)
