"""The peer: a stock BentoML service around the registered churn model, as its docs suggest.

The MLflow model is imported into BentoML's model store (``bentoml.mlflow.import_model``) and
served with features supplied in the payload; no online lookup, no reasons.
"""

from __future__ import annotations

from typing import Any

import bentoml
import pandas as pd


@bentoml.service(name="stock_churn", workers=1)
class StockChurn:
    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model("churn:latest")

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        return [float(p) for p in self.model.predict(pd.DataFrame(rows))]
