"""The prediction log: every score serving makes, as Parquet parts that monitoring reads.

One folder per model under ``HOME/predictions/<model>/``; each part file holds the columns of
``LOG_COLUMNS`` followed by one column per feature of the model's feature service, named as in
the service (strings stay strings, numbers are float64, missing values are null).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from closedloop.arrow import UTC_MS, described

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
        described("probability", pa.float64(), "calibrated probability"),
        described("stale_features", pa.int32(), "how many inputs were stale or missing"),
    ]
)


def log_folder(home: Path, model: str) -> Path:
    """Where the prediction log of one model lives."""
    return home / "predictions" / model
